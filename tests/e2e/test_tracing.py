"""Tracing across the mesh: one post through Envoy is one trace, from Envoy through tweets_svc (its
PostgreSQL and Redis work, the outbox relay), fanout_svc's consumer and timeline_svc's delivery to
an open stream, received by an OTLP collector run here (opentelemetry-proto's TraceService)."""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from devstack.mesh import Mesh, free_port
from social import TWEETS_STREAM
from tests.conftest import TEST_ENV
from tests.conftest import test_mesh as private_mesh  # (its own name would be collected as a test)
from tests.e2e.test_envoy_http import Http
from tests.helpers import eventually, http_call

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CREATE_TWEET = "tweetmesh.tweets.v1.TweetService/CreateTweet"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    span: trace_pb2.Span

    def attribute(self, key: str) -> Any:
        for kv in self.span.attributes:
            if kv.key == key:
                return _value(kv.value)
        return None


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver keeping every span it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (_value(a.value) for a in resource_spans.resource.attributes if a.key == "service.name"),
                    "",
                )
                for scope in resource_spans.scope_spans:
                    self._spans.extend(ReceivedSpan(service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: bytes) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if s.span.trace_id == trace_id]

    def find(self, service: str, name: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if s.service == service and s.span.name == name]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # The package's generated gRPC module is untyped.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def traced_mesh(collector: tuple[Collector, int]) -> Iterator[Mesh]:
    env = TEST_ENV | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector[1]}",
        # Spans are sent every 200 ms (the SDK's default is 5 s).
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    with private_mesh(env, "tweetmesh-trace-") as instance:
        yield instance


def _open_home_stream(port: int, token: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", "/v1/timelines/home:stream", headers={"authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.status == 200
    assert "heartbeat" in json.loads(response.readline())  # listening
    return conn, response


def _next_tweet(response: http.client.HTTPResponse, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = json.loads(response.readline())
        if "tweet" in event:
            return event["tweet"]  # type: ignore[no-any-return]
    raise AssertionError("no tweet arrived on the stream")


def test_one_post_is_one_trace_from_envoy_to_the_followers_stream(
    traced_mesh: Mesh, collector: tuple[Collector, int]
) -> None:
    spans, _ = collector
    api = Http(traced_mesh.ports.envoy)
    author, author_token = api.sign_up("traced")
    _follower, follower_token = api.sign_up("reader")
    assert api("POST", f"/v1/users/{author['user_id']}:follow", {}, token=follower_token).status == 200
    conn, stream = _open_home_stream(api.port, follower_token)
    try:
        text = f"traced {secrets.token_hex(4)}"
        posted = api("POST", "/v1/tweets", {"text": text}, token=author_token)
        assert posted.status == 200, posted.body
        tweet_id = posted.json()["tweet"]["tweet_id"]
        while (arrived := _next_tweet(stream))["tweet_id"] != tweet_id:
            pass
        assert arrived["text"] == text
    finally:
        conn.close()

    # The post's server span in tweets_svc names the trace; Envoy started it (its span is the root).
    def the_post() -> ReceivedSpan | None:
        return next(
            (s for s in spans.find("tweetmesh-tweets", CREATE_TWEET) if s.span.kind == SERVER),
            None,
        )

    create = eventually(the_post, timeout=30)
    trace_id = create.span.trace_id
    consumed = f"{TWEETS_STREAM} process"

    def whole_trace() -> list[ReceivedSpan]:
        found = spans.trace(trace_id)
        delivered = [
            s
            for s in found
            if s.service == "tweetmesh-timeline"
            and s.span.name == "stream send"
            and s.attribute("tweetmesh.tweet_id") == tweet_id
        ]
        assert delivered, sorted({(s.service, s.span.name) for s in found})
        # Each process exports on its own schedule: the fan-out span that published the tweet ends
        # (and is sent) after the delivery it caused may already have arrived.
        fanned = any(s.service == "tweetmesh-fanout" and s.span.name == consumed for s in found)
        assert fanned, "the fan-out span has not arrived yet"
        # Envoy sends its spans every 5 s (or 5 at a time).
        assert any(s.service == "tweetmesh-envoy" for s in found), "Envoy's span is missing"
        return found

    trace = eventually(whole_trace, timeout=30)
    by_id = {s.span.span_id: s for s in trace}
    roots = [s for s in trace if not s.span.parent_span_id]
    assert [r.service for r in roots] == ["tweetmesh-envoy"], [(r.service, r.span.name) for r in roots]
    # tweets_svc continued Envoy's context (its span's parent is in Envoy).
    assert by_id[create.span.parent_span_id].service == "tweetmesh-envoy"

    def within_create(s: ReceivedSpan) -> bool:
        parent = by_id.get(s.span.parent_span_id)
        while parent is not None:
            if parent.span.span_id == create.span.span_id:
                return True
            parent = by_id.get(parent.span.parent_span_id)
        return False

    tweets_work = [s for s in trace if s.service == "tweetmesh-tweets" and within_create(s)]
    assert any(s.attribute("db.system") == "postgresql" for s in tweets_work), "no PostgreSQL span"
    assert any(s.attribute("db.system") == "redis" for s in tweets_work), "no Redis span"
    assert any(s.span.name == "outbox relay" for s in tweets_work), "no outbox relay span"

    assert any(s.service == "tweetmesh-fanout" and s.span.name == consumed for s in trace)
    assert any(s.service == "tweetmesh-fanout" and s.attribute("db.system") == "redis" for s in trace)
    delivered = [s for s in trace if s.service == "tweetmesh-timeline" and s.span.name == "stream send"]
    # The delivery is a child of the fan-out that published the tweet.
    assert {by_id[s.span.parent_span_id].span.name for s in delivered} == {consumed}
    assert delivered[0].attribute("tweetmesh.stream") == "home"


def test_a_clients_traceparent_is_continued(traced_mesh: Mesh, collector: tuple[Collector, int]) -> None:
    spans, _ = collector
    _reader, token = Http(traced_mesh.ports.envoy).sign_up("client")
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    response = http_call(
        traced_mesh.ports.envoy,
        "GET",
        "/v1/timelines/home?page_size=1",
        token=token,
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert response.status == 200

    def continued() -> list[ReceivedSpan]:
        found = spans.trace(bytes.fromhex(trace_id))
        assert any(s.service == "tweetmesh-envoy" for s in found)
        assert any(s.service == "tweetmesh-timeline" and s.span.kind == SERVER for s in found)
        return found

    found = eventually(continued, timeout=30)
    envoy = [s for s in found if s.service == "tweetmesh-envoy"]
    # Envoy's span is a child of the client's; the service's span a child of Envoy's.
    assert any(s.span.parent_span_id == bytes.fromhex(parent) for s in envoy)
    served = [s for s in found if s.service == "tweetmesh-timeline" and s.span.kind == SERVER]
    assert {s.span.parent_span_id for s in served} <= {s.span.span_id for s in envoy}
