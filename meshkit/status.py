"""Turns domain errors and dependency failures into gRPC statuses with google.rpc details."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from meshkit.errors import (
    DEPENDENCY_ERRORS,
    ERROR_DOMAIN,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from meshkit.interceptors import Handler, HandlerInterceptor
from meshkit.rpc_details import DETAILS_TRAILER, error_details

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE_PEER_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    # A peer that stops cancels the calls still running when its grace period ends (RST_STREAM).
    grpc.StatusCode.CANCELLED,
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
    trailers: list[tuple[str, str | bytes]] = [(DETAILS_TRAILER, status.SerializeToString())]
    if error.retry_after_seconds is not None:
        # Envoy passes it on as the HTTP Retry-After header of the 429 (whole seconds, rounded up).
        trailers.append(("retry-after", str(max(math.ceil(error.retry_after_seconds), 1))))
    await context.abort(error.code, error.message, trailing_metadata=tuple(trailers))
    raise AssertionError("unreachable: abort raises")


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` is a dependency's or a peer's failure to answer (retry later), not a fault of
    the request or of this code."""
    if isinstance(exc, DEPENDENCY_ERRORS):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _RETRYABLE_PEER_CODES


def as_domain_error(exc: BaseException, method: str) -> DomainError:
    """What to tell the caller about an exception a handler did not turn into a DomainError itself."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, DEPENDENCY_ERRORS):
        log.warning("dependency unavailable", extra={"method": method, "error": type(exc).__name__})
        return Unavailable("a dependency is unavailable; retry later", reason="DEPENDENCY_UNAVAILABLE")
    if isinstance(exc, grpc.aio.AioRpcError) and is_outage(exc):
        log.warning("peer unavailable", extra={"method": method, "peer_code": exc.code().name})
        return Unavailable("a service of the mesh is unavailable; retry later", reason="PEER_UNAVAILABLE")
    log.exception("unhandled error", extra={"method": method}, exc_info=exc)
    return Internal("internal error", reason="INTERNAL")


# A peer's refusals that are the caller's to hear (its request was wrong), by code.
_RELAYED: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
}


def relayed(error: grpc.aio.AioRpcError) -> DomainError | None:
    """A peer's refusal of what this caller's request asked for (a media that is not the caller's,
    say), as the same error of this service, with its message, reason and field violations; None
    for any other failure (UNAVAILABLE and the like stay the caller's to map)."""
    kind = _RELAYED.get(error.code())
    if kind is None:
        return None
    infos = error_details(error, error_details_pb2.ErrorInfo)
    violations = tuple(
        FieldViolation(v.field, v.description)
        for bad in error_details(error, error_details_pb2.BadRequest)
        for v in bad.field_violations
    )
    return kind(
        message=error.details() or error.code().name.lower(),
        reason=infos[0].reason if infos else "ERROR",
        metadata=dict(infos[0].metadata) if infos else {},
        violations=violations,
    )


_unwinding: set[asyncio.Future[Any]] = set()


def _forget(task: asyncio.Future[Any]) -> None:
    _unwinding.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: it was logged where it mattered, or no one is waiting for it


async def within(seconds: float, work: Awaitable[T]) -> T:
    """`work`'s result if it comes within `seconds`; TimeoutError at once otherwise.

    Unlike asyncio.timeout, this does not wait for the cancelled work to unwind: psycopg, for one,
    cancels a stuck query by asking the server, which a frozen server never answers (up to 10 s).
    The caller gets its answer now; the work finishes cancelling in the background.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if task in done:
        return task.result()
    _abandon(task)
    raise TimeoutError(f"no answer within {seconds:g}s")


def _abandon(task: asyncio.Future[Any]) -> None:
    """Cancels `task` and lets it unwind in the background. It may still run on a while, or even
    finish: redis-py completes a command it was cancelled in."""
    task.cancel()
    _unwinding.add(task)  # a reference, so the task is not collected while it unwinds
    task.add_done_callback(_forget)


def _time_limit(context: grpc.aio.ServicerContext[Any, Any], limit: float) -> float:
    """How long a unary handler may run: never past the caller's deadline, and never past `limit`
    (callers through Envoy send no deadline; a hung dependency must not hang them)."""
    remaining = context.time_remaining()
    return limit if remaining is None else min(limit, max(remaining, 0.0))


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


def _wrap_unary(behavior: Handler, method: str, limit: float) -> Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if request is _UNDECODABLE:
                raise _BAD_REQUEST
            return await within(_time_limit(context, limit), behavior(request, context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, as_domain_error(exc, method))

    return handle


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client's stream of requests, refused (INVALID_ARGUMENT) at the first undecodable one."""
    async for request in requests:
        if request is _UNDECODABLE:
            raise _BAD_REQUEST
        yield request


def _wrap_client_stream(behavior: Handler, method: str, limit: float) -> Handler:
    async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await within(_time_limit(context, limit), behavior(_decoded(requests), context))
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
    """Maps every exception leaving a handler to a status; nothing escapes as a bare UNKNOWN.
    Handlers that answer once (unary, client-streaming) also get a time limit
    (`unary_limit_seconds`, or the caller's deadline if sooner)."""

    def __init__(self, unary_limit_seconds: float) -> None:
        super().__init__()
        self._limit = unary_limit_seconds

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        return _wrap_unary(behavior, method, self._limit)

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        return _wrap_stream(behavior, method)

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        return _wrap_client_stream(behavior, method, self._limit)

    def wrap_deserializer(self, deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        return _tolerant(deserializer)


__all__ = ["ErrorInterceptor", "abort_with", "as_domain_error", "relayed", "status_of", "within"]
