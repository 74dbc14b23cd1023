"""Envoy for development and tests: renders envoy/envoy.yaml with our ports and paths, then runs it."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from devstack import binaries
from devstack.errors import DevstackError
from devstack.process import ManagedProcess, Server

LISTENER = "ingress"
LOOPBACK = "127.0.0.1"
_ENDPOINT = ("load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")


class _PlainDumper(yaml.SafeDumper):
    """Writes shared nodes (the template's YAML anchors) out in full: easier to read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _at(node: Any, path: tuple[str | int, ...], template: Path) -> Any:
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            shown = ".".join(map(str, path))
            raise DevstackError(f"{template} does not have the expected shape: no {shown}") from None
    return node


def _set_address(socket_address: Any, port: int) -> None:
    socket_address["address"] = LOOPBACK
    socket_address["port_value"] = port


def _set_descriptors(node: Any, descriptor: str) -> int:
    """Sets every `proto_descriptor` under `node`; returns how many it found."""
    found = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "proto_descriptor":
                node[key] = descriptor
                found += 1
            else:
                found += _set_descriptors(value, descriptor)
    elif isinstance(node, list):
        found += sum(_set_descriptors(item, descriptor) for item in node)
    return found


def render_envoy_config(
    template: Path,
    *,
    listen_port: int,
    admin_port: int,
    upstreams: Mapping[str, tuple[str, int]],
    descriptor: Path,
) -> str:
    """The template with our admin and listener ports, cluster endpoints and descriptor path, as YAML.

    `upstreams` maps each cluster name to (host, port) and must name exactly the template's clusters,
    so a cluster added to the template cannot silently keep pointing at a default port.
    """
    config = yaml.safe_load(template.read_text())
    _set_address(_at(config, ("admin", "address", "socket_address"), template), admin_port)

    listeners = _at(config, ("static_resources", "listeners"), template)
    ingress = [listener for listener in listeners if listener.get("name") == LISTENER]
    if len(ingress) != 1:
        raise DevstackError(f"{template} must have exactly one listener named {LISTENER!r}")
    _set_address(_at(ingress[0], ("address", "socket_address"), template), listen_port)
    if _set_descriptors(ingress[0], os.fspath(descriptor.resolve())) == 0:
        raise DevstackError(f"{template}: listener {LISTENER!r} has no proto_descriptor")

    clusters = {c["name"]: c for c in _at(config, ("static_resources", "clusters"), template)}
    if set(clusters) != set(upstreams):
        raise DevstackError(
            f"{template} has clusters {sorted(clusters)}; upstreams given: {sorted(upstreams)}"
        )
    for name, (host, port) in upstreams.items():
        socket_address = _at(clusters[name], _ENDPOINT, template)
        socket_address["address"] = host
        socket_address["port_value"] = port
    return yaml.dump(config, Dumper=_PlainDumper, sort_keys=False)


def _is_live(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{admin_port}/ready", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"LIVE")
    except (urllib.error.URLError, OSError):
        return False


def start_envoy(
    config: str,
    config_path: Path,
    *,
    listen_port: int,
    admin_port: int,
    log_path: Path | None = None,
    timeout: float = 30.0,
) -> Server:
    """Writes `config` (see render_envoy_config) to `config_path`, runs Envoy and waits for /ready LIVE."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config)
    argv = [
        os.fspath(binaries.envoy()),
        "-c", os.fspath(config_path),
        "--log-level", "warn",
        # No hot restart means no shared-memory region keyed by a base id, so any number of
        # Envoys (parallel test runs, a `make run` next to the tests) can run on one machine.
        "--disable-hot-restart",
    ]  # fmt: skip
    process = ManagedProcess("envoy", argv, log_path=log_path, cwd=config_path.parent)
    try:
        process.wait_until(lambda: _is_live(admin_port), timeout, "ready (admin /ready LIVE)")
    except BaseException:
        process.stop()
        raise
    return Server(process, f"http://{LOOPBACK}:{listen_port}")
