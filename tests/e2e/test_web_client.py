"""The web client in a real browser (Debian's headless Chromium, driven by Selenium) against the test
mesh through Envoy: two people sign up in two browsers, one follows the other, a post appears live
on the follower's page without a reload, likes, replies, retweets, search, a deletion that leaves
the other page live, errors shown in words, keyboard use; a screenshot of each main screen.

Screenshots go to artifacts/screenshots/ (git-ignored; the path is printed). To refresh the copies
the README shows: UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/e2e/test_web_client.py
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from devstack.mesh import Mesh
from tests.e2e.test_envoy_http import Http
from tests.helpers import PASSWORD, debian_tool, http_call

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
COMMITTED = ROOT / "docs" / "screenshots"
PHONE = (412, 915)
DESKTOP = (1280, 900)
WAIT = 15

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is installed by make (requirements.txt)"
)
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class Page:
    """One person's browser on the web client."""

    def __init__(self, driver: WebDriver, base: str, name: str) -> None:
        self.driver = driver
        self.base = base
        self.name = name

    def open(self, route: str) -> None:
        """Loads the page afresh at `route` (a new document: not a hash change of the last one)."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.base}/#{route}")
        self.heading()

    def go(self, route: str) -> None:
        """Navigates inside the page (a hash change, as a link does): no reload."""
        self.driver.execute_script("location.hash = arguments[0]", route)

    def wait(self, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT) -> Any:
        try:
            # A view replaced while being read is read again at the next poll.
            waiting = WebDriverWait(
                self.driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
            )
            return waiting.until(condition)
        except TimeoutException:
            shot = self.screenshot(f"failed-{self.name}")
            raise AssertionError(f"{self.name}: {what} within {timeout}s (screenshot {shot})") from None

    def heading(self, text: str | None = None) -> str:
        def found(driver: WebDriver) -> str | None:
            headings = driver.find_elements(By.CSS_SELECTOR, "#view h1")
            shown = headings[0].text if headings else None
            return shown if shown and (text is None or shown == text) else None

        return str(self.wait(found, f"a heading {text!r}"))

    def fill(self, label: str, value: str) -> WebElement:
        field = self.driver.find_element(By.XPATH, f"//label[normalize-space()={label!r}]")
        element = self.driver.find_element(By.ID, field.get_attribute("for") or "")
        element.clear()
        element.send_keys(value)
        return element

    def click(self, text: str, within: WebElement | None = None) -> None:
        scope: Any = within or self.driver
        self.wait(
            lambda d: any(b.is_enabled() for b in scope.find_elements(By.XPATH, _button(text))),
            f"an enabled button {text!r}",
        )
        next(b for b in scope.find_elements(By.XPATH, _button(text)) if b.is_enabled()).click()

    def notice(self) -> str:
        return str(self.wait(lambda d: _shown_text(d, "notice"), "an error notice"))

    def tweet(self, text: str, timeout: float = WAIT) -> WebElement:
        xpath = f"//article[contains(@class,'tweet')][.//p[@class='text' and normalize-space()={text!r}]]"

        def first(driver: WebDriver) -> WebElement | None:
            found = driver.find_elements(By.XPATH, xpath)
            return found[0] if found else None

        card: WebElement = self.wait(first, f"the tweet {text!r}", timeout)
        return card

    def tweets(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, "article.tweet p.text")]

    def live(self) -> None:
        self.wait(
            lambda d: d.find_element(By.CSS_SELECTOR, ".live").get_attribute("data-state") == "live",
            "live updates connected",
        )

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if os.environ.get("UPDATE_SCREENSHOTS") == "1" and not name.startswith("failed-"):
            COMMITTED.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, COMMITTED / path.name)
        return path


def _button(text: str) -> str:
    return f".//button[normalize-space()={text!r} or starts-with(normalize-space(), '{text} ')]"


def _shown_text(driver: WebDriver, element_id: str) -> str | None:
    element = driver.find_element(By.ID, element_id)
    return element.text if element.is_displayed() and element.text else None


def chromium(size: tuple[int, int], profile: Path) -> WebDriver:
    """Headless Chromium from Debian with a fresh profile; nothing reaches outside this machine."""
    options = webdriver.ChromeOptions()
    options.binary_location = debian_tool("chromium", "chromium")
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=debian_tool("chromedriver", "chromium-driver"))
    driver: WebDriver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


Browsers = Callable[[str, tuple[int, int]], Page]


@pytest.fixture
def browsers(mesh: Mesh) -> Iterator[Browsers]:
    base = f"http://127.0.0.1:{mesh.ports.envoy}"
    drivers: list[WebDriver] = []
    with tempfile.TemporaryDirectory(prefix="tweetmesh-chromium-") as profiles:

        def open_browser(name: str, size: tuple[int, int]) -> Page:
            driver = chromium(size, Path(profiles) / name)
            drivers.append(driver)
            return Page(driver, base, name)

        try:
            yield open_browser
        finally:
            for driver in drivers:
                logs = cast(Any, driver).get_log("browser")  # Chrome's, not in WebDriver's interface
                problems = [e for e in logs if "Content Security Policy" in e["message"]]
                driver.quit()
                assert problems == [], problems
    print(f"\nweb client screenshots: {ARTIFACTS}")


def sign_up(page: Page, handle: str, name: str) -> None:
    page.open("/signup")
    page.fill("Handle (letters, digits and _, up to 15)", handle)
    page.fill("Display name", name)
    page.fill("Password (at least 8 characters)", PASSWORD)
    page.click("Create account")
    page.heading("Home")
    page.live()


def follow_from_search(alice: Page, bob_handle: str) -> None:
    alice.go("/search")
    alice.heading("Search")
    alice.fill("Search tweets and people", bob_handle).send_keys(Keys.ENTER)
    link = f"Bob @{bob_handle}"
    alice.wait(lambda d: d.find_elements(By.LINK_TEXT, link), "Bob among the people found")
    alice.driver.find_element(By.LINK_TEXT, link).click()
    alice.heading("Bob")
    alice.click("Follow")
    alice.wait(lambda d: d.find_element(By.CSS_SELECTOR, "button.follow").text == "Unfollow", "Unfollow")
    assert "1 followers" in alice.driver.find_element(By.CSS_SELECTOR, ".counts").text
    alice.screenshot("profile")


def as_user(page: Page, method: str, path: str, body: Any) -> Any:
    """A call of the API with the token the page signed in with (what the page has no control for)."""
    token = page.driver.execute_script("return JSON.parse(localStorage.getItem('tweetmesh.session')).token")
    answer = http_call(int(page.base.rsplit(":", 1)[1]), method, path, body, token)
    assert answer.status == 200, answer.body
    return answer.json()


def edit_and_quote(alice: Page, bob: Page, card: WebElement, text: str, suffix: str) -> WebElement:
    """Bob edits the tweet on Alice's open page: it shows the new text, marked edited, without a
    reload; Alice quotes it: her tweet shows Bob's inside it. Returns the edited tweet's card."""
    tweet_id = card.get_attribute("data-tweet-id")
    as_user(bob, "PATCH", f"/v1/tweets/{tweet_id}", {"text": text})
    edited = alice.tweet(text)
    alice.wait(lambda d: "Edited" in edited.find_element(By.TAG_NAME, "header").text, "the edited mark")
    as_user(alice, "POST", "/v1/tweets", {"text": f"look {suffix}", "quote_tweet_id": tweet_id})
    quote = alice.tweet(f"look {suffix}")
    quoted = quote.find_element(By.CSS_SELECTOR, "blockquote.quoted").text
    assert text in quoted and "Bob" in quoted and "Edited" in quoted, quoted
    alice.screenshot("edited-and-quoted")
    return edited


def shown(card: WebElement, button: str) -> str:
    return " ".join(card.find_element(By.XPATH, _button(button)).text.split())


def like_retweet_and_reply(alice: Page, card: WebElement, reply: str) -> None:
    """Alice likes and retweets the card's tweet (the counts come back from the server), then
    replies from the tweet's page with the keyboard only (Tab to the button, Enter)."""
    alice.click("Like", within=card)
    alice.wait(lambda d: shown(card, "Like") == "Like 1", "liked")
    assert card.find_element(By.XPATH, _button("Like")).get_attribute("aria-pressed") == "true"
    alice.click("Retweet", within=card)
    alice.wait(lambda d: shown(card, "Retweet") == "Retweet 1", "retweeted")
    card.find_element(By.CSS_SELECTOR, "a.when").click()
    alice.heading("Tweet")
    box = alice.fill("Your reply", reply)
    box.send_keys(Keys.TAB)
    active = alice.driver.switch_to.active_element
    assert active.text == "Reply", active.text
    active.send_keys(Keys.ENTER)
    alice.tweet(reply)
    alice.screenshot("tweet-and-replies")


def test_two_people_follow_post_live_and_act_on_tweets(browsers: Browsers) -> None:
    suffix = secrets.token_hex(3)
    alice_handle, bob_handle = f"alice_{suffix}", f"bob_{suffix}"
    alice = browsers("alice", PHONE)
    bob = browsers("bob", DESKTOP)
    alice.open("/signup")
    alice.screenshot("sign-up")
    sign_up(alice, alice_handle, "Alice")
    sign_up(bob, bob_handle, "Bob")
    follow_from_search(alice, bob_handle)

    # Alice's home is open and live; Bob posts; it appears on Alice's page without a reload.
    alice.go("/")
    alice.heading("Home")
    alice.live()
    alice.driver.execute_script("window.notReloaded = true")
    text = f"hello from bob {suffix}"
    bob.fill("New tweet", text)
    bob.click("Post")
    bob.tweet(text)
    card = alice.tweet(text)
    assert alice.driver.execute_script("return window.notReloaded === true"), "the page was reloaded"
    assert f"@{bob_handle}" in card.text
    alice.screenshot("home-live")
    bob.screenshot("home-desktop")
    text = f"hello again from bob {suffix}"
    card = edit_and_quote(alice, bob, card, text, suffix)

    reply = f"welcome bob {suffix}"
    like_retweet_and_reply(alice, card, reply)
    bob.tweet(reply)  # live on Bob's home too: he is the replied-to author

    # Search finds the tweet; the global timeline lists it.
    alice.go(f"/search?q=bob%20{suffix}")
    alice.heading("Search")
    alice.tweet(text)
    alice.screenshot("search")
    alice.go("/global")
    alice.heading("Everyone")
    alice.live()
    alice.tweet(text)
    alice.screenshot("global")

    # Bob deletes his tweet: it leaves Alice's open home page live (a deletion event).
    alice.go("/")
    alice.heading("Home")
    alice.live()
    alice.tweet(text)
    own = bob.tweet(text)
    bob.driver.execute_script("window.confirm = () => true")
    bob.click("Delete", within=own)
    bob.wait(lambda d: text not in bob.tweets(), "the tweet gone from Bob's page")
    alice.wait(lambda d: text not in alice.tweets(), "the deleted tweet gone from Alice's page")


def test_errors_are_shown_in_the_servers_words(
    browsers: Callable[[str, tuple[int, int]], Page], api: Http
) -> None:
    page = browsers("errors", PHONE)
    user, _token = api.sign_up("taken")

    page.open("/signin")
    page.fill("Handle", user["handle"])
    page.fill("Password", "not the password")
    page.click("Sign in")
    expected = api("POST", "/v1/sessions", {"handle": user["handle"], "password": "not the password"})
    assert expected.status == 401
    assert page.notice() == expected.json()["message"]
    page.screenshot("error-sign-in")

    page.open("/signup")
    page.fill("Handle (letters, digits and _, up to 15)", user["handle"].upper())
    page.fill("Password (at least 8 characters)", PASSWORD)
    page.click("Create account")
    taken = api("POST", "/v1/users", {"handle": user["handle"].upper(), "password": PASSWORD})
    assert taken.status == 409
    assert page.notice() == taken.json()["message"]

    page.open("/u/nobody_at_all_x")
    page.heading("Could not load this page")
    missing = api("GET", "/v1/handles/nobody_at_all_x").json()["message"]
    assert page.driver.find_element(By.CSS_SELECTOR, "#view .error").text == missing


def test_the_page_is_accessible_and_fits_a_phone(browsers: Browsers) -> None:
    page = browsers("a11y", PHONE)
    for route in ("/", "/signin", "/signup", "/search", "/global"):
        page.open(route)
        unlabelled = page.driver.execute_script(
            "return [...document.querySelectorAll('input, textarea, select')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)"
        )
        assert unlabelled == [], (route, unlabelled)
        landmarks = page.driver.execute_script(
            "return ['header', 'nav', 'main'].filter(t => document.querySelector(t) === null)"
        )
        assert landmarks == [], (route, landmarks)
        overflow = page.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{route} scrolls sideways on a phone ({overflow}px)"
    # Keyboard: the skip link shows when focused, with a visible focus ring, and leads to the content.
    page.open("/signin")
    page.driver.execute_script("document.querySelector('.skip').focus()")
    skip = page.driver.switch_to.active_element
    assert skip.text == "Skip to content" and skip.rect["x"] >= 0
    outline = page.driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "keyboard focus must be visible"
    skip.send_keys(Keys.ENTER)
    assert page.driver.switch_to.active_element.get_attribute("id") == "main"


def test_the_files_are_served_with_their_types_and_a_strict_policy(api: Http) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/js/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ]:
        response = api("GET", path)
        assert response.status == 200, path
        assert response.headers["content-type"].startswith(kind), path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert api("GET", "/js/missing.js").status == 404
    assert api("POST", "/", {}).status == 404
