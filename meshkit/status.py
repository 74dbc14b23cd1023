"""Turns domain errors and dependency failures into gRPC statuses with google.rpc details."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
import psycopg
import psycopg_pool
import redis.exceptions
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from meshkit.errors import ERROR_DOMAIN, DomainError, Internal, InvalidArgument, Unavailable
from meshkit.interceptors import Handler, HandlerInterceptor

log = logging.getLogger(__name__)

# Failures that mean "a dependency is down or slow": the caller may retry later (UNAVAILABLE).
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    ConnectionError,
)
_RETRYABLE_PEER_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_of(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status for a domain error: code, message, ErrorInfo and BadRequest details."""
    details = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details.append(info)
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=packed)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> NoReturn:
    status = status_of(error)
    trailers: list[tuple[str, str | bytes]] = [("grpc-status-details-bin", status.SerializeToString())]
    if error.retry_after_seconds is not None:
        # Envoy passes it on as the HTTP Retry-After header of the 429 (whole seconds, rounded up).
        trailers.append(("retry-after", str(max(math.ceil(error.retry_after_seconds), 1))))
    await context.abort(error.code, error.message, trailing_metadata=tuple(trailers))
    raise AssertionError("unreachable: abort raises")


def as_domain_error(exc: BaseException, method: str) -> DomainError:
    """What to tell the caller about an exception a handler did not turn into a DomainError itself."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, DEPENDENCY_ERRORS):
        log.warning("dependency unavailable", extra={"method": method, "error": type(exc).__name__})
        return Unavailable("a dependency is unavailable; retry later", reason="DEPENDENCY_UNAVAILABLE")
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _RETRYABLE_PEER_CODES:
        log.warning("peer unavailable", extra={"method": method, "peer_code": exc.code().name})
        return Unavailable("a service of the mesh is unavailable; retry later", reason="PEER_UNAVAILABLE")
    log.exception("unhandled error", extra={"method": method}, exc_info=exc)
    return Internal("internal error", reason="INTERNAL")


class _Undecodable:
    """Stands for a request that is not a valid message (say, a string field of invalid UTF-8)."""


_UNDECODABLE = _Undecodable()
_BAD_REQUEST = InvalidArgument(
    "request: not a valid message for this method (malformed protobuf or invalid UTF-8)",
    reason="MALFORMED_REQUEST",
)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """gRPC answers a request that fails to parse with INTERNAL; it is the caller's fault, so the
    handler answers INVALID_ARGUMENT instead."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return _UNDECODABLE

    return deserialize


def _wrap_unary(behavior: Handler, method: str) -> Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if request is _UNDECODABLE:
                raise _BAD_REQUEST
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, as_domain_error(exc, method))

    return handle


def _wrap_stream(behavior: Handler, method: str) -> Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            if request is _UNDECODABLE:
                raise _BAD_REQUEST
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, as_domain_error(exc, method))

    return handle


class ErrorInterceptor(HandlerInterceptor):
    """Maps every exception leaving a handler to a status; nothing escapes as a bare UNKNOWN."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        return _wrap_unary(behavior, method)

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        return _wrap_stream(behavior, method)

    def wrap_deserializer(self, deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        return _tolerant(deserializer)


__all__ = ["DEPENDENCY_ERRORS", "ErrorInterceptor", "abort_with", "as_domain_error", "status_of"]
