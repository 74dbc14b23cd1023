"""Watches every call a service serves: its request id (for the logs and for calls to peers), its
Prometheus RPC metrics, and one log line when it ends.

The interceptor goes outermost, around meshkit.status.ErrorInterceptor, so every failure it sees
has already become a gRPC status with a code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from meshkit.interceptors import Handler, HandlerInterceptor
from meshkit.logs import REQUEST_ID_HEADER, new_request_id, request_id
from meshkit.metrics import OPEN_STREAMS, RPC_HANDLED, RPC_SECONDS

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
# Probes and tooling call these all the time: counted in the metrics, logged only at DEBUG.
_QUIET_SERVICES = ("grpc.health.v1.", "grpc.reflection.")
_MAX_REQUEST_ID = 128


def _incoming_request_id(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= _MAX_REQUEST_ID:
            return value
    return new_request_id()


def _code_name(context: Context, default: grpc.StatusCode) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # grpc.aio keeps the integer value when a handler sets it itself
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default.name)
    return default.name


class _Call:
    """One call being served: starts the clock and the request id, records the outcome at the end."""

    def __init__(self, method: str, kind: str, context: Context) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self._labels = (service, name, kind)
        self._method = method
        self._context = context
        self._started = time.perf_counter()
        self._token = request_id.set(_incoming_request_id(context))

    def finish(self, default: grpc.StatusCode) -> None:
        code = _code_name(self._context, default)
        seconds = time.perf_counter() - self._started
        RPC_HANDLED.labels(*self._labels, code).inc()
        RPC_SECONDS.labels(*self._labels, code).observe(seconds)
        level = logging.DEBUG if self._labels[0].startswith(_QUIET_SERVICES) else logging.INFO
        log.log(
            level,
            "rpc",
            extra={"method": self._method, "grpc_code": code, "duration_ms": round(seconds * 1000, 2)},
        )
        # A stream closed from another context (cancelled) has nothing left to reset.
        with contextlib.suppress(ValueError):
            request_id.reset(self._token)


def _wrap_unary(behavior: Handler, method: str, kind: str = "unary") -> Handler:
    """A call answered once: `kind` unary, or client_stream (the request is a stream)."""

    async def handle(request: Any, context: Context) -> Any:
        call = _Call(method, kind, context)
        outcome = grpc.StatusCode.UNKNOWN
        try:
            response = await behavior(request, context)
            outcome = grpc.StatusCode.OK
            return response
        except asyncio.CancelledError:
            outcome = grpc.StatusCode.CANCELLED
            raise
        finally:
            call.finish(outcome)

    return handle


def _wrap_stream(behavior: Handler, method: str) -> Handler:
    async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
        call = _Call(method, "server_stream", context)
        open_streams = OPEN_STREAMS.labels(*method.lstrip("/").rsplit("/", 1))
        open_streams.inc()
        outcome = grpc.StatusCode.UNKNOWN
        try:
            async for response in behavior(request, context):
                yield response
            outcome = grpc.StatusCode.OK
        except (asyncio.CancelledError, GeneratorExit):
            outcome = grpc.StatusCode.CANCELLED
            raise
        finally:
            open_streams.dec()
            call.finish(outcome)

    return handle


class TelemetryInterceptor(HandlerInterceptor):
    """Request id, metrics and a log line for every call."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        return _wrap_unary(behavior, method)

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        return _wrap_stream(behavior, method)

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        return _wrap_unary(behavior, method, "client_stream")


__all__ = ["TelemetryInterceptor"]
