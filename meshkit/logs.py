"""JSON logs to stdout, one object a line, the same for every service, each with the request id of
the call being served (see meshkit.telemetry)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

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
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
