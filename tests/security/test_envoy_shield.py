"""Envoy's own shield, on a second Envoy (the template with tiny limits) in front of the shared
mesh: its token bucket answers 429 with Retry-After, and connections past the cap are refused."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest

from devstack.mesh import Mesh
from tests.edge import Config, edge_envoy, set_bucket
from tests.helpers import Stubs, eventually, http_call, rpc_error
from tweetmesh.users.v1 import users_service_pb2 as users_pb


@contextmanager
def envoy_with(mesh: Mesh, *, tokens: int, max_connections: int) -> Iterator[int]:
    """A second Envoy from the same template, its proxy-wide bucket holding `tokens` and at most
    `max_connections` open at once; yields its port."""

    def edit(config: Config) -> None:
        set_bucket(config, None, tokens)
        (monitor,) = config["overload_manager"]["resource_monitors"]
        monitor["typed_config"]["max_active_downstream_connections"] = max_connections

    with edge_envoy(mesh, edit=edit) as edge:
        yield edge.port


def test_the_proxy_bucket_cuts_a_flood_with_429_and_retry_after(stubs: Stubs, mesh: Mesh) -> None:
    account = stubs.sign_up("shield")
    with envoy_with(mesh, tokens=3, max_connections=100) as port:
        path = f"/v1/users/{account.user_id}"
        statuses = [http_call(port, "GET", path) for _ in range(4)]
        assert [s.status for s in statuses] == [200, 200, 200, 429]
        refused = statuses[-1]
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        through = Stubs.through(f"127.0.0.1:{port}")
        try:
            error = rpc_error(
                lambda: through.users.GetUser(users_pb.GetUserRequest(user_id=account.user_id), timeout=10)
            )
        finally:
            through.close()
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/handles/nobody_here")
        return conn.getresponse().status == 404
    except (ConnectionError, http.client.HTTPException, OSError):
        return False
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_connections_past_the_cap_are_refused(mesh: Mesh) -> None:
    with envoy_with(mesh, tokens=1000, max_connections=2) as port:
        held = []
        try:
            for _ in range(2):  # two kept-alive connections, each known to be open by an answer
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                held.append(conn)
                conn.request("GET", "/v1/handles/nobody_here")
                response = conn.getresponse()
                response.read()
                assert response.status == 404
            assert not _answers(port)
        finally:
            for conn in held:
                conn.close()
        eventually(lambda: _answers(port), timeout=10)
