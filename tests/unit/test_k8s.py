"""deploy/k8s validates offline against the Kubernetes schema (strict: no unknown fields) and stays in
step with the code: ports, modules, probes, peer addresses, Envoy's config and upstreams."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devstack.envoy import DESCRIPTOR, TEMPLATE, render_envoy_config
from devstack.mesh import PUBLIC_SERVICES, SERVICES
from meshkit.healthcheck import LIVENESS
from meshkit.settings import DEFAULT_METRICS_PORTS, DEFAULT_PORTS, load_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s"
EXAMPLE = ROOT / "deploy" / "k8s-example"
# The oldest Kubernetes we document (native gRPC probes are GA since 1.27) and the newest schema known.
VERSIONS = ("1.30", kubernetes_validate.latest_version())
Manifest = dict[str, Any]


def _named(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)


def _merge(into: Any, patch: Any) -> Any:
    """A strategic-merge patch as far as our overlays use it: maps merge, lists of named items
    (containers, env) merge by name, anything else replaces."""
    if isinstance(into, dict) and isinstance(patch, dict):
        merged = dict(into)
        for key, value in patch.items():
            merged[key] = _merge(into.get(key), value) if key in into else value
        return merged
    if _named(into) and _named(patch):
        by_name = {item["name"]: item for item in into}
        for item in patch:
            by_name[item["name"]] = _merge(by_name[item["name"]], item) if item["name"] in by_name else item
        return list(by_name.values())
    return patch


def _patched(manifests: list[Manifest], patches: list[dict[str, str]], folder: Path) -> list[Manifest]:
    for entry in patches:
        patch = yaml.safe_load(entry["patch"])
        key = (patch["kind"], patch["metadata"]["name"])
        targets = [i for i, m in enumerate(manifests) if (m["kind"], m["metadata"]["name"]) == key]
        assert len(targets) == 1, f"{folder}: the patch of {key} must match one object"
        manifests[targets[0]] = _merge(manifests[targets[0]], patch)
    return manifests


def _set_images(manifests: list[Manifest], images: list[dict[str, str]]) -> None:
    for image in images:
        for manifest in manifests:
            for container in _containers(manifest):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"


def build(folder: Path) -> list[Manifest]:
    """`kustomize build` for the features our kustomizations use (resources, labels, namespace,
    images, patches), so the test runs with no kustomize binary."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    manifests: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            manifests += build(path)
        else:
            manifests += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for label_set in kustomization.get("labels", []):
        for manifest in manifests:
            manifest["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    manifests = _patched(manifests, kustomization.get("patches", []), folder)
    if namespace := kustomization.get("namespace"):
        for manifest in manifests:
            if manifest["kind"] != "Namespace":
                manifest["metadata"]["namespace"] = namespace
    _set_images(manifests, kustomization.get("images", []))
    return copy.deepcopy(manifests)


def _containers(manifest: Manifest) -> list[dict[str, Any]]:
    spec = manifest.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize("folder", [BASE, EXAMPLE], ids=["base", "example"])
def test_every_manifest_file_is_listed_and_every_object_validates_strictly(folder: Path) -> None:
    listed = set(yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert present <= listed, f"not in {folder}/kustomization.yaml: {present - listed}"
    manifests = build(folder)
    assert manifests
    for manifest in manifests:
        for version in VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_a_manifest_with_an_unknown_field_is_refused() -> None:
    deployment = copy.deepcopy(find(build(BASE), "Deployment", "users"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_module_on_its_ports_with_grpc_probes(service: str) -> None:
    manifests = build(BASE)
    deployment = find(manifests, "Deployment", service)
    pod = deployment["spec"]["template"]
    container = next(c for c in pod["spec"]["containers"] if c["name"] == service)
    assert container["command"] == ["python", "-m", f"{service}_svc"]
    assert importlib.util.find_spec(f"{service}_svc") is not None
    assert container["image"] == "tweetmesh:0.1.0"
    env = env_of(container)
    grpc_port, metrics_port = DEFAULT_PORTS[service], DEFAULT_METRICS_PORTS[service]
    assert (env["GRPC_PORT"], env["METRICS_PORT"]) == (str(grpc_port), str(metrics_port))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    # Liveness is the process alone; readiness (the overall status) follows the dependencies.
    assert container["startupProbe"]["grpc"]["service"] == LIVENESS
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS
    assert container["readinessProbe"]["grpc"].get("service", "") == ""
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert {"resources", "securityContext"} <= set(container)
    assert set(container["resources"]) == {"requests", "limits"}
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"tweetmesh-config", "tweetmesh-secrets"}

    headless = find(manifests, "Service", f"{service}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in headless["spec"]["ports"]] == [grpc_port]
    labels = pod["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    budget = find(manifests, "PodDisruptionBudget", service)
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_tweets_and_timeline_scale_automatically() -> None:
    manifests = build(BASE)
    autoscalers = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    scaled = {m["spec"]["scaleTargetRef"]["name"] for m in autoscalers}
    assert scaled == {"tweets", "timeline"}
    for name in scaled:
        assert "replicas" not in find(manifests, "Deployment", name)["spec"]  # the autoscaler owns it


def test_peers_are_reached_through_headless_services_balanced_per_call() -> None:
    manifests = build(BASE)
    config = find(manifests, "ConfigMap", "tweetmesh-config")["data"]
    for service in SERVICES:
        assert config[f"{service.upper()}_ADDR"] == f"dns:///{service}-headless:{DEFAULT_PORTS[service]}"
    example_secret = find(build(EXAMPLE), "Secret", "tweetmesh-secrets")["stringData"]
    settings = load_settings("timeline", {**config, **example_secret})
    assert settings.users_addr.startswith("dns:///") and settings.listen_host == "0.0.0.0"


def test_envoy_runs_the_repository_config_against_the_headless_services() -> None:
    manifests = build(BASE)
    assert find(manifests, "ConfigMap", "envoy-config")["data"]["envoy.yaml"] == TEMPLATE.read_text(), (
        "deploy/k8s/envoy-config.yaml must carry envoy/envoy.yaml verbatim: run make gen"
    )
    container = find(manifests, "Deployment", "envoy")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["python", "-m", "devstack.envoy"]
    upstreams = {}
    for argument in container["command"]:
        if argument.startswith("--upstream="):
            cluster, address = argument.removeprefix("--upstream=").split("=")
            host, port = address.split(":")
            upstreams[cluster] = (host, int(port))
    assert upstreams == {s: (f"{s}-headless", DEFAULT_PORTS[s]) for s in PUBLIC_SERVICES}
    rendered = yaml.safe_load(
        render_envoy_config(
            TEMPLATE, listen_port=8080, admin_port=9901, upstreams=upstreams, descriptor=DESCRIPTOR
        )
    )
    assert {c["name"] for c in rendered["static_resources"]["clusters"]} == set(PUBLIC_SERVICES)


def test_the_example_brings_its_own_datastores_and_secret() -> None:
    manifests = build(EXAMPLE)
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {"tweetmesh"}
    find(manifests, "StatefulSet", "postgres")
    find(manifests, "StatefulSet", "redis")
    external = find(manifests, "Service", "tweetmesh-postgres")["spec"]["externalName"]
    assert external == "postgres.tweetmesh.svc.cluster.local"
    secret = find(manifests, "Secret", "tweetmesh-secrets")["stringData"]
    assert "@tweetmesh-postgres:5432/" in secret["DATABASE_URL"]
    assert secret["REDIS_URL"].startswith("redis://tweetmesh-redis:6379")


def test_only_the_mesh_reaches_the_services_grpc_ports_whose_proxy_headers_they_trust() -> None:
    manifests = build(BASE)
    config = find(manifests, "ConfigMap", "tweetmesh-config")["data"]
    assert load_settings(
        "users", {**config, "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r"}
    ).trusted_proxies
    policy = find(manifests, "NetworkPolicy", "tweetmesh-services")["spec"]
    for service in SERVICES:
        labels = find(manifests, "Deployment", service)["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    grpc_rule = next(rule for rule in policy["ingress"] if rule["ports"] == [{"port": "grpc"}])
    allowed = set(grpc_rule["from"][0]["podSelector"]["matchExpressions"][0]["values"])
    envoy = find(manifests, "Deployment", "envoy")["spec"]["template"]["metadata"]["labels"]
    assert {envoy["app.kubernetes.io/component"], "service"} == allowed


def test_envoy_believes_one_proxy_in_front_in_the_base_and_none_in_the_port_forwarded_example() -> None:
    for folder, hops in ((BASE, "1"), (EXAMPLE, "0")):
        container = find(build(folder), "Deployment", "envoy")["spec"]["template"]["spec"]["containers"][0]
        assert env_of(container)["XFF_TRUSTED_HOPS"] == hops, folder
