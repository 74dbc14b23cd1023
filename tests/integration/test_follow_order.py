"""Follows and unfollows applied by several fan-out workers, in whatever order they get to them,
leave each home timeline matching the final follow state.

A second fan-out worker joins the consumer group; viewers toggle follows quickly (so consecutive
events of one pair go to different workers); and one follow event is delivered again after the
unfollow that followed it was applied, as a worker that read it and stalled would (or the outbox
sweeper relaying a follow whose first relay failed, after the unfollow's went through)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grpc
import pytest

from devstack.mesh import ROOT, Mesh, MeshPorts
from devstack.process import ManagedProcess
from meshkit.healthcheck import health_status
from social import FOLLOWS_STREAM
from tests.helpers import Stubs, eventually, fanned_out, redis_client
from tweetmesh.users.v1 import users_service_pb2 as users_pb


@pytest.fixture
def second_worker(mesh: Mesh) -> Iterator[ManagedProcess]:
    port = MeshPorts.free().fanout
    env = mesh.service_env(
        "fanout", {"GRPC_PORT": str(port), "METRICS_PORT": "0", "FANOUT_CONSUMER": "second"}
    )
    worker = ManagedProcess(
        "fanout-2",
        [sys.executable, "-m", "fanout_svc"],
        log_path=mesh.data_dir / "logs" / "fanout-2.log",
        env=env,
        cwd=ROOT,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            worker.wait_until(lambda: health_status(channel, timeout=1.0) == "SERVING", 30, "SERVING")
        yield worker
    finally:
        worker.stop()


def test_the_final_timeline_matches_the_final_follow_state(
    stubs: Stubs, mesh: Mesh, second_worker: ManagedProcess
) -> None:
    author = stubs.sign_up("orderauth")
    posted = {stubs.post(author, f"before the follows {n}").tweet_id for n in range(3)}
    viewers = [stubs.sign_up("orderview") for _ in range(6)]
    for viewer in viewers:
        stubs.home(viewer)  # their timelines exist: fan-out writes them
    follow = users_pb.FollowUserRequest(user_id=author.user_id)
    unfollow = users_pb.UnfollowUserRequest(user_id=author.user_id)
    # Toggle: the odd viewers end following the author, the even ones not.
    for round_ in range(4):
        for n, viewer in enumerate(viewers):
            if round_ < 3 or n % 2:
                stubs.users.FollowUser(follow, metadata=viewer.auth, timeout=10)
            if round_ < 3:
                stubs.users.UnfollowUser(unfollow, metadata=viewer.auth, timeout=10)
    # A follow event of an even viewer delivered again after the unfollow: late, stale.
    r = redis_client(mesh.redis_url)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = r.xrange(FOLLOWS_STREAM)  # type: ignore[assignment]
    late = next(
        fields
        for _, fields in reversed(entries)
        if (event := users_pb.FollowEvent.FromString(fields[b"data"])).following
        and event.follower_id == viewers[0].user_id
    )

    eventually(lambda: fanned_out(r, FOLLOWS_STREAM), timeout=30)
    r.xadd(FOLLOWS_STREAM, late)  # type: ignore[arg-type]
    eventually(lambda: fanned_out(r, FOLLOWS_STREAM), timeout=30)
    consumers = {c["name"] for c in r.xinfo_consumers(FOLLOWS_STREAM, "fanout")}
    assert b"second" in consumers and len(consumers) >= 2, consumers

    def matches() -> bool:
        for n, viewer in enumerate(viewers):
            held = set(stubs.home_ids(viewer)) & posted
            assert held == (posted if n % 2 else set()), (n, held)
        return True

    eventually(matches, timeout=30)
