"""Envoy's admin API (it can stop Envoy, change its logging, dump its config with secrets) listens
on localhost only; what monitoring needs of it, GET /stats/prometheus and GET /ready, is served on
a listener of its own, and nothing else of the admin API is reachable there."""

from __future__ import annotations

import pytest

from devstack.mesh import Mesh
from tests.helpers import http_call


def test_the_metrics_listener_serves_prometheus_stats_and_readiness(mesh: Mesh) -> None:
    stats = http_call(mesh.ports.envoy_metrics, "GET", "/stats/prometheus")
    assert stats.status == 200
    assert b"envoy_cluster_upstream_rq_total" in stats.body
    ready = http_call(mesh.ports.envoy_metrics, "GET", "/ready")
    assert (ready.status, ready.body.strip()) == (200, b"LIVE")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/quitquitquit"),
        ("POST", "/healthcheck/fail"),
        ("POST", "/logging?level=trace"),
        ("POST", "/runtime_modify?x=1"),
        ("POST", "/reset_counters"),
        ("POST", "/drain_listeners"),
        ("GET", "/config_dump"),
        ("GET", "/clusters"),
        ("GET", "/stats"),
        ("GET", "/server_info"),
        ("POST", "/stats/prometheus"),
        ("GET", "/stats/prometheus/../config_dump"),
        ("GET", "/"),
    ],
)
def test_nothing_else_of_the_admin_api_is_reachable_there(mesh: Mesh, method: str, path: str) -> None:
    assert http_call(mesh.ports.envoy_metrics, method, path).status == 404
    # Envoy is still up and ready (no quit, no failed health check went through).
    assert http_call(mesh.ports.envoy_metrics, "GET", "/ready").status == 200
    assert http_call(mesh.ports.envoy, "GET", "/v1/handles/nobody_here").status == 404
