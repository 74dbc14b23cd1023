"""Failed calls as exceptions, one class per gRPC status, carrying the google.rpc details."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

# The trailer with the serialized google.rpc.Status of a failed call.
DETAILS_TRAILER = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class TweetmeshError(Exception):
    """A call the mesh refused or could not serve.

    `code` is the gRPC status; `reason`, `domain` and `metadata` come from its ErrorInfo (e.g.
    reason "FEED_LOST" with metadata {"since_tweet_id": ...}), `field_violations` from BadRequest,
    `retry_delay` (seconds) from RetryInfo; `details` holds every detail message as sent.
    """

    def __init__(self, code: grpc.StatusCode, message: str, details: list[Message]) -> None:
        super().__init__(f"{code.name.lower().replace('_', ' ')}: {message}")
        self.code = code
        self.message = message
        self.details = details
        info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
        self.reason = info.reason if info else ""
        self.domain = info.domain if info else ""
        self.metadata: dict[str, str] = dict(info.metadata) if info else {}
        self.field_violations = [
            FieldViolation(v.field, v.description)
            for d in details
            if isinstance(d, error_details_pb2.BadRequest)
            for v in d.field_violations
        ]
        retry = next((d for d in details if isinstance(d, error_details_pb2.RetryInfo)), None)
        self.retry_delay: float | None = retry.retry_delay.ToTimedelta().total_seconds() if retry else None


class InvalidArgument(TweetmeshError):
    """Bad input: `field_violations` names the fields."""


class NotFound(TweetmeshError):
    pass


class AlreadyExists(TweetmeshError):
    pass


class PermissionDenied(TweetmeshError):
    """Acting on someone else's tweet or profile."""


class Unauthenticated(TweetmeshError):
    """No token, or one that expired or was revoked: log in again."""


class ResourceExhausted(TweetmeshError):
    """Rate limited: retry after `retry_delay` seconds."""


class FailedPrecondition(TweetmeshError):
    pass


class Unavailable(TweetmeshError):
    """A service or one of its dependencies is down or slow: retry (writes with their request_id)."""


class Unimplemented(TweetmeshError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[TweetmeshError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}

_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.PreconditionFailure,
)


def _details(error: grpc.aio.AioRpcError) -> list[Message]:
    trailers: Any = error.trailing_metadata() or ()
    found: list[Message] = []
    for key, value in trailers:
        if key != DETAILS_TRAILER:
            continue
        for packed in status_pb2.Status.FromString(value).details:
            kind = next((k for k in _DETAIL_TYPES if packed.Is(k.DESCRIPTOR)), None)
            if kind is not None:
                unpacked = kind()
                packed.Unpack(unpacked)
                found.append(unpacked)
    return found


def error_from(error: grpc.aio.AioRpcError) -> TweetmeshError:
    """The TweetmeshError (of the class for its code) that a failed call stands for."""
    kind = _BY_CODE.get(error.code(), TweetmeshError)
    return kind(error.code(), error.details() or "", _details(error))
