"""Clients that give up on calls in flight, closing their connection mid-call (a load generator
stopping, a tab closed), must not crash or wedge a service.

grpc.aio releases a call as soon as its client cancels it, while the handler's own work can still
be running (redis-py finishes a command it was cancelled in). Before meshkit.interceptors.CallFacts,
such work read the released call: tweets_svc died of a segfault in peer() within a second of this."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from devstack.mesh import Mesh
from tests.helpers import Account, Stubs
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc

ROUNDS = 120  # without the fix, tweets_svc crashed within 100 rounds in each of 3 tries
CALLS_PER_ROUND = 32

# service -> (stub class, method, the n-th request of an account): calls that authenticate, and
# (the writes) are rate limited, so they await Redis before they read the caller's address.
CALLS: dict[str, tuple[Callable[[grpc.aio.Channel], Any], str, Callable[[int, Account], Message]]] = {
    "tweets": (
        tweets_grpc.TweetServiceStub,
        "CreateTweet",
        lambda n, account: tweets_pb.CreateTweetRequest(text=f"abandoned {n}"),
    ),
    "users": (
        users_grpc.UserServiceStub,
        "UpdateUser",
        lambda n, account: users_pb.UpdateUserRequest(user_id=account.user_id, bio=f"abandoned {n}"),
    ),
    "timeline": (
        timeline_grpc.TimelineServiceStub,
        "GetHomeTimeline",
        lambda n, account: timeline_pb.GetHomeTimelineRequest(page_size=20),
    ),
}


async def abandon_calls(address: str, service: str, account: Account) -> None:
    """ROUNDS connections, each carrying CALLS_PER_ROUND calls, closed a few ms after they start."""
    stub_class, method, request = CALLS[service]
    rng = random.Random(7)
    for round_ in range(ROUNDS):
        async with grpc.aio.insecure_channel(address) as channel:
            call = getattr(stub_class(channel), method)
            pending = [
                call(request(round_ * CALLS_PER_ROUND + n, account), metadata=account.auth)
                for n in range(CALLS_PER_ROUND)
            ]
            await asyncio.sleep(rng.uniform(0.0005, 0.01))
        for started in pending:  # closed under them: each ends, cancelled or with a status
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                await started


@pytest.mark.parametrize("service", sorted(CALLS))
def test_calls_abandoned_mid_flight_leave_the_service_running(mesh: Mesh, stubs: Stubs, service: str) -> None:
    account = stubs.sign_up("quitter")
    try:
        asyncio.run(abandon_calls(f"127.0.0.1:{mesh.ports.of(service)}", service, account))
        assert mesh.casualties() == []
        # It still answers, correctly, on a new connection. (Abandoned posts may still be
        # committing meanwhile, so the new one need not be the newest.)
        posted = stubs.post(account, "still here")
        found = stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=posted.tweet_id), timeout=10)
        assert found.tweet.text == "still here"
        assert (
            stubs.users.UpdateUser(
                users_pb.UpdateUserRequest(user_id=account.user_id, bio="after"),
                metadata=account.auth,
                timeout=10,
            ).user.bio
            == "after"
        )
        home = stubs.home(account).tweets
        assert home and {tweet.author_id for tweet in home} == {account.user_id}
    finally:
        # A crashed service would fail every later test too: bring it back for them.
        if mesh.casualties():
            mesh.start_service(service)
