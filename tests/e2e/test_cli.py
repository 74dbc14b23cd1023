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


def test_block_and_mute_from_the_terminal(mesh: Mesh, tmp_path: Path) -> None:
    dan, eve, fay = (person(tmp_path, mesh, name) for name in ("dan", "eve", "fay"))
    for someone in (dan, eve, fay):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    eve.ok("follow", dan.handle)
    eve.ok("follow", fay.handle)
    assert "(you block nobody)" in dan.ok("blocks")
    assert "blocked" in dan.ok("block", eve.handle)
    assert f"@{eve.handle}" in dan.ok("blocks")
    refused = eve.run("follow", dan.handle)
    assert (
        refused.returncode == 1 and "permission denied" in refused.stderr and "blocks you" in refused.stderr
    )
    assert "muted" in eve.ok("mute", fay.handle)
    assert f"@{fay.handle}" in eve.ok("mutes")
    fay.ok("post", "fay is muted by eve")
    assert "fay is muted by eve" not in eve.ok("timeline")
    assert "unmuted" in eve.ok("unmute", fay.handle)
    eventually(lambda: "fay is muted by eve" in eve.ok("timeline"), timeout=15)
    assert "unblocked" in dan.ok("unblock", eve.handle)
    assert "following" in eve.ok("follow", dan.handle)


def test_delete_the_account_from_the_terminal(mesh: Mesh, tmp_path: Path) -> None:
    gus, hana = person(tmp_path, mesh, "gus"), person(tmp_path, mesh, "hana")
    for someone in (gus, hana):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    hana.ok("follow", gus.handle)
    gus.ok("post", "gus was here")
    eventually(lambda: "gus was here" in hana.ok("timeline"), timeout=15)
    asked = gus.run("delete-account", "--password-stdin", stdin=PASSWORD)
    assert asked.returncode == 1 and "--yes" in asked.stderr
    wrong = gus.run("delete-account", "--yes", "--password-stdin", stdin="not the password")
    assert wrong.returncode == 1 and "does not match the current password" in wrong.stderr
    assert "account deleted" in gus.ok("delete-account", "--yes", "--password-stdin", stdin=PASSWORD)
    eventually(lambda: "gus was here" not in hana.ok("timeline"), timeout=30)
    gone = hana.run("follow", gus.handle)
    assert gone.returncode == 1 and "not found" in gone.stderr
    assert gus.run("whoami").returncode == 1  # the saved token went with the account


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


def test_notifications_from_the_terminal(mesh: Mesh, tmp_path: Path) -> None:
    gil, hen, ida = (person(tmp_path, mesh, name) for name in ("gil", "hen", "ida"))
    for someone in (gil, hen, ida):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    assert "(no notifications)" in gil.ok("notifications")
    for fan in (hen, ida):
        fan.ok("follow", gil.handle)
    eventually(lambda: "2 unread" in gil.ok("notifications"), timeout=20)
    # One group, unread (*), named after one of its accounts.
    names = (f"@{hen.handle} and 1 other followed you", f"@{ida.handle} and 1 other followed you")
    listed = gil.ok("notifications").splitlines()
    assert len(listed) == 2 and listed[1].startswith(tuple(f"* {n}" for n in names)), listed
    assert "read up to" in gil.ok("mark-read")
    listed = gil.ok("notifications").splitlines()
    assert listed[0] == "0 unread" and listed[1].startswith(tuple(f"  {n}" for n in names)), listed


def test_suggestions_from_the_terminal(mesh: Mesh, tmp_path: Path) -> None:
    jo, kay, lou = (person(tmp_path, mesh, name) for name in ("jo", "kay", "lou"))
    for someone in (jo, kay, lou):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    jo.ok("follow", kay.handle)
    kay.ok("follow", lou.handle)
    first = jo.ok("suggestions", "--limit", "5").splitlines()[0]
    assert f"@{lou.handle}" in first and "followed by 1 you follow" in first


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


def test_edit_a_tweet_and_read_its_history(mesh: Mesh, tmp_path: Path) -> None:
    lea, max_ = person(tmp_path, mesh, "lea"), person(tmp_path, mesh, "max")
    for someone in (lea, max_):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    (tweet_id,) = re.findall(r"id (\d+)", lea.ok("post", "helo", "world"))
    edited = lea.ok("edit", tweet_id, "hello", "world")
    assert "hello world" in edited and "edited 1x" in edited
    history = lea.ok("history", tweet_id)
    assert history.index("current") < history.index("hello world") < history.index("posted")
    assert history.index("posted") < history.index("helo world")
    done = max_.run("edit", tweet_id, "not yours")
    assert done.returncode == 1 and "permission denied" in done.stderr and "author" in done.stderr


def test_every_tweet_and_account_command(mesh: Mesh, tmp_path: Path) -> None:
    """like, retweet, show, likers, likes, replies, mentions, hashtag, global, followers,
    following, profile, update-profile, change-password, unlike, unretweet, delete."""
    mia, ned = person(tmp_path, mesh, "mia"), person(tmp_path, mesh, "ned")
    for someone in (mia, ned):
        someone.ok("signup", someone.handle, "--password-stdin", stdin=PASSWORD)
    ned.ok("follow", mia.handle)
    tag = f"cli{secrets.token_hex(3)}"
    (tweet_id,) = re.findall(r"id (\d+)", mia.ok("post", f"hi @{ned.handle} #{tag}"))
    assert "liked" in ned.ok("like", tweet_id)
    assert "retweeted" in ned.ok("retweet", tweet_id)
    shown = mia.ok("show", tweet_id)
    assert "1 likes" in shown and "1 retweets" in shown, shown
    assert f"@{ned.handle}" in mia.ok("likers", tweet_id)
    assert f"#{tag}" in ned.ok("likes", ned.handle)
    (reply_id,) = re.findall(r"id (\d+)", ned.ok("post", "hello back", "--reply-to", tweet_id))
    assert reply_id in mia.ok("replies", tweet_id)
    assert tweet_id in ned.ok("mentions") and tweet_id in mia.ok("mentions", ned.handle)
    assert tweet_id in ned.ok("hashtag", f"#{tag}")
    eventually(lambda: tweet_id in ned.ok("global", "--limit", "100"), timeout=15)
    assert f"@{ned.handle}" in mia.ok("followers", mia.handle)
    assert f"@{mia.handle}" in mia.ok("following", ned.handle)
    assert "(nobody follows" in mia.ok("followers", ned.handle)

    updated = mia.ok("update-profile", "--display-name", "Mia M", "--bio", "posts from the terminal")
    assert "Mia M @" in updated and "posts from the terminal" in updated
    assert "posts from the terminal" in ned.ok("profile", mia.handle)
    done = mia.run("update-profile")
    assert done.returncode == 1 and "--display-name" in done.stderr

    assert "no longer liking" in ned.ok("unlike", tweet_id)
    assert "no longer retweeting" in ned.ok("unretweet", tweet_id)
    shown = mia.ok("show", tweet_id)
    assert "0 likes" in shown and "0 retweets" in shown and "1 replies" in shown
    done = ned.run("delete", tweet_id)
    assert done.returncode == 1 and "permission denied" in done.stderr
    assert "deleted" in mia.ok("delete", tweet_id)
    done = mia.run("show", tweet_id)
    assert done.returncode == 1 and "not found" in done.stderr

    new_password = "another long secret"
    other_device = Person(mia.handle, tmp_path / "mia-phone", mia.target)
    other_device.ok("login", mia.handle, "--password-stdin", stdin=PASSWORD)
    mia.ok("change-password", "--password-stdin", stdin=f"{PASSWORD}\n{new_password}\n")
    assert f"@{mia.handle}" in mia.ok("whoami")  # this terminal goes on with the new token
    assert "unauthenticated" in other_device.run("whoami").stderr  # the other was signed out
    done = mia.run("change-password", "--password-stdin", stdin=f"wrong guess\n{new_password}2\n")
    assert done.returncode == 1


def test_json_prints_each_answer_as_the_http_api_does(mesh: Mesh, tmp_path: Path) -> None:
    oli = person(tmp_path, mesh, "oli")
    signed_up = json.loads(oli.ok("--json", "signup", oli.handle, "--password-stdin", stdin=PASSWORD))
    assert signed_up["user"]["handle"] == oli.handle and signed_up["token"] == ""  # never printed
    posted = json.loads(oli.ok("post", "in json", "--json"))  # the option before or after
    tweet_id = posted["tweet"]["tweet_id"]
    assert posted["tweet"]["text"] == "in json" and posted["tweet"]["like_count"] == "0"
    page = json.loads(oli.ok("--json", "tweets", oli.handle))
    assert [tweet["tweet_id"] for tweet in page["tweets"]] == [tweet_id] and page["next_page_token"] == ""
    assert json.loads(oli.ok("--json", "like", tweet_id))["tweet"]["like_count"] == "1"
    assert json.loads(oli.ok("--json", "delete", tweet_id)) == {}

    done = oli.run("--json", "show", tweet_id)
    assert done.returncode == 1 and done.stdout == ""
    error = json.loads(done.stderr)["error"]
    assert error["code"] == "NOT_FOUND" and error["reason"]
    done = oli.run("--json", "post", " ")
    error = json.loads(done.stderr)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and [v["field"] for v in error["field_violations"]] == ["text"]
    done = person(tmp_path, mesh, "nobody").run("--json", "timeline")
    error = json.loads(done.stderr)["error"]  # refused here, before any call: no status code
    assert "not logged in" in error["message"] and "code" not in error

    photo = tmp_path / "tiny.png"
    photo.write_bytes(encode(picture((64, 48)), "PNG"))
    (media_id,) = re.findall(r"media id (\d+)", oli.ok("upload", str(photo)))
    saved = json.loads(oli.ok("--json", "download", media_id, "-o", str(tmp_path / "back.png")))
    assert saved["content_type"] == "image/png" and saved["path"] == str(tmp_path / "back.png")
    served = http_call(mesh.ports.envoy, "GET", f"/v1/media/{media_id}")
    assert (tmp_path / "back.png").read_bytes() == served.body and saved["size_bytes"] == len(served.body)
    thumbnail = oli.ok("download", media_id, "--thumbnail", "-o", str(tmp_path / "thumb.jpg"))
    assert "of image/jpeg to" in thumbnail and (tmp_path / "thumb.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_watch_global_in_json_and_the_admin_stats(mesh: Mesh, tmp_path: Path) -> None:
    pia = person(tmp_path, mesh, "pia")
    pia.ok("signup", pia.handle, "--password-stdin", stdin=PASSWORD)
    anyone = person(tmp_path, mesh, "anyone")  # never signs in: the global stream needs no login
    process = subprocess.Popen(
        [str(TWEETMESH), "watch", "--global", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=anyone.env(),
    )
    try:
        assert process.stderr is not None and "watching everyone's tweets" in process.stderr.readline()
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in process.stdout or ():
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        text = f"everyone sees this {secrets.token_hex(3)}"

        def arrived() -> dict[str, object]:
            pia.ok("post", text)
            while True:
                event = json.loads(lines.get(timeout=10))
                if event.get("tweet", {}).get("text") == text:
                    return dict(event["tweet"])

        assert arrived()["author_id"]
    finally:
        process.terminate()
        process.wait(timeout=10)

    fanout = f"127.0.0.1:{mesh.ports.of('fanout')}"
    stats = pia.ok("admin", "fanout-stats", "--fanout-target", fanout)
    assert "events:tweets:" in stats and "timeline entries" in stats
    stats_json = json.loads(pia.ok("--json", "admin", "fanout-stats", "--fanout-target", fanout))
    assert {"events:tweets", "events:follows"} <= {stream["stream"] for stream in stats_json["streams"]}
    assert int(stats_json["delivered"]) >= 0 and "dead_lettered" in stats_json


def test_shell_completion_knows_every_command_and_option(tmp_path: Path) -> None:
    script = subprocess.run([str(TWEETMESH), "completion"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "completion.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        done = subprocess.run(
            [
                "bash",
                "-c",
                f'source {tmp_path / "completion.bash"}; COMP_WORDS=(tweetmesh "$@"); '
                'COMP_CWORD=$#; _tweetmesh; printf "%s\\n" "${COMPREPLY[@]}"',
                "bash",
                *words,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.split()

    assert complete("fol") == ["follow", "followers", "following"]
    assert complete("--json", "admin", "dead-letters", "re") == ["replay"]
    assert complete("post", "hello", "--re") == ["--reply-to"]
    assert complete("watch", "--") == ["--help", "--json", "--since", "--heartbeats", "--global"]
