"""JSON logs to stdout, one object a line, the same for every service, each with the request id of
the call being served (see meshkit.telemetry)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import psycopg

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
REQUEST_ID_HEADER = "x-request-id"
# The id of the request this task is serving: Envoy's x-request-id, a caller's, or one made here.
# Every log line carries it and every call to a peer sends it on (meshkit.runtime).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


# A bearer credential anywhere in a line: gRPC itself logs a header it could not decode, verbatim.
_BEARER = re.compile(r"(bearer\s+)[^\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every bearer credential in it replaced."""
    return _BEARER.sub(r"\1[redacted]", text)


def describe(error: BaseException) -> str:
    """What a log may say of an exception: its type and message, except that a PostgreSQL error
    is told by its SQLSTATE, primary message and constraint only. Its DETAIL (and hints, context)
    can quote the row it refused: "Failing row contains (..., $argon2id$...)" is a password hash."""
    kind = type(error).__qualname__
    if isinstance(error, psycopg.Error):
        diag = error.diag
        constraint = f", constraint {diag.constraint_name}" if diag.constraint_name else ""
        primary = diag.message_primary or "PostgreSQL error"
        return redact(f"{kind}: {primary} (SQLSTATE {error.sqlstate}{constraint})")
    return redact(f"{kind}: {error}" if str(error) else kind)


def format_exception(error: BaseException) -> str:
    """A traceback of `error` and the exceptions it came from, each told by `describe`."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for link in reversed(chain):
        if parts:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(link.__traceback__))
        parts.append(describe(link) + "\n")
    return "".join(parts)


def new_request_id() -> str:
    return secrets.token_hex(8)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if (current := request_id.get()) is not None:
            entry["request_id"] = current
        entry.update(
            {
                k: describe(v) if isinstance(v, BaseException) else v
                for k, v in record.__dict__.items()
                if k not in _RESERVED
            }
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None],
    ) -> str:
        _, error, _ = ei
        return "" if error is None else format_exception(error)


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
