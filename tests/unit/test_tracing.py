"""Tracing's pure parts: off without an endpoint (nothing installed, no context made), which spans
start a trace, a batch of events handled at once (a span per event), and a live message carrying
its fan-out's trace context."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanKind, StatusCode

from meshkit import tracing
from social.live import CelebrityFollow, LiveTweet, parse_message, tweet_message

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_tracing_is_off_without_an_endpoint_and_installs_nothing() -> None:
    assert tracing.configure("tweets", env={}) is None
    assert not tracing.enabled()
    assert tracing.server_interceptors() == []
    assert tracing.client_interceptors() == []
    assert tracing.traceparent() is None
    with tracing.consuming("events:tweets", TRACE.encode()), tracing.span("outbox relay"):
        pass  # no tracer: nothing to record, nothing raised
    with tracing.consuming_batch("events:tweets", [TRACE.encode(), None]) as spans:
        assert spans.traceparents == [None, None]
        spans.failed(1, ValueError("nothing recorded"))
    tracing.delivered("stream send", TRACE, {})


@pytest.mark.parametrize(
    ("kind", "decision"),
    [
        (SpanKind.SERVER, Decision.RECORD_AND_SAMPLE),  # a call served starts a trace
        (SpanKind.CONSUMER, Decision.RECORD_AND_SAMPLE),  # so does an event with no context
        (SpanKind.CLIENT, Decision.DROP),  # a Redis command or a probe outside any trace does not
        (SpanKind.INTERNAL, Decision.DROP),
    ],
)
def test_only_calls_served_and_events_consumed_start_a_trace(kind: SpanKind, decision: Decision) -> None:
    assert tracing.WithinTraces().should_sample(None, 1, "x", kind).decision == decision


def test_a_batch_handled_at_once_has_a_span_per_event_each_in_its_own_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.WithinTraces())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing._STATE, "tracer", provider.get_tracer("test"))
    other = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
    with tracing.consuming_batch("events:tweets", [TRACE.encode(), other, None]) as spans:
        # The batch's shared work is recorded within the first event's span.
        current = trace.get_current_span().get_span_context()
        spans.failed(1, ValueError("this one alone failed"))
    first, second, third = exporter.get_finished_spans()
    assert current == first.get_span_context()
    assert [s.name for s in (first, second, third)] == ["events:tweets process"] * 3
    assert {s.kind for s in (first, second, third)} == {SpanKind.CONSUMER}
    # Each a child of the context its event carries (none: a trace of its own).
    assert first.parent is not None and f"{first.parent.trace_id:032x}" == TRACE.split("-")[1]
    assert second.parent is not None and f"{second.parent.trace_id:032x}" == other.split("-")[1]
    assert third.parent is None
    # What each event causes carries its own span's context.
    for span, sent in zip((first, second, third), spans.traceparents, strict=True):
        context = span.get_span_context()
        assert context is not None
        assert sent == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert [s.status.status_code for s in (first, second, third)] == [
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert first.attributes is not None and first.attributes["messaging.batch.message_count"] == 3


def test_a_live_message_carries_its_fan_outs_trace_context() -> None:
    assert tweet_message(123, deleted=False) == "123"
    assert tweet_message(123, deleted=False, trace=TRACE) == f"123 {TRACE}"
    assert parse_message(f"123 {TRACE}".encode()) == LiveTweet(123, False, TRACE)
    assert parse_message(f"-123 {TRACE}".encode()) == LiveTweet(123, True, TRACE)
    assert parse_message(b"123") == LiveTweet(123, False, None)
    assert parse_message(b"c+7") == CelebrityFollow(7, True)


@pytest.mark.parametrize(
    "message",
    [
        f"c+7 {TRACE}".encode(),  # a celebrity change carries no trace
        b"123 00-xyz-b7ad6b7169203331-01",
        f"123  {TRACE}".encode(),
        f"123 {TRACE} ".encode(),
        TRACE.encode(),
    ],
)
def test_a_malformed_traced_message_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError, match="not a live message"):
        parse_message(message)
