"""Calls between services: idempotent reads are retried when the peer is UNAVAILABLE, writes never
are, and every call carries a deadline. Against a real gRPC server whose answers the test scripts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import descriptor_pool

from meshkit.runtime import Runtime, read_only_methods
from meshkit.status import within
from social import peers
from social.peers import MediaPeer, NotificationsPeer, TweetsPeer, UsersPeer
from timeline_svc.settings import load_settings
from tweetmesh.users.v1 import users_service_pb2 as pb
from tweetmesh.users.v1 import users_service_pb2_grpc as pb_grpc

R = TypeVar("R")


class ScriptedUsers(pb_grpc.UserServiceServicer):
    """Fails the first `failures` calls of each method with UNAVAILABLE; counts calls and deadlines."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}
        self.deadlines: list[float | None] = []

    async def _answer(self, method: str, context: Any, reply: R) -> R:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.deadlines.append(context.time_remaining())
        if self.calls[method] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not now")
        return reply

    async def BatchGetUsers(self, request: pb.BatchGetUsersRequest, context: Any) -> pb.BatchGetUsersResponse:
        return await self._answer("BatchGetUsers", context, pb.BatchGetUsersResponse())

    async def FollowUser(self, request: pb.FollowUserRequest, context: Any) -> pb.FollowUserResponse:
        return await self._answer("FollowUser", context, pb.FollowUserResponse())

    async def GetUser(self, request: pb.GetUserRequest, context: Any) -> pb.GetUserResponse:
        await asyncio.sleep(60)  # a peer that hangs
        return pb.GetUserResponse()


@pytest.fixture
async def peer() -> AsyncIterator[tuple[ScriptedUsers, pb_grpc.UserServiceAsyncStub]]:
    scripted = ScriptedUsers(failures=2)  # type: ignore[abstract]  # scripts only what the tests call
    server = grpc.aio.server()
    pb_grpc.add_UserServiceServicer_to_server(scripted, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = load_settings(
        {"REDIS_URL": "redis://127.0.0.1:1/0", "RPC_DEADLINE_SECONDS": "1", "PAGE_TOKEN_SECRET": "s" * 32}
    )
    runtime = Runtime(settings)
    try:
        yield scripted, pb_grpc.UserServiceStub(runtime.channel(f"127.0.0.1:{port}", UsersPeer.SERVICE))
    finally:
        await runtime.close()
        await server.stop(0)


async def test_an_idempotent_read_is_retried_until_the_peer_answers(
    peer: tuple[ScriptedUsers, pb_grpc.UserServiceAsyncStub],
) -> None:
    scripted, stub = peer
    await stub.BatchGetUsers(pb.BatchGetUsersRequest(user_ids=["1"]))
    assert scripted.calls["BatchGetUsers"] == 3  # two UNAVAILABLE, then the answer


async def test_a_write_is_never_retried_by_the_channel(
    peer: tuple[ScriptedUsers, pb_grpc.UserServiceAsyncStub],
) -> None:
    scripted, stub = peer
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.FollowUser(pb.FollowUserRequest(user_id="1"))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert scripted.calls["FollowUser"] == 1


async def test_every_call_carries_the_default_deadline_and_a_hung_peer_ends_there(
    peer: tuple[ScriptedUsers, pb_grpc.UserServiceAsyncStub],
) -> None:
    scripted, stub = peer
    await stub.BatchGetUsers(pb.BatchGetUsersRequest(user_ids=["1"]))
    assert scripted.deadlines and all(
        d is not None and 0 < d <= 1.5 for d in scripted.deadlines
    )  # RPC_DEADLINE_SECONDS=1, give or take clocks
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetUser(pb.GetUserRequest(user_id="1"))
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_within_answers_at_its_limit_without_waiting_for_the_work_to_unwind() -> None:
    unwound = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(0.5))  # like psycopg asking a frozen server to cancel
            unwound.set()

    with pytest.raises(TimeoutError):
        await within(0.05, stubborn())
    assert not unwound.is_set()  # answered before the work finished unwinding
    await asyncio.wait_for(unwound.wait(), 5)
    assert await within(1.0, asyncio.sleep(0, result="done")) == "done"


PEERS = (UsersPeer, TweetsPeer, MediaPeer, NotificationsPeer)


def test_every_method_the_peers_call_is_a_known_read() -> None:
    """A new call between services must be classified: mark it `option idempotency_level =
    NO_SIDE_EFFECTS` in its proto if it only reads (and so may be retried), or leave it out on
    purpose and extend this test's list of writes."""
    # ClaimMedia reserves media for the tweet being posted: not retried (a failed post is retried
    # by its caller, with its request_id).
    # The follower lists' writes (EnsureFollowerLists, SyncFollow, JoinFollowerLists) are idempotent
    # but not retried by the channel: their caller's work (a fan-out event, a rebuild) is retried.
    writes = {"ClaimMedia", "EnsureFollowerLists", "SyncFollow", "JoinFollowerLists"}
    called = set(re.findall(r"self\._stub\.(\w+)", Path(peers.__file__).read_text()))
    reads = {m for peer in PEERS for m in read_only_methods(peer.SERVICE)}
    assert called <= reads | writes, f"unclassified: {called - reads - writes}"
    pool = descriptor_pool.Default()
    for peer in PEERS:
        names = {m.name for m in pool.FindServiceByName(peer.SERVICE.full_name).methods}
        assert set(read_only_methods(peer.SERVICE)) <= names, f"{peer.SERVICE.full_name}"
