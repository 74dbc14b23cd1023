"""The test mesh: real PostgreSQL, Redis, the six services and Envoy, started once per session."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devstack.mesh import MESH_TLS_MEMBERS, Mesh, MeshPorts
from devstack.tls import mesh_certificates, self_signed
from tests.helpers import REDIS_CLUSTER, Stubs

# Small enough that tests cross the Redis window and page from PostgreSQL; short enough to wait for.
TEST_ENV = {
    "HOME_TIMELINE_MAX": "30",
    "STREAM_HEARTBEAT_SECONDS": "0.5",
    "FANOUT_CLAIM_IDLE_MS": "1500",
    "OUTBOX_SWEEP_SECONDS": "0.5",
    # A mail that failed (the SMTP server stopped by a test) is tried again within a second or two.
    "MAIL_RETRY_SECONDS": "1",
    "NOTIFICATIONS_CLAIM_IDLE_MS": "1500",
    # Suggestions fill up with the popular accounts as they are now, not a minute ago.
    "SUGGESTIONS_POPULAR_SECONDS": "0",
    "LOG_LEVEL": "INFO",
    # Authors with 5 followers are celebrities here: the hybrid path runs through every test.
    "CELEBRITY_FOLLOWERS": "5",
    # Trends' hour passes in 6 s, and a hashtag's baseline is the 3 windows before.
    "TRENDS_MINUTE_SECONDS": "0.1",
    "TRENDS_BASELINE_WINDOWS": "3",
    # The suite signs up, logs in and writes far more from one address than anyone would; the
    # limits themselves are tested in tests/security with low limits on dedicated services.
    "RATE_LIMIT_WRITE_PER_USER": "100000/60",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_LOGIN_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_LOGIN_PER_ACCOUNT": "100000/60",
    "RATE_LIMIT_SIGNUP_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_UPLOAD_PER_USER": "100000/60",
    "RATE_LIMIT_UPLOAD_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_RESET_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_RESET_PER_EMAIL": "100000/60",
    "RATE_LIMIT_MAIL_PER_ACCOUNT": "100000/60",
    "RATE_LIMIT_READ_PER_USER": "100000/60",
    "RATE_LIMIT_READ_PER_ADDRESS": "100000/60",
    "RATE_LIMIT_STREAM_OPEN_PER_USER": "100000/60",
    "RATE_LIMIT_STREAM_OPEN_PER_ADDRESS": "100000/60",
    "STREAM_MAX_PER_ACCOUNT": "100000",
    "STREAM_MAX_PER_ADDRESS": "100000",
}


# The one other origin whose pages may call the test mesh's API (tests/e2e/test_cors.py).
CORS_ORIGIN = "http://app.example.test:8000"

_REPORT = pytest.StashKey[list[str]]()


def report_lines(config: pytest.Config) -> list[str]:
    """Lines tests want in the summary at the end of the run (the fault checker's counts)."""
    return config.stash.setdefault(_REPORT, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = report_lines(config)
    if lines:
        terminalreporter.section("history checks")
        for line in lines:
            terminalreporter.write_line(line)


@contextlib.contextmanager
def test_mesh(
    env: Mapping[str, str],
    prefix: str,
    redis_url: str | None = None,
    mesh_tls: bool = False,
    replicas: int = 1,
    redis_cluster: bool = False,
) -> Iterator[Mesh]:
    """A whole mesh on free ports with private PostgreSQL and Redis (or the Redis at `redis_url`;
    with `redis_cluster`, a local Redis Cluster of three masters with a replica each),
    `replicas` processes of each service, logs in its data dir, Envoy's TLS listener with a
    self-signed certificate (<data dir>/tls/tls.crt), and CORS_ORIGIN allowed to call the API
    from its pages; with `mesh_tls`, mutual TLS between Envoy and the services (a CA and
    certificates in <data dir>/mesh-tls)."""
    # Readable by the unprivileged user PostgreSQL runs as when the suite runs as root.
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    data_dir.chmod(0o755)
    instance = Mesh(
        data_dir,
        ports=MeshPorts.free(replicas),
        replicas=replicas,
        durable=False,
        log_to_files=True,
        env_overrides=env,
        database_url=None,
        redis_url=redis_url,
        smtp_url=None,
        # Like the services' limits in TEST_ENV: the suite calls from one address far more than
        # any client would. The edge's limits are tested on Envoys of their own (tests/edge.py).
        enforce_edge_limits=False,
        tls=self_signed(data_dir / "tls"),
        cors_origins=[CORS_ORIGIN],
        mesh_tls=mesh_certificates(data_dir / "mesh-tls", MESH_TLS_MEMBERS) if mesh_tls else None,
        redis_cluster=redis_cluster,
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        if os.environ.get("KEEP_TEST_DATA") is None:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def one_redis_mesh() -> Iterator[Mesh]:
    with test_mesh(TEST_ENV, "tweetmesh-test-") as instance:
        yield instance


@pytest.fixture(scope="package")
def cluster_mesh() -> Iterator[Mesh]:
    """The same mesh on a local Redis Cluster (three masters, a replica each). Per package: it
    stops when the package that asked for it is done, so the suites after it (the edge's
    thousand streams, the fault timings) do not share the machine with a second mesh."""
    with test_mesh(TEST_ENV, "tweetmesh-cluster-", redis_cluster=True) as instance:
        yield instance


@pytest.fixture(scope="package")
def mesh(request: pytest.FixtureRequest) -> Mesh:
    """The test mesh: on one Redis, or on a Redis Cluster where a test is parametrized so (ON_BOTH_REDIS)."""
    kind = getattr(request, "param", None)
    found: Mesh = request.getfixturevalue("cluster_mesh" if kind == REDIS_CLUSTER else "one_redis_mesh")
    return found


@contextlib.contextmanager
def mesh_stubs(mesh: Mesh, channel_options: list[tuple[str, Any]] | None = None) -> Iterator[Stubs]:
    def address(name: str) -> str:
        return f"127.0.0.1:{mesh.ports.of(name)}"

    client = Stubs(
        users_addr=address("users"),
        tweets_addr=address("tweets"),
        fanout_addr=address("fanout"),
        timeline_addr=address("timeline"),
        media_addr=address("media"),
        notifications_addr=address("notifications"),
        channel_options=channel_options or [],
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="package")
def stubs(mesh: Mesh) -> Iterator[Stubs]:
    with mesh_stubs(mesh) as client:
        yield client
