"""Per-client limits inside the services, on reads and streams too: one client flooding reads gets
429 / RESOURCE_EXHAUSTED while another still gets its answers, and open streams are capped per
account and per address (a refusal, never a stream that silently hears nothing).

The service under test is restarted with low limits (and restored after). Calls go through Envoy
from different local addresses (127.0.0.x: Envoy's edge buckets are off in the test mesh, so what
answers 429 here is the service), or straight to the service naming their client in
x-forwarded-for, as Envoy does."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from devstack.mesh import Mesh
from tests.helpers import Account, Stubs, http_call, redis_client
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb


def _forget_limits(mesh: Mesh) -> None:
    r = redis_client(mesh.redis_url)
    for key in r.scan_iter("ratelimit:*"):
        r.delete(key)


@pytest.fixture
def restarted(mesh: Mesh) -> Iterator[Any]:
    """Restarts a service with some settings for the test, and as it was after."""
    changed: list[str] = []

    def restart(name: str, env: dict[str, str]) -> None:
        _forget_limits(mesh)
        mesh.start_service(name, env)
        changed.append(name)

    yield restart
    for name in changed:
        mesh.start_service(name)
    _forget_limits(mesh)


def test_one_client_flooding_reads_is_refused_while_another_still_reads(
    stubs: Stubs, mesh: Mesh, restarted: Any
) -> None:
    author = stubs.sign_up("readflood")
    tweet = stubs.post(author, "read me")
    restarted("tweets", {"RATE_LIMIT_READ_PER_ADDRESS": "20/60"})
    path = f"/v1/tweets/{tweet.tweet_id}"
    flood = Counter(http_call(mesh.ports.envoy, "GET", path, source="127.0.0.2").status for _ in range(40))
    other = Counter(http_call(mesh.ports.envoy, "GET", path, source="127.0.0.3").status for _ in range(10))
    print(f"flooding client: {dict(flood)}; another client meanwhile: {dict(other)}")
    assert flood == {200: 20, 429: 20}
    assert other == {200: 10}
    refused = http_call(mesh.ports.envoy, "GET", path, source="127.0.0.2")
    assert refused.status == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["details"][0]["reason"] == "RATE_LIMITED"


def _open(stubs: Stubs, account: Account | None, address: str) -> grpc.StatusCode | None:
    """Opens a stream as `account` (the global one without) from `address`: None once it is open
    (its first heartbeat came), else the code it was refused with. The stream stays open."""
    metadata: tuple[tuple[str, str], ...] = (("x-forwarded-for", address),)
    call: Any
    if account is None:
        request = timeline_pb.StreamGlobalTimelineRequest()
        call = stubs.timeline.StreamGlobalTimeline(request, metadata=metadata)
    else:
        home = timeline_pb.StreamHomeTimelineRequest()
        call = stubs.timeline.StreamHomeTimeline(home, metadata=(*account.auth, *metadata))
    _opened.append(call)
    try:
        next(iter(call))
    except grpc.RpcError as error:
        return error.code()
    return None


_opened: list[Any] = []


@pytest.fixture
def streams() -> Iterator[list[Any]]:
    yield _opened
    for call in _opened:
        call.cancel()
    _opened.clear()


def test_open_streams_are_capped_per_account_and_per_address(
    stubs: Stubs, mesh: Mesh, restarted: Any, streams: list[Any]
) -> None:
    first, second = stubs.sign_up("capone"), stubs.sign_up("captwo")
    restarted("timeline", {"STREAM_MAX_PER_ACCOUNT": "2", "STREAM_MAX_PER_ADDRESS": "3"})
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [_open(stubs, first, "198.51.100.10") for _ in range(3)] == [None, None, exhausted]
    assert _open(stubs, first, "198.51.100.11") == exhausted  # the account's cap, from anywhere
    assert _open(stubs, second, "198.51.100.10") is None  # the address's third
    assert _open(stubs, None, "198.51.100.10") == exhausted  # the address is full, global too
    assert _open(stubs, second, "198.51.100.11") is None  # another address has room
    assert _open(stubs, None, "198.51.100.12") is None
    streams[0].cancel()  # one of the first account's ends: it may open one again
    assert _open(stubs, first, "198.51.100.13") is None
    # Through Envoy, a refused stream is a 429 with a reason, not a stream that hears nothing.
    refused = http_call(
        mesh.ports.envoy, "GET", "/v1/timelines/home:stream", token=first.token, source="127.0.0.4"
    )
    assert refused.status == 429, refused.body
    assert refused.json()["details"][0]["reason"] == "TOO_MANY_STREAMS"
