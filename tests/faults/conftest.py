"""A mesh of its own for the fault tests (they kill, restart, wipe and freeze its parts), with
short timeouts so that faults show and heal within seconds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from devstack.errors import DevstackError
from devstack.mesh import Mesh
from meshkit.healthcheck import health_status
from tests.conftest import TEST_ENV, mesh_stubs, report_lines, test_mesh
from tests.helpers import Stubs

FAULT_ENV = TEST_ENV | {
    "HOME_TIMELINE_MAX": "800",
    "RPC_DEADLINE_SECONDS": "2",
    "HANDLER_TIMEOUT_SECONDS": "3",
    "HEALTH_PROBE_SECONDS": "0.2",
    "GRACE_SECONDS": "5",  # above HANDLER_TIMEOUT_SECONDS: SIGTERM never cuts a call short
    "FANOUT_CLAIM_IDLE_MS": "1000",
    "OUTBOX_SWEEP_SECONDS": "0.3",
    # Sign-ups are not what these tests exercise.
    "ARGON2_MEMORY_KIB": "8",
    "ARGON2_TIME_COST": "1",
    "LOG_LEVEL": "WARNING",
}
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


@pytest.fixture(scope="package")
def fault_mesh() -> Iterator[Mesh]:
    with test_mesh(FAULT_ENV, "tweetmesh-faults-") as instance:
        yield instance


@pytest.fixture(scope="package")
def fault_stubs(fault_mesh: Mesh) -> Iterator[Stubs]:
    with mesh_stubs(fault_mesh, FAST_RECONNECT) as client:
        yield client


@contextlib.contextmanager
def service_health(mesh: Mesh) -> Iterator[Callable[[str], str]]:
    """The health of a service of `mesh`, by name: SERVING when each of its running replicas is,
    else what the first that is not says."""
    channels = {name: mesh.channel(name, FAST_RECONNECT) for name in mesh.processes()}

    def running(name: str) -> bool:
        try:
            return bool(mesh.pid(name))
        except DevstackError:
            return False  # killed, and not started again

    def health(service: str) -> str:
        replicas = [name for name in mesh.replica_names(service) if running(name)]
        statuses = [health_status(channels[name], timeout=1.0) for name in replicas]
        return next((s for s in statuses if s != "SERVING"), "SERVING" if statuses else "NOT_RUNNING")

    try:
        yield health
    finally:
        for channel in channels.values():
            channel.close()


@pytest.fixture
def health(fault_mesh: Mesh) -> Iterator[Callable[[str], str]]:
    """The health of a service of the fault mesh, by name."""
    with service_health(fault_mesh) as check:
        yield check


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the end-of-run summary (shown by `make test` with or without -s)."""
    return report_lines(request.config).append
