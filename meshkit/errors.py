"""Domain errors: what went wrong, in terms a caller can act on, mapped to gRPC status codes; and
the failures of dependencies, which a caller may retry later."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import grpc
import psycopg
import psycopg_pool
import redis.exceptions

# The reason codes in ErrorInfo come from this domain (AIP-193).
ERROR_DOMAIN = "tweetmesh.dev"

# Error replies by which Redis says it cannot serve now (not that the command is wrong): out of
# memory with noeviction (OOM), a replica during a failover (READONLY, MASTERDOWN, UNBLOCKED: a
# blocked command of a master turned replica), loading its data (LOADING), a script running too
# long (BUSY), unable to persist (MISCONF), not enough replicas (NOREPLICAS), and the cluster's
# (CLUSTERDOWN, TRYAGAIN). Redis 7 starts the reply with the code; Redis 6 wraps the error of a
# command inside a script: "ERR Error running script ...: -OOM command not allowed ...".
OUTAGE_REPLY_CODES = (
    "OOM",
    "READONLY",
    "MASTERDOWN",
    "UNBLOCKED",
    "LOADING",
    "BUSY",
    "MISCONF",
    "NOREPLICAS",
    "CLUSTERDOWN",
    "TRYAGAIN",
)
_OUTAGE_REPLY = re.compile(rf"(?:^|\s-)(?:{'|'.join(OUTAGE_REPLY_CODES)})\s")


def is_outage_reply(reply: str) -> bool:
    """Whether a Redis error reply means the server cannot serve now (OUTAGE_REPLY_CODES)."""
    return _OUTAGE_REPLY.search(reply) is not None


class RedisOutage(redis.exceptions.ResponseError):
    """An error reply of OUTAGE_REPLY_CODES: Redis is there, and cannot serve now (the services'
    Redis clients raise it instead of a plain ResponseError: meshkit.runtime)."""


# Failures that mean "a dependency is down or slow": the caller may retry later (UNAVAILABLE).
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    RedisOutage,
    # What redis-py itself names of those replies (a client without the runtime's parser).
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    ConnectionError,
    # A dependency that answered too slowly (asyncio.timeout, the handler time limit).
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


@dataclass(eq=False)
class DomainError(Exception):
    """Base of every error a service raises on purpose. The server edge turns it into a status."""

    message: str
    reason: str = "ERROR"
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()
    retry_after_seconds: float | None = None

    code = grpc.StatusCode.UNKNOWN

    def __post_init__(self) -> None:
        super().__init__(self.message)


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    @classmethod
    def field(cls, name: str, description: str, reason: str = "INVALID_FIELD") -> InvalidArgument:
        """One bad request field: the message names it and a BadRequest violation carries it."""
        return cls(
            message=f"{name}: {description}",
            reason=reason,
            metadata={"field": name},
            violations=(FieldViolation(name, description),),
        )


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency (PostgreSQL, Redis, another service) cannot be reached right now."""

    code = grpc.StatusCode.UNAVAILABLE


def not_found(kind: str, ident: str, field_name: str) -> NotFound:
    return NotFound(
        message=f"{field_name}: {kind} {ident!r} not found",
        reason=f"{kind.upper()}_NOT_FOUND",
        metadata={"field": field_name, field_name: ident},
    )


class Internal(DomainError):
    """A bug or an unexpected failure; the message never carries internals."""

    code = grpc.StatusCode.INTERNAL
