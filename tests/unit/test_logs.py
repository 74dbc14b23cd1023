"""The JSON log line: one object, and no bearer credential in it whoever wrote the message."""

from __future__ import annotations

import json
import logging
import sys

from meshkit.logs import JsonFormatter

TOKEN = "tm_" + "A1b2-C3d4_" * 4 + "xyz"


def line(message: str, *args: object, exc_info: bool = False) -> dict[str, str]:
    record = logging.LogRecord("grpc._cython.cygrpc", logging.ERROR, __file__, 1, message, args, None)
    if exc_info:
        try:
            raise ValueError(f"could not use {message % args}")
        except ValueError:
            record.exc_info = sys.exc_info()
    entry: dict[str, str] = json.loads(JsonFormatter("tweets").format(record))
    return entry


def test_a_header_grpc_could_not_decode_is_logged_without_its_token() -> None:
    # What grpc.aio logs for an authorization header that is not UTF-8, garbage and all.
    raw = f"Bearer {TOKEN}".encode() + b"\xe0\x1c\x7f"
    entry = line("Invalid encoding on %s", raw, exc_info=True)
    assert TOKEN not in json.dumps(entry) and TOKEN[3:] not in json.dumps(entry)
    assert entry["message"] == "Invalid encoding on b'Bearer [redacted]'"
    assert entry["service"] == "tweets" and entry["level"] == "ERROR"


def test_every_bearer_credential_is_redacted_whatever_its_case() -> None:
    entry = line("authorization: bearer %s then BEARER %s", TOKEN, "x.y.z")
    assert entry["message"] == "authorization: bearer [redacted] then BEARER [redacted]"
    assert line("no credential here: %d tweets", 3)["message"] == "no credential here: 3 tweets"
