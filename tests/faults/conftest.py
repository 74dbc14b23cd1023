"""A mesh of its own for the fault tests (they kill, restart, wipe and freeze its parts), with
short timeouts so that faults show and heal within seconds."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from devstack.mesh import SERVICES, Mesh, MeshPorts
from meshkit.healthcheck import health_status
from tests.conftest import TEST_ENV, report_lines
from tests.helpers import Stubs

FAULT_ENV = TEST_ENV | {
    "HOME_TIMELINE_MAX": "800",
    "RPC_DEADLINE_SECONDS": "2",
    "HANDLER_TIMEOUT_SECONDS": "3",
    "HEALTH_PROBE_SECONDS": "0.2",
    "GRACE_SECONDS": "3",
    "FANOUT_CLAIM_IDLE_MS": "1000",
    "OUTBOX_SWEEP_SECONDS": "0.3",
    # Sign-ups are not what these tests exercise.
    "ARGON2_MEMORY_KIB": "8",
    "ARGON2_TIME_COST": "1",
    "LOG_LEVEL": "WARNING",
}
_FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


@pytest.fixture(scope="package")
def fault_mesh() -> Iterator[Mesh]:
    data_dir = Path(tempfile.mkdtemp(prefix="tweetmesh-faults-"))
    data_dir.chmod(0o755)
    instance = Mesh(
        data_dir,
        ports=MeshPorts.free(),
        durable=False,
        log_to_files=True,
        env_overrides=FAULT_ENV,
        database_url=None,
        redis_url=None,
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        if os.environ.get("KEEP_TEST_DATA") is None:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def fault_stubs(fault_mesh: Mesh) -> Iterator[Stubs]:
    ports = fault_mesh.ports
    client = Stubs(*(f"127.0.0.1:{ports.of(name)}" for name in SERVICES), channel_options=_FAST_RECONNECT)
    yield client
    client.close()


@pytest.fixture
def health(fault_mesh: Mesh) -> Iterator[Callable[[str], str]]:
    """The health of a service of the fault mesh, by name."""
    channels = {
        name: grpc.insecure_channel(f"127.0.0.1:{fault_mesh.ports.of(name)}", options=_FAST_RECONNECT)
        for name in SERVICES
    }
    yield lambda name: health_status(channels[name], timeout=1.0)
    for channel in channels.values():
        channel.close()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the end-of-run summary (shown by `make test` with or without -s)."""
    return report_lines(request.config).append
