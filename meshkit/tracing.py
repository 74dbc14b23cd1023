"""Distributed tracing with OpenTelemetry: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

On, a service exports its spans over OTLP/gRPC to that endpoint, named after itself
(`service.name` = tweetmesh-<service>), and makes a span of:
- every call it serves (TracingInterceptor), continuing the W3C `traceparent` in the call's
  metadata (Envoy starts it, or passes on the client's);
- every call it makes to a peer (TracingClientInterceptor), passing its own context on;
- every PostgreSQL statement and Redis command made within a trace (the maintained psycopg and
  redis instrumentations; a command outside any trace, such as a health probe or a consumer's
  poll, is not recorded: `WithinTraces`);
- every event handled from a stream (`consuming`; `consuming_batch` for a batch handled by one
  call: a span per event), a child of the context the event carries (the outbox stores the
  context of the change that wrote it), and every live tweet a stream sends (`delivered`), a
  child of the fan-out that published it.

Off, nothing here makes a span: the interceptors are not installed, the instrumentations not
applied, and `traceparent()` / `consuming()` / `delivered()` answer after one test of a module
global. Only W3C trace context is propagated (no baggage).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from meshkit.interceptors import Handler, HandlerInterceptor

log = logging.getLogger(__name__)
ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Probes and tooling call these all the time: never traced (as meshkit.telemetry keeps them quiet).
_UNTRACED_SERVICES = ("/grpc.health.v1.", "/grpc.reflection.")
_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    tracer: trace.Tracer | None = None  # set by configure: tracing is on


_STATE = _State()


class WithinTraces(Sampler):
    """Records a span that starts a trace only when it is a call served or an event consumed: a
    PostgreSQL or Redis command outside any trace (a health probe, a consumer's poll, the outbox
    sweeper's scan) would be a trace of its own every second. Spans within a trace follow their
    parent (ParentBased)."""

    def should_sample(
        self,
        parent_context: TraceContext | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind in (SpanKind.SERVER, SpanKind.CONSUMER):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "WithinTraces"


def enabled() -> bool:
    return _STATE.tracer is not None


def configure(service: str, env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Turns tracing on for `service` when OTEL_EXPORTER_OTLP_ENDPOINT is set in `env` (os.environ);
    returns the provider (shut it down on stop: it sends what is left), or None when off. The
    exporter reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers, certificate,
    insecure) and the batch processor OTEL_BSP_* (how often it sends)."""
    env = os.environ if env is None else env
    if not env.get(ENDPOINT_VARIABLE):
        return None
    # Imported only when on: the exporter pulls in its own gRPC stubs.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"tweetmesh-{service}"}),
        sampler=ParentBased(root=WithinTraces()),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _STATE.tracer = provider.get_tracer("tweetmesh")
    log.info("tracing on", extra={"endpoint": env[ENDPOINT_VARIABLE]})
    return provider


def traceparent() -> str | None:
    """The current span's W3C traceparent (to store with an event), or None: off or no trace."""
    if _STATE.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def _parent(traceparent: str | bytes | None) -> TraceContext | None:
    if not traceparent:
        return None
    text = traceparent.decode("ascii", "replace") if isinstance(traceparent, bytes) else traceparent
    return _PROPAGATOR.extract({TRACEPARENT: text})


@contextlib.contextmanager
def consuming(stream: str, traceparent: str | bytes | None) -> Iterator[None]:
    """A span around handling one event of `stream`, a child of the context it was written in."""
    tracer = _STATE.tracer
    if tracer is None:
        yield
        return
    attributes = {"messaging.system": "redis", "messaging.destination.name": stream}
    with tracer.start_as_current_span(
        f"{stream} process", context=_parent(traceparent), kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


class BatchSpans:
    """The spans of a batch of events handled by one call (consuming_batch), one per event."""

    def __init__(self, spans: Sequence[trace.Span], size: int) -> None:
        self._spans = spans
        # Each event's span context as a W3C traceparent (None when off), to pass on with what
        # the event causes.
        self.traceparents: list[str | None] = [_traceparent_of(s) for s in spans] if spans else [None] * size

    def failed(self, index: int, error: BaseException) -> None:
        """The event at `index` failed alone: its span says so."""
        if self._spans:
            self._spans[index].record_exception(error)
            self._spans[index].set_status(Status(StatusCode.ERROR, type(error).__name__))


def _traceparent_of(span: trace.Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def consuming_batch(stream: str, traceparents: Sequence[str | bytes | None]) -> Iterator[BatchSpans]:
    """A span around handling each event of a batch of `stream` handled at once, a child of the
    context that event was written in, all lasting the whole batch. The first is current
    meanwhile: the batch's shared work (its Redis commands, its calls) is recorded within it."""
    tracer = _STATE.tracer
    if tracer is None or not traceparents:
        yield BatchSpans([], len(traceparents))
        return
    attributes: Attributes = {
        "messaging.system": "redis",
        "messaging.destination.name": stream,
        "messaging.batch.message_count": len(traceparents),
    }
    name, kind = f"{stream} process", SpanKind.CONSUMER
    spans = [
        tracer.start_span(name, context=_parent(tp), kind=kind, attributes=attributes) for tp in traceparents
    ]
    try:
        with trace.use_span(spans[0]):
            yield BatchSpans(spans, len(spans))
    finally:
        for one in spans:
            one.end()


def delivered(name: str, traceparent: str | None, attributes: Mapping[str, Any]) -> None:
    """Records a moment (a live tweet sent to a stream) as a span, a child of `traceparent`."""
    tracer = _STATE.tracer
    if tracer is None or not traceparent:
        return
    parent = _parent(traceparent)
    tracer.start_span(name, context=parent, kind=SpanKind.PRODUCER, attributes=attributes).end()


@contextlib.contextmanager
def span(name: str) -> Iterator[None]:
    """An internal span within the current trace (none outside one, or when off)."""
    tracer = _STATE.tracer
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(name):
        yield


# ----- gRPC: the calls served and made


def _incoming(context: Any) -> TraceContext | None:
    carrier = {
        key: value
        for key, value in context.invocation_metadata() or ()
        if key in (TRACEPARENT, TRACESTATE) and isinstance(value, str)
    }
    return _PROPAGATOR.extract(carrier) if carrier else None


def _code(context: Any) -> grpc.StatusCode | None:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps the integer value when a handler sets it itself
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return None


def _server_span(tracer: trace.Tracer, method: str, context: Any) -> trace.Span:
    service, _, name = method.lstrip("/").rpartition("/")
    return tracer.start_span(
        method.lstrip("/"),
        context=_incoming(context),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )


def _finish(span: trace.Span, context: Any, error: BaseException | None) -> None:
    code = _code(context)
    if code is None:
        code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    # Codes that say the server failed (semantic conventions for gRPC servers); a refusal of the
    # request (INVALID_ARGUMENT, NOT_FOUND...) is the caller's and leaves the span unset.
    if code in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    ):
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


class TracingInterceptor(HandlerInterceptor):
    """A SERVER span around each call served, current while its handler runs (so the statements,
    commands and peer calls it makes are its children); its status from the call's gRPC code."""

    def __init__(self, tracer: trace.Tracer) -> None:
        super().__init__()
        self._tracer = tracer

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        if method.startswith(_UNTRACED_SERVICES):
            return behavior
        tracer = self._tracer

        async def handle(request: Any, context: Any) -> Any:
            span = _server_span(tracer, method, context)
            token = otel_context.attach(trace.set_span_in_context(span))
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                with contextlib.suppress(ValueError):  # a cancelled call unwinds elsewhere
                    otel_context.detach(token)
                _finish(span, context, error)

        return handle

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        return self.wrap_unary(behavior, method)

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        if method.startswith(_UNTRACED_SERVICES):
            return behavior
        tracer = self._tracer

        async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
            span = _server_span(tracer, method, context)
            token = otel_context.attach(trace.set_span_in_context(span))
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                with contextlib.suppress(ValueError):
                    otel_context.detach(token)
                _finish(span, context, error)

        return handle


def _with_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata.add(key, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class TracingClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """A CLIENT span around each unary call to a peer, whose context the call carries (traceparent
    in its metadata); a streaming call carries the current context."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        service, _, name = method.lstrip("/").rpartition("/")
        with self._tracer.start_as_current_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        ) as span:
            call = await continuation(_with_context(details), request)
            try:
                await call
            except grpc.aio.AioRpcError as error:  # the caller gets it from the call
                span.set_attribute("rpc.grpc.status_code", error.code().value[0])
                span.set_status(Status(StatusCode.ERROR, error.code().name))
            return call

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_context(details), request)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The server interceptor to install when tracing is on; none when off."""
    return [] if _STATE.tracer is None else [TracingInterceptor(_STATE.tracer)]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The channel interceptor to install when tracing is on; none when off."""
    return [] if _STATE.tracer is None else [TracingClientInterceptor(_STATE.tracer)]
