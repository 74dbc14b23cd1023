"""moto's S3-compatible server (its server mode: the S3 protocol over HTTP) on a free local port,
for the tests of the S3 blob store and of media_svc on object storage."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from devstack.mesh import free_port
from devstack.process import ManagedProcess

# What botocore reads; moto takes any.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def moto_server(log: Path, port: int | None = None) -> Iterator[tuple[str, ManagedProcess]]:
    """The server's endpoint (http://127.0.0.1:PORT) once it takes connections, and its process
    (a test may stop it early); stopped on leaving."""
    port = port or free_port()
    server = ManagedProcess(
        "moto_server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log_path=log
    )
    try:
        server.wait_until(lambda: accepts_connections(port), timeout=60, what="accepting connections")
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()
