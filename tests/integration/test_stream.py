"""StreamHomeTimeline: live delivery, heartbeats, and a gap-free replay on reconnect."""

from __future__ import annotations

import time

import grpc

from devstack.mesh import Mesh
from tests.helpers import ON_BOTH_REDIS, LiveStream, Stubs, redis_client, rpc_error
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb


@ON_BOTH_REDIS
def test_followers_open_stream_receives_a_new_tweet_live(stubs: Stubs) -> None:
    follower, author = stubs.sign_up("watcher"), stubs.sign_up("poster")
    stubs.follow(follower, author)
    stream = LiveStream(stubs.timeline, follower)
    try:
        stream.next_event(timeout=5)  # the stream is open once the first heartbeat arrives
        posted_at = time.monotonic()
        tweet = stubs.post(author, "live!")
        # Speed is the benchmark's business; here a generous deadline, and the latency is reported.
        arrived = stream.next_tweet(timeout=5.0)
        print(f"post -> open stream: {(time.monotonic() - posted_at) * 1000:.1f} ms")
        assert arrived.tweet_id == tweet.tweet_id
        assert arrived.author.handle == author.user.handle
    finally:
        stream.close()


@ON_BOTH_REDIS
def test_idle_stream_gets_heartbeats(stubs: Stubs) -> None:
    viewer = stubs.sign_up("idle")
    stream = LiveStream(stubs.timeline, viewer)
    try:
        kinds = {stream.next_event(timeout=3).WhichOneof("event") for _ in range(2)}
        assert kinds == {"heartbeat"}
    finally:
        stream.close()


@ON_BOTH_REDIS
def test_reconnect_with_since_tweet_id_replays_what_was_missed_then_goes_live(stubs: Stubs) -> None:
    follower, author = stubs.sign_up("reconn"), stubs.sign_up("author")
    stubs.follow(follower, author)
    stream = LiveStream(stubs.timeline, follower)
    stream.next_event(timeout=5)
    last_seen = stubs.post(author, "seen live")
    assert stream.next_tweet(timeout=2).tweet_id == last_seen.tweet_id
    stream.close()

    time.sleep(1.1)  # so the missed tweets fall outside the replay's overlap window before last_seen
    missed = [stubs.post(author, f"missed {i}").tweet_id for i in range(3)]

    resumed = LiveStream(stubs.timeline, follower, since=last_seen.tweet_id)
    try:
        replayed = [resumed.next_tweet(timeout=3).tweet_id for _ in missed]
        assert replayed == missed  # oldest first, nothing skipped, nothing already seen
        live = stubs.post(author, "after reconnect")
        assert resumed.next_tweet(timeout=2).tweet_id == live.tweet_id
    finally:
        resumed.close()


@ON_BOTH_REDIS
def test_stream_needs_a_valid_token(stubs: Stubs) -> None:
    call = stubs.timeline.StreamHomeTimeline(
        timeline_pb.StreamHomeTimelineRequest(), metadata=(("authorization", "Bearer nope"),)
    )
    error = rpc_error(lambda: next(iter(call)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_heartbeat_rechecks_every_open_streams_token_in_one_redis_read(stubs: Stubs, mesh: Mesh) -> None:
    viewers = [stubs.sign_up("beating") for _ in range(6)]
    streams = [LiveStream(stubs.timeline, v) for v in viewers]
    r = redis_client(mesh.redis_url)
    try:
        for stream in streams:
            stream.next_event(timeout=10)  # open and listening
        reads_before = r.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)
        for stream in streams:  # several beats (0.5 s each here), each re-checking all six tokens
            for _ in range(4):
                assert stream.next_event(timeout=10).WhichOneof("event") == "heartbeat"
        reads = r.info("commandstats").get("cmdstat_mget", {}).get("calls", 0) - reads_before
        # One read per beat for all the streams (a beat or two more may fall in while reading
        # them), not one per stream and beat (24 or more). Counted on one Redis: on a cluster the
        # read is a script per node, which commandstats cannot tell from the others.
        assert 3 <= reads <= 8, reads
    finally:
        for stream in streams:
            stream.close()
