"""The live feed against the real mesh: malformed messages on a live channel deafen no stream, a
resume from further back than the replay says what it left out, and a busy stream still ends
within a heartbeat of its token's revocation."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from devstack.mesh import Mesh
from tests.helpers import Account, LiveStream, Stubs, eventually, fanned_out, redis_client, rpc_error
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

HOME_TIMELINE_MAX = 30  # the test mesh's (tests/conftest.py): the replay's budget


@pytest.mark.parametrize("channel", ["live:global", "live:{viewer}", "celebrity:{author}"])
def test_a_malformed_message_on_a_live_channel_deafens_no_stream(
    stubs: Stubs, mesh: Mesh, channel: str
) -> None:
    viewer, author = stubs.sign_up("deafv"), stubs.sign_up("deafa")
    stubs.follow(viewer, author)
    home, everyone = LiveStream(stubs.timeline, viewer), LiveStream(stubs.timeline, None)
    try:
        home.next_event(timeout=5)
        everyone.next_event(timeout=5)
        r = redis_client(mesh.redis_url)
        target = channel.format(viewer=viewer.user_id, author=author.user_id)
        for junk in (b"x", b"c+", b"-", b"\xff\xfe", b"99999999999999999999999", b"c+abc"):
            r.publish(target, junk)
        posted = stubs.post(author, "heard after the junk")
        assert home.next_tweet(timeout=5).tweet_id == posted.tweet_id
        assert everyone.next_tweet(timeout=5).tweet_id == posted.tweet_id
    finally:
        home.close()
        everyone.close()


def _events(stubs: Stubs, viewer: Account | None, since: str, count: int) -> list[Any]:
    """The first `count` events of a resumed stream other than heartbeats (one comes as soon as
    it listens, after its replay: a tweet fan-out writes later comes live after it)."""
    stream = LiveStream(stubs.timeline, viewer, since=since)
    events: list[Any] = []
    try:
        while len(events) < count:
            event = stream.next_event(timeout=10)
            if event.WhichOneof("event") != "heartbeat":
                events.append(event)
        return events
    finally:
        stream.close()


def test_a_home_stream_resumed_past_its_replay_says_what_it_left_out(stubs: Stubs, mesh: Mesh) -> None:
    viewer, author = stubs.sign_up("gapv"), stubs.sign_up("gapa")
    stubs.follow(viewer, author)
    stubs.home(viewer)  # the timeline exists: fan-out writes it from now on
    seen = stubs.post(author, "seen before the break")
    time.sleep(1.1)  # beyond the replay's one-second overlap
    missed = [stubs.post(author, f"missed {n}").tweet_id for n in range(HOME_TIMELINE_MAX + 5)]
    # The client was away until every one was fanned out (what fan-out writes after the replay is
    # read comes live instead, and then the replay left nothing out).
    eventually(lambda: fanned_out(redis_client(mesh.redis_url), "events:tweets"), timeout=20)
    first, *replayed = _events(stubs, viewer, seen.tweet_id, 1 + HOME_TIMELINE_MAX)
    assert first.WhichOneof("event") == "gap", first
    gap = first.gap
    kept = missed[-HOME_TIMELINE_MAX:]
    assert (gap.since_tweet_id, gap.before_tweet_id) == (seen.tweet_id, kept[0])
    assert [e.tweet.tweet_id for e in replayed] == kept  # the newest, oldest first
    # The page token reads what the replay left out, newest first, down to where the client was.
    rest: list[str] = []
    token = gap.page_token
    while token and seen.tweet_id not in rest:
        page = stubs.home(viewer, page_size=3, page_token=token)
        rest.extend(t.tweet_id for t in page.tweets)
        token = page.next_page_token
    assert rest[: rest.index(seen.tweet_id)] == list(reversed(missed[:-HOME_TIMELINE_MAX]))


def test_the_global_stream_resumed_past_its_replay_says_so_too(stubs: Stubs) -> None:
    author = stubs.sign_up("gapg")
    seen = stubs.post(author, "seen on the global stream")
    time.sleep(1.1)
    missed = [stubs.post(author, f"public {n}").tweet_id for n in range(HOME_TIMELINE_MAX + 3)]
    first, *replayed = _events(stubs, None, seen.tweet_id, 1 + HOME_TIMELINE_MAX)
    assert first.WhichOneof("event") == "gap", first
    assert first.gap.before_tweet_id == missed[-HOME_TIMELINE_MAX]
    assert [e.tweet.tweet_id for e in replayed] == missed[-HOME_TIMELINE_MAX:]
    page = stubs.tweets.GetGlobalTimeline(
        tweets_pb.GetGlobalTimelineRequest(page_token=first.gap.page_token, page_size=3), timeout=10
    )
    assert [t.tweet_id for t in page.tweets] == list(reversed(missed[:3]))


def test_a_stream_resumed_within_its_replay_has_no_gap(stubs: Stubs, mesh: Mesh) -> None:
    viewer, author = stubs.sign_up("nogapv"), stubs.sign_up("nogapa")
    stubs.follow(viewer, author)
    stubs.home(viewer)
    seen = stubs.post(author, "seen")
    time.sleep(1.1)
    missed = [stubs.post(author, f"missed {n}").tweet_id for n in range(3)]
    # The client was away until they were fanned out (as in the test above).
    eventually(lambda: fanned_out(redis_client(mesh.redis_url), "events:tweets"), timeout=20)
    events = _events(stubs, viewer, seen.tweet_id, 3)
    assert [e.tweet.tweet_id for e in events] == missed


def test_a_busy_stream_ends_within_a_heartbeat_of_its_revocation(stubs: Stubs) -> None:
    """A stream that never goes quiet re-checks its token on a clock too (heartbeats come on
    time whatever the traffic): a password change ends it UNAUTHENTICATED within the heartbeat
    interval (0.5 s in the test mesh)."""
    viewer, author = stubs.sign_up("busyv"), stubs.sign_up("busya")
    stubs.follow(viewer, author)
    stream = LiveStream(stubs.timeline, viewer)
    done = threading.Event()

    def keep_posting() -> None:
        n = 0
        while not done.is_set():
            stubs.post(author, f"busy {n}")
            n += 1
            time.sleep(0.02)

    poster = threading.Thread(target=keep_posting, daemon=True)
    try:
        stream.next_event(timeout=5)
        poster.start()
        stream.next_tweet(timeout=5)
        changed_at = time.monotonic()
        stubs.users.ChangePassword(
            users_pb.ChangePasswordRequest(
                user_id=viewer.user_id, old_password="correct horse battery", new_password="a new password"
            ),
            metadata=viewer.auth,
            timeout=10,
        )
        tweets_after = 0
        while time.monotonic() - changed_at < 20:  # without the clock, it would go on for ever
            try:
                event = stream.next_event(timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
                break
            tweets_after += event.WhichOneof("event") == "tweet"
        else:
            raise AssertionError("the stream was still open 20 s after its token was revoked")
        took = time.monotonic() - changed_at
        print(f"busy stream ended {took:.2f} s after the password change ({tweets_after} tweets meanwhile)")
        assert tweets_after > 0, "the stream was not busy: this test would prove nothing"
        assert took < 5, took
    finally:
        done.set()
        poster.join(timeout=5)
        stream.close()


def test_a_stream_with_a_revoked_token_cannot_open(stubs: Stubs) -> None:
    viewer = stubs.sign_up("revoked")
    stubs.users.Logout(users_pb.LogoutRequest(), metadata=viewer.auth, timeout=10)
    call = stubs.timeline.StreamHomeTimeline(timeline_pb.StreamHomeTimelineRequest(), metadata=viewer.auth)
    assert rpc_error(lambda: next(iter(call))).code() == grpc.StatusCode.UNAUTHENTICATED
