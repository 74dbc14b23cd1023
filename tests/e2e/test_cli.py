"""The installed `tweetmesh` command against the running mesh (through Envoy): sign up, log in, follow,
post, read the home timeline, watch it live, and clear errors."""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from devstack.mesh import Mesh
from devstack.smtp import read_mails
from media_svc import inspect_media
from tests.helpers import PASSWORD, eventually, http_call
from tests.media_samples import encode, picture

TWEETMESH = Path(sys.executable).parent / "tweetmesh"  # installed by `pip install -e .` (make)


@dataclass
class Person:
    """Someone at their own terminal: their own config directory, the same mesh."""

    handle: str
    home: Path
    target: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_CONFIG_HOME": str(self.home), "TWEETMESH_TARGET": self.target}

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TWEETMESH), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, stdin: str = "") -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, f"tweetmesh {' '.join(args)}: {done.stderr}"
        return done.stdout


def person(tmp_path: Path, mesh: Mesh, prefix: str) -> Person:
    handle = f"{prefix}_{secrets.token_hex(3)}"
    return Person(handle, tmp_path / handle, f"127.0.0.1:{mesh.ports.envoy}")


def test_sign_up_follow_post_and_read_the_timeline(mesh: Mesh, tmp_path: Path) -> None:
    assert TWEETMESH.exists(), "the tweetmesh command is not installed in the venv"
    alice, bob = person(tmp_path, mesh, "alice"), person(tmp_path, mesh, "bob")
    signed_up = alice.ok(
        "signup", alice.handle, "--display-name", "Alice", "--password-stdin", stdin=PASSWORD
    )
    assert f"@{alice.handle}" in signed_up
    assert "logged in" in signed_up
    bob.ok("signup", bob.handle, "--password-stdin", stdin=PASSWORD)

    config = alice.home / "tweetmesh" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    token = next(iter(json.loads(config.read_text())["sessions"].values()))["token"]
    assert token and token not in signed_up  # kept in the file, never printed

    assert f"following Alice @{alice.handle}" in bob.ok("follow", alice.handle)
    posted = alice.ok("post", "hello", "from", "the", "command", "line")
    assert "hello from the command line" in posted
    eventually(lambda: "hello from the command line" in bob.ok("timeline"), timeout=15)
    assert "hello from the command line" in bob.ok("tweets", alice.handle)
    assert f"@{bob.handle}" in bob.ok("whoami")
    assert "hello from the command line" in bob.ok("search", "command", "line")
    assert f"@{alice.handle}" in bob.ok("search", "--users", alice.handle)
    assert "no tweets match" in bob.ok("search", "zyxwvut")

    # Logging in again (a new token) works from a fresh terminal too.
    again = Person(alice.handle, tmp_path / "alice-laptop", alice.target)
    assert "logged in" in again.ok("login", alice.handle, "--password-stdin", stdin=PASSWORD)
    assert "second device" in again.ok("post", "from a second device")


class Watcher:
    """`tweetmesh watch` running in the background; its output arrives line by line on a queue."""

    def __init__(self, viewer: Person) -> None:
        self._process = subprocess.Popen(
            [str(TWEETMESH), "watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=viewer.env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout or ():
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 15) -> str:
        seen = ""
        while text not in seen:
            seen += self.lines.get(timeout=timeout)
        return seen

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def test_watch_shows_tweets_as_they_arrive_and_survives_a_restart(mesh: Mesh, tmp_path: Path) -> None:
    carol, dave = person(tmp_path, mesh, "carol"), person(tmp_path, mesh, "dave")
    carol.ok("signup", carol.handle, "--password-stdin", stdin=PASSWORD)
    dave.ok("signup", dave.handle, "--password-stdin", stdin=PASSWORD)
    carol.ok("follow", dave.handle)
    watcher = Watcher(carol)
    try:
        watcher.wait_for("watching", timeout=30)
        dave.ok("post", "live on the wire")
        assert f"@{dave.handle}" in watcher.wait_for("live on the wire")

        mesh.start_service("timeline")  # a restart: the open stream breaks
        watcher.wait_for("reconnecting")
        dave.ok("post", "after the restart")
        watcher.wait_for("after the restart", timeout=30)
    finally:
        watcher.stop()


def test_errors_are_clear_and_exit_nonzero(mesh: Mesh, tmp_path: Path) -> None:
    erin = person(tmp_path, mesh, "erin")
    done = erin.run("post", "not logged in yet")
    assert done.returncode == 1
    assert "not logged in" in done.stderr
    erin.ok("signup", erin.handle, "--password-stdin", stdin=PASSWORD)
    done = erin.run("post", " ")
    assert done.returncode == 1
    assert "invalid argument" in done.stderr
    assert "text:" in done.stderr
    done = erin.run("signup", erin.handle, "--password-stdin", stdin=PASSWORD)
    assert (done.returncode, "already exists" in done.stderr) == (1, True)
    done = erin.run("--target", "127.0.0.1:1", "follow", "anyone")
    assert done.returncode == 1
    assert "unavailable" in done.stderr


def mailed_token(mesh: Mesh, address: str, count: int) -> str:
    """The token in the link of the `count`th mail to `address`."""
    assert mesh.mail_dir is not None
    body = read_mails(mesh.mail_dir, address, at_least=count, timeout=30)[count - 1].get_body(("plain",))
    assert body is not None
    return str(body.get_content()).split("?token=")[1].split()[0]


def test_email_verify_sign_in_by_email_and_reset_the_password(mesh: Mesh, tmp_path: Path) -> None:
    carol = person(tmp_path, mesh, "carol")
    email = f"{carol.handle}@example.com"
    signed_up = carol.ok("signup", carol.handle, "--email", email, "--password-stdin", stdin=PASSWORD)
    assert f"{email} (not verified)" in signed_up and "verification mail" in signed_up
    refused = carol.run("verify-email", "not-a-token")
    assert refused.returncode == 1 and "token: does not match regex pattern" in refused.stderr
    assert "verified" in carol.ok("verify-email", mailed_token(mesh, email, 1))
    assert f"{email} (verified)" in carol.ok("whoami")
    assert "logged in" in carol.ok("login", email, "--password-stdin", stdin=PASSWORD)

    assert "reset mail is on its way" in carol.ok("forgot-password", email)
    assert "reset mail is on its way" in carol.ok("forgot-password", f"nobody.{email}")  # the same answer
    new_password = "a brand new secret"
    done = carol.ok("reset-password", mailed_token(mesh, email, 2), "--password-stdin", stdin=new_password)
    assert "every session signed out" in done
    assert "unauthenticated" in carol.run("whoami").stderr  # the saved session was revoked
    carol.ok("login", carol.handle, "--password-stdin", stdin=new_password)

    other = f"other.{email}"
    assert "verification mail" in carol.ok("change-email", other, "--password-stdin", stdin=new_password)
    assert f"{other} (not verified)" in carol.ok("whoami")
    assert "new verification mail" in carol.ok("resend-verification")
    carol.ok("verify-email", mailed_token(mesh, other, 2))
    assert "removed" in carol.ok("change-email", "--remove", "--password-stdin", stdin=new_password)


def test_upload_sends_a_file_in_chunks_and_refuses_what_is_not_media(mesh: Mesh, tmp_path: Path) -> None:
    frank = person(tmp_path, mesh, "frank")
    frank.ok("signup", frank.handle, "--password-stdin", stdin=PASSWORD)
    photo = tmp_path / "holiday.png"
    photo.write_bytes(encode(picture((1600, 900)), "PNG"))
    uploaded = frank.ok("upload", str(photo))
    assert "uploaded image/png (1600x900" in uploaded
    (media_id,) = re.findall(r"media id (\d+)", uploaded)
    served = http_call(mesh.ports.envoy, "GET", f"/v1/media/{media_id}")
    assert served.status == 200 and served.body == inspect_media(photo.read_bytes(), "image/png").sanitized
    # A post shows an upload by its id, or uploads a file itself.
    posted = frank.ok(
        "post", "the beach", "--media", media_id, "--alt", "sand and sea", "--media", str(photo)
    )
    assert f'[image/png 1600x900] /v1/media/{media_id} "sand and sea"' in posted
    assert posted.count("[image/png 1600x900]") == 2
    done = frank.run("post", "again", "--media", media_id)
    assert done.returncode == 1 and "attached to another tweet" in done.stderr

    notes = tmp_path / "notes.png"  # a name that lies
    notes.write_text("not a picture")
    done = frank.run("upload", str(notes))
    assert done.returncode == 1
    assert "invalid argument" in done.stderr and "MEDIA" not in done.stdout
    done = frank.run("upload", str(tmp_path / "missing.png"))
    assert (done.returncode, "cannot read" in done.stderr) == (1, True)


def test_quote_a_tweet_and_list_its_quotes(mesh: Mesh, tmp_path: Path) -> None:
    gina, hal = person(tmp_path, mesh, "gina"), person(tmp_path, mesh, "hal")
    for someone in (gina, hal):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    (original,) = re.findall(r"id (\d+)", gina.ok("post", "worth", "quoting"))
    quoted = hal.ok("post", "so true", "--quote", original)
    assert "so true" in quoted and "│ gina" in quoted.lower() and "│   worth quoting" in quoted
    assert "so true" in gina.ok("quotes", original)
    gina.ok("post", "--quote", original, "me too")  # the options anywhere
    done = hal.run("post", "nothing there", "--quote", "1999999999999999999")
    assert done.returncode == 1 and "quote_tweet_id" in done.stderr


def test_a_conversation_as_an_indented_tree(mesh: Mesh, tmp_path: Path) -> None:
    ida, jon = person(tmp_path, mesh, "ida"), person(tmp_path, mesh, "jon")
    for someone in (ida, jon):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    (root,) = re.findall(r"id (\d+)", ida.ok("post", "a question"))
    (answer,) = re.findall(r"id (\d+)", jon.ok("post", "an answer", "--reply-to", root))
    jon.ok("post", "a follow-up", "--reply-to", answer)
    lines = [line for line in ida.ok("conversation", answer).splitlines() if line.strip()]
    texts = [line for line in lines if line.strip() in ("a question", "an answer", "a follow-up")]
    assert texts == ["  a question", "      an answer", "          a follow-up"]
    assert any(line.endswith("◀") and answer in line for line in lines)
    done = ida.run("conversation", root, "--depth", "-1")
    assert done.returncode == 1 and "max_depth" in done.stderr


def test_bookmarks_kept_listed_and_removed(mesh: Mesh, tmp_path: Path) -> None:
    kim = person(tmp_path, mesh, "kim")
    kim.ok("signup", kim.handle, "--password-stdin", stdin=PASSWORD)
    assert "(no bookmarks)" in kim.ok("bookmarks")
    (tweet_id,) = re.findall(r"id (\d+)", kim.ok("post", "read", "later"))
    assert tweet_id in kim.ok("bookmark", tweet_id)
    assert "read later" in kim.ok("bookmarks")
    kim.ok("unbookmark", tweet_id)
    assert "(no bookmarks)" in kim.ok("bookmarks")
    done = kim.run("bookmark", "1999999999999999999")
    assert done.returncode == 1 and "tweet_id" in done.stderr


def test_trends_listed_and_a_bad_window_refused(mesh: Mesh, tmp_path: Path) -> None:
    lee = person(tmp_path, mesh, "lee")
    lee.ok("signup", lee.handle, "--password-stdin", stdin=PASSWORD)
    tag = f"cli{secrets.token_hex(3)}"
    for i in range(4):
        lee.ok("post", f"#{tag}", str(i))

    def listed() -> str:
        shown = lee.ok("trends", "--window", "6h", "--limit", "50")  # 36 s in the test mesh
        assert f"#{tag}" in shown, shown
        return shown

    assert f"#{tag}  4 tweets (usually 0.0)" in eventually(listed, timeout=10)
    done = lee.run("trends", "--window", "1y")
    assert done.returncode == 1 and "window" in done.stderr
