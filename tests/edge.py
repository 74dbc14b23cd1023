"""A second Envoy, rendered from the project's template, in front of a running test mesh: how the
edge tests reach a limit in a handful of requests without touching the mesh's own Envoy."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from devstack.envoy import DESCRIPTOR, TEMPLATE, render_envoy_config, start_envoy
from devstack.mesh import PUBLIC_SERVICES, Mesh, MeshPorts

Config = dict[str, Any]


def http_filter(config: Config, name: str) -> dict[str, Any]:
    """The typed_config of the ingress listener's HTTP filter called `name`."""
    (listener,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "ingress"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (found,) = [f["typed_config"] for f in manager["http_filters"] if f["name"] == name]
    assert isinstance(found, dict)
    return found


def rate_limits(config: Config) -> dict[str, Any]:
    return http_filter(config, "envoy.filters.http.local_ratelimit")


def set_bucket(config: Config, kind: str | None, tokens: int, refill_seconds: int = 3600) -> None:
    """Gives the per-client bucket of `kind` (read, write, stream, any), or with None the whole
    proxy's, `tokens` tokens, refilled only after `refill_seconds` (so a test sees a fixed budget)."""
    bucket = {"max_tokens": tokens, "tokens_per_fill": tokens, "fill_interval": f"{refill_seconds}s"}
    limiter = rate_limits(config)
    if kind is None:
        limiter["token_bucket"] = bucket
        return
    (descriptor,) = [d for d in limiter["descriptors"] if {"key": "kind", "value": kind} in d["entries"]]
    descriptor["token_bucket"] = bucket


@dataclass(frozen=True)
class Edge:
    port: int
    admin_port: int

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges by name."""
        url = f"http://127.0.0.1:{self.admin_port}/stats?format=json"
        with urllib.request.urlopen(url, timeout=10) as response:
            stats = json.load(response)["stats"]
        return {s["name"]: int(s["value"]) for s in stats if "value" in s}

    def memory_allocated(self) -> int:
        """Bytes Envoy's heap holds now."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/memory", timeout=10) as response:
            return int(json.load(response)["allocated"])


@contextmanager
def edge_envoy(
    mesh: Mesh, *, xff_trusted_hops: int = 0, edit: Callable[[Config], None] | None = None
) -> Iterator[Edge]:
    """An Envoy from envoy/envoy.yaml in front of `mesh`'s services, its config changed by `edit`."""
    ports = MeshPorts.free()
    config = yaml.safe_load(
        render_envoy_config(
            TEMPLATE,
            listen_port=ports.envoy,
            admin_port=ports.envoy_admin,
            metrics_port=ports.envoy_metrics,
            upstreams={name: [("127.0.0.1", mesh.ports.of(name))] for name in PUBLIC_SERVICES},
            descriptor=DESCRIPTOR,
            xff_trusted_hops=xff_trusted_hops,
        )
    )
    if edit is not None:
        edit(config)
    server = start_envoy(
        yaml.safe_dump(config),
        mesh.data_dir / f"envoy-{ports.envoy}" / "envoy.yaml",
        listen_port=ports.envoy,
        admin_port=ports.envoy_admin,
        log_path=mesh.data_dir / "logs" / f"envoy-{ports.envoy}.log",
    )
    try:
        yield Edge(ports.envoy, ports.envoy_admin)
    finally:
        server.process.stop()
