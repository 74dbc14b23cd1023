"""docker-compose.yml and the Dockerfile stay in step with the code (no Docker engine here to run them)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_compose_command_runs_a_module_that_exists() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    modules = []
    for name, service in compose["services"].items():
        command = service.get("command")
        if command and command[:2] == ["python", "-m"]:
            modules.append(command[2])
            assert importlib.util.find_spec(command[2]) is not None, f"{name}: no module {command[2]}"
        for check in [service.get("healthcheck", {}).get("test", [])]:
            if check[:3] == ["CMD", "python", "-m"]:
                assert importlib.util.find_spec(check[3]) is not None
    assert {
        "users_svc",
        "tweets_svc",
        "fanout_svc",
        "timeline_svc",
        "media_svc",
        "notifications_svc",
        "meshkit.migrate",
        "devstack.envoy",
    } <= set(modules)


def test_compose_services_find_each_other_on_the_ports_they_listen_on() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("users", "tweets", "fanout", "timeline", "media", "notifications"):
        port = services[name]["environment"]["GRPC_PORT"]
        assert services[name]["environment"][f"{name.upper()}_ADDR"] == f"{name}:{port}"
    upstreams = [a for a in services["envoy"]["command"] if a.startswith("--upstream=")]
    for upstream in upstreams:
        cluster, address = upstream.removeprefix("--upstream=").split("=")
        assert address == f"{cluster}:{services[cluster]['environment']['GRPC_PORT']}"


def test_the_image_copies_every_package_it_installs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE))
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    generated = set(setuptools["package-dir"])  # under gen/, which is copied whole
    top_level = {p.split(".")[0] for p in setuptools["packages"]} - generated
    assert top_level | {"gen", "envoy", "protos"} <= copied


def test_compose_envoy_believes_no_forwarded_hop_since_clients_reach_it_directly() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["envoy"]["environment"]["XFF_TRUSTED_HOPS"] == "0"


def test_compose_keeps_envoys_admin_api_on_its_localhost_and_publishes_only_the_api_and_metrics() -> None:
    envoy = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["envoy"]
    (admin,) = [a for a in envoy["command"] if a.startswith("--admin=")]
    assert admin.startswith("--admin=127.0.0.1:")
    (metrics,) = [a for a in envoy["command"] if a.startswith("--metrics=")]
    published = {p.rsplit(":", 1)[1] for p in envoy["ports"]}
    assert published == {"8080", metrics.rsplit(":", 1)[1]}
    assert all(p.startswith("127.0.0.1:") for p in envoy["ports"])
