"""SIGTERM lets a call that is in flight finish: the service stops taking new calls, answers the
ones it has, then exits cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from meshkit.healthcheck import health_status
from social.caches import user_key
from tests.helpers import Gate, Stubs, eventually, redis_client
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb


@pytest.fixture
def gated_tweets(mesh: Any) -> Iterator[Gate]:
    """tweets_svc calling users_svc through a Gate."""
    gate = Gate(("127.0.0.1", mesh.ports.users))
    try:
        mesh.start_service("tweets", {"USERS_ADDR": gate.address, "GRACE_SECONDS": "20"})
        yield gate
    finally:
        gate.shut()
        mesh.start_service("tweets")


def test_sigterm_lets_an_in_flight_call_finish(mesh: Any, stubs: Stubs, gated_tweets: Gate) -> None:
    author = stubs.sign_up("inflight")
    stubs.post(author, "through the gate")  # the channel to users_svc is up
    gated_tweets.close_gate()
    # Out of users_svc's cache, so that the post asks users_svc for its author (through the gate).
    redis_client(mesh.redis_url).delete(user_key(int(author.user_id)))
    request = tweets_pb.CreateTweetRequest(text="in flight at SIGTERM", request_id="in-flight")
    with ThreadPoolExecutor(max_workers=2) as pool:
        call = pool.submit(stubs.tweets.CreateTweet, request, metadata=author.auth, timeout=30)
        gated_tweets.holding.wait(timeout=10)  # the call is inside tweets_svc, waiting on users_svc
        assert gated_tweets.holding.is_set()
        stopped = pool.submit(mesh.stop_service, "tweets")
        with grpc.insecure_channel(f"127.0.0.1:{mesh.ports.tweets}") as channel:
            eventually(lambda: health_status(channel, timeout=1) != "SERVING")  # SIGTERM arrived
        assert not call.done()
        gated_tweets.open_gate()
        assert call.result(timeout=30).tweet.text == "in flight at SIGTERM"
        code = stopped.result(timeout=30)
        log = mesh.data_dir / "logs" / "tweets.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:]) if log.exists() else ""
        assert code == 0, (
            f"tweets_svc did not exit cleanly after its last call (exit {code}); its log ends:\n{tail}"
        )
