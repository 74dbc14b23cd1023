"""Generated requests against the public HTTP API through Envoy (routes and fields from the
descriptor set): whatever arrives, the answer is never a 5xx other than 503 for a dependency down,
never INTERNAL or UNKNOWN, and the mesh is still healthy afterwards.

`make test` sends FUZZ_EXAMPLES=300 requests; `make fuzz` sends 10,000.
"""

from __future__ import annotations

import http.client
import json
import os
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from devstack.mesh import SERVICES, Mesh
from meshkit.healthcheck import health_status
from tests.conftest import report_lines
from tests.fuzz.routes import Known, Request, requests, routes
from tests.helpers import http_call

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
ALL_ROUTES = routes()
# google.rpc.Code values that mean a bug, whatever the HTTP status says.
UNKNOWN, INTERNAL, UNAVAILABLE = 2, 13, 14


class Envoy:
    """One keep-alive HTTP/1.1 connection to Envoy, reopened whenever it breaks."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> tuple[int, bytes]:
        headers = {"content-type": "application/json"}
        if request.token is not None:
            headers["authorization"] = f"Bearer {request.token}"
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        try:
            self._conn.request(request.method, request.path, body=request.body, headers=headers)
            if request.route.streaming:
                # A stream that opened never ends by itself: its status line is the answer, read
                # with a short wait (it comes with the first heartbeat), then the stream is dropped.
                assert self._conn.sock is not None
                self._conn.sock.settimeout(3)
            response = self._conn.getresponse()
            if request.route.streaming and response.status == 200:
                self.close()
                return 200, b""
            return response.status, response.read()
        except TimeoutError:
            self.close()
            return 200, b""  # an open stream that had nothing to say yet
        except (http.client.HTTPException, OSError):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@pytest.fixture(scope="module")
def envoy(mesh: Mesh) -> Iterator[Envoy]:
    client = Envoy(mesh.ports.envoy)
    yield client
    client.close()


@pytest.fixture(scope="module")
def statuses(request: pytest.FixtureRequest) -> Iterator[Counter[int]]:
    seen: Counter[int] = Counter()
    yield seen
    summary = ", ".join(f"{status}: {count}" for status, count in sorted(seen.items()))
    report_lines(request.config).append(f"fuzz: {sum(seen.values())} HTTP requests; statuses {summary}")


def test_routes_come_from_the_descriptor_set() -> None:
    names = {r.rpc for r in ALL_ROUTES}
    assert {
        "UserService.CreateUser",
        "TweetService.CreateTweet",
        "TimelineService.StreamHomeTimeline",
    } <= names
    assert not any("Batch" in n or "Fanout" in n for n in names), "internal RPCs must not be routed"


def test_generated_requests_never_get_a_server_error(
    envoy: Envoy, known: Known, statuses: Counter[int]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(ALL_ROUTES, known))
    def answered_properly(request: Request) -> None:
        status, body = envoy.send(request)
        statuses[status] += 1
        code = _rpc_code(body)
        assert status < 500 or status == 503, f"{status} {body[:300]!r} for {request.describe()}"
        assert code not in {UNKNOWN, INTERNAL}, f"{status} {body[:300]!r} for {request.describe()}"
        if status == 503:
            assert code == UNAVAILABLE, f"503 that is not UNAVAILABLE: {body[:300]!r}"

    answered_properly()


def test_the_mesh_is_healthy_after_the_fuzzing(mesh: Mesh, known: Known) -> None:
    for name in SERVICES:
        with grpc.insecure_channel(f"127.0.0.1:{mesh.ports.of(name)}") as channel:
            assert health_status(channel) == "SERVING", name
    answer = http_call(mesh.ports.envoy, "GET", f"/v1/users/{known.user_ids[0]}")
    assert answer.status == 200


def _rpc_code(body: bytes) -> int | None:
    try:
        payload: object = json.loads(body)
    except ValueError:
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, int) else None
