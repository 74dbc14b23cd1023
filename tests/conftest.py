"""The test mesh: real PostgreSQL, Redis, the four services and Envoy, started once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.mesh import Mesh, MeshPorts
from tests.helpers import Stubs

# Small enough that tests cross the Redis window and page from PostgreSQL; short enough to wait for.
TEST_ENV = {
    "HOME_TIMELINE_MAX": "30",
    "STREAM_HEARTBEAT_SECONDS": "0.5",
    "FANOUT_CLAIM_IDLE_MS": "1500",
    "OUTBOX_SWEEP_SECONDS": "0.5",
    "LOG_LEVEL": "INFO",
    # Authors with 5 followers are celebrities here: the hybrid path runs through every test.
    "CELEBRITY_FOLLOWERS": "5",
    # The suite signs up, logs in and writes far more from one address than anyone would; the
    # limits themselves are tested in tests/security with low limits on dedicated services.
    "RATE_LIMIT_WRITE_PER_USER": "100000/60",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_LOGIN_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_LOGIN_PER_ACCOUNT": "100000/60",
    "RATE_LIMIT_SIGNUP_PER_ADDRESS": "100000/60",
}


@pytest.fixture(scope="session")
def mesh() -> Iterator[Mesh]:
    # Readable by the unprivileged user PostgreSQL runs as when the suite runs as root.
    data_dir = Path(tempfile.mkdtemp(prefix="tweetmesh-test-"))
    data_dir.chmod(0o755)
    instance = Mesh(
        data_dir,
        ports=MeshPorts.free(),
        durable=False,
        log_to_files=True,
        env_overrides=TEST_ENV,
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


@pytest.fixture(scope="session")
def stubs(mesh: Mesh) -> Iterator[Stubs]:
    ports = mesh.ports
    client = Stubs(
        f"127.0.0.1:{ports.users}",
        f"127.0.0.1:{ports.tweets}",
        f"127.0.0.1:{ports.fanout}",
        f"127.0.0.1:{ports.timeline}",
    )
    yield client
    client.close()
