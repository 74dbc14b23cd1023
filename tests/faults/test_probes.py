"""Liveness is not readiness: with PostgreSQL stopped, the services that need it report NOT_SERVING
overall (readiness: take them out of rotation) while their `liveness` health stays SERVING (a
Kubernetes liveness probe must not restart a pod for a dependency's outage), and readiness comes
back by itself once PostgreSQL does."""

from __future__ import annotations

import time

import grpc

from devstack.mesh import SERVICES, Mesh
from meshkit.healthcheck import LIVENESS, health_status
from tests.helpers import eventually


def test_a_postgresql_outage_fails_readiness_and_never_liveness(fault_mesh: Mesh) -> None:
    channels = {name: grpc.insecure_channel(f"127.0.0.1:{fault_mesh.ports.of(name)}") for name in SERVICES}

    def readiness(name: str) -> str:
        return health_status(channels[name], timeout=2.0)

    def liveness(name: str) -> str:
        return health_status(channels[name], timeout=2.0, service=LIVENESS)

    needs_postgres = ("users", "tweets")
    try:
        assert {name: (readiness(name), liveness(name)) for name in SERVICES} == dict.fromkeys(
            SERVICES, ("SERVING", "SERVING")
        )
        fault_mesh.stop_dependency("postgres")
        try:
            eventually(lambda: all(readiness(n) == "NOT_SERVING" for n in needs_postgres), timeout=15)
            # Asked over ten dependency-probe rounds (HEALTH_PROBE_SECONDS), not once: liveness never fails.
            for _ in range(10):
                assert {name: liveness(name) for name in SERVICES} == dict.fromkeys(SERVICES, "SERVING")
                time.sleep(0.2)
            assert readiness("fanout") == readiness("timeline") == "SERVING"  # they need no PostgreSQL
        finally:
            fault_mesh.start_dependency("postgres")
        eventually(lambda: all(readiness(n) == "SERVING" for n in needs_postgres), timeout=30)
    finally:
        for channel in channels.values():
            channel.close()
