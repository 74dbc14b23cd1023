"""Envoy routes an allow list of public RPCs, so no spelling of an internal path gets through.

Every variant below of an internal RPC's path (and of the fan-out admin API's) is tried over
HTTP/1.1, as JSON and as grpc-web, and over native gRPC: each is refused (404 / UNIMPLEMENTED)
and none reaches a service (Envoy's count of requests sent to each cluster does not move).
"""

from __future__ import annotations

import functools
import http.client
import json
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from devstack.mesh import PUBLIC_SERVICES, Mesh
from tests.helpers import rpc_error, rpc_routes

AUTHENTICATE = "/tweetmesh.users.v1.UserService/AuthenticateToken"
FANOUT_STATS = "/tweetmesh.fanout.v1.FanoutService/GetFanoutStats"


def spellings(path: str) -> list[str]:
    """Other ways to write `path` that a lenient router or server might take for it."""
    package, _, method = path.removeprefix("/").partition("/")
    first = f"%{ord(method[0]):02X}"
    return [
        path,
        path.lower(),
        path.upper(),
        f"/{package}/{method[0].lower()}{method[1:]}",
        f"/{package.title()}/{method}",
        f"{path}/",
        f"{path}?x=1",
        f"{path}#x",
        f"/{package}/{first}{method[1:]}",  # a percent-encoded letter
        f"/{package}%2F{method}",  # an encoded slash
        f"/{package}%2f{method}",
        f"/{package.replace('.', '%2E')}/{method}",
        f"/{package}/{method}%00",
        f"/{package}/{method}%20",
        f"//{package}/{method}",
        f"/{package}//{method}",
        f"/{package}/./{method}",
        f"/{package}/x/../{method}",
        f"/x/../{package}/{method}",
        f"/{package}/%2E%2E/{package}/{method}",
        f"/{package}/{method};x",
        f"/v1/../{package}/{method}",
    ]


INTERNAL = [method for method, verb in rpc_routes().items() if not verb]
CONTENT_TYPES = [
    "application/json",
    "application/grpc",
    "application/grpc+proto",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
]


def _upstream_requests(mesh: Mesh) -> dict[str, int]:
    url = f"http://127.0.0.1:{mesh.ports.envoy_admin}/stats?format=json&filter=upstream_rq_total$"
    with urllib.request.urlopen(url, timeout=10) as response:
        stats = json.load(response)["stats"]
    counts = {s["name"]: int(s["value"]) for s in stats if "value" in s}
    return {name: counts.get(f"cluster.{name}.upstream_rq_total", 0) for name in PUBLIC_SERVICES}


@pytest.fixture
def nothing_reaches_a_service(mesh: Mesh) -> Iterator[None]:
    before = _upstream_requests(mesh)
    yield
    assert _upstream_requests(mesh) == before, "a refused path was sent to a service"


def _http(port: int, path: str, content_type: str) -> tuple[int, str | None]:
    """POST `path` as written (no client-side normalization); (HTTP status, grpc-status header)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        body = b"{}" if content_type == "application/json" else b"\x00\x00\x00\x00\x00"
        if content_type == "application/grpc-web-text":
            body = b"AAAAAAA="
        conn.putheader("content-type", content_type)
        conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("grpc-status")
    finally:
        conn.close()


def test_the_variants_cover_every_internal_rpc_and_the_admin_api() -> None:
    assert AUTHENTICATE in INTERNAL and FANOUT_STATS in INTERNAL
    assert len(set(spellings(AUTHENTICATE))) == len(spellings(AUTHENTICATE))


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("path", [AUTHENTICATE, FANOUT_STATS])
def test_every_spelling_of_an_internal_path_is_refused_over_http(
    mesh: Mesh, nothing_reaches_a_service: None, path: str, content_type: str
) -> None:
    answers = {variant: _http(mesh.ports.envoy, variant, content_type) for variant in spellings(path)}
    # 404, or gRPC's form of it (HTTP 200, grpc-status 12 UNIMPLEMENTED). A fragment is no part of
    # a request target: Envoy's HTTP/1 codec refuses it before routing (400, which Envoy tells a
    # gRPC caller as grpc-status 13).
    refused = {
        v: a
        for v, a in answers.items()
        if a[0] == 404 or a[1] == "12" or ("#" in v and (a[0] == 400 or a[1] == "13"))
    }
    assert refused == answers, {v: a for v, a in answers.items() if v not in refused}


@pytest.mark.parametrize("path", INTERNAL)
def test_every_internal_rpc_is_refused_in_every_spelling_over_native_grpc(
    mesh: Mesh, nothing_reaches_a_service: None, path: str
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{mesh.ports.envoy}") as channel:
        for variant in spellings(path):
            if "#" in variant:  # not a valid :path for an HTTP/2 client
                continue
            invoke: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(variant)
            error = rpc_error(functools.partial(invoke, b"", timeout=10))
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED, (variant, error.code(), error.details())


def test_public_rpcs_still_go_through_and_are_counted(mesh: Mesh) -> None:
    """The counter the tests above rely on does move when a request is routed."""
    before = _upstream_requests(mesh)
    status, _ = _http(mesh.ports.envoy, "/tweetmesh.users.v1.UserService/GetUser", "application/grpc")
    assert status == 200
    after = _upstream_requests(mesh)
    assert after["users"] == before["users"] + 1


def test_a_clients_envoy_control_headers_are_ignored_whatever_its_address(mesh: Mesh) -> None:
    """Envoy obeys x-envoy-* request headers (a timeout, retries) from "internal" clients, by
    default private addresses and 127.0.0.1; it counts no client as internal. Were this one
    obeyed, the stream (whose first bytes come with its first heartbeat) would be cut after 1 ms
    with 504."""
    conn = http.client.HTTPConnection("127.0.0.1", mesh.ports.envoy, timeout=15)
    try:
        conn.request("GET", "/v1/timelines/global:stream", headers={"x-envoy-upstream-rq-timeout-ms": "1"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()
