"""deploy/k8s validates offline against the Kubernetes schema (strict: no unknown fields) and stays in
step with the code: ports, modules, probes, peer addresses, Envoy's config and upstreams."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devstack.envoy import ADMIN_CLUSTER, DESCRIPTOR, TEMPLATE, render_envoy_config
from devstack.mesh import PUBLIC_SERVICES, SERVICES
from meshkit.healthcheck import LIVENESS
from social.services import DEFAULT_PORTS
from timeline_svc.settings import load_settings as timeline_settings
from users_svc.settings import load_settings as users_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s"
EXAMPLE = ROOT / "deploy" / "k8s-example"
MTLS = ROOT / "deploy" / "k8s-mtls"
READ_REPLICA = ROOT / "deploy" / "k8s-read-replica"
REDIS_CLUSTER = ROOT / "deploy" / "k8s-redis-cluster"
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


@pytest.mark.parametrize(
    "folder",
    [BASE, EXAMPLE, READ_REPLICA, MTLS, REDIS_CLUSTER],
    ids=["base", "example", "read-replica", "mtls", "redis-cluster"],
)
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
    grpc_port, metrics_port = DEFAULT_PORTS[service].grpc, DEFAULT_PORTS[service].metrics
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


# media_svc keeps its files on a ReadWriteOnce volume in the base: one pod (with MEDIA_S3_URL it
# could scale like the others; media.yaml says how).
SCALABLE = set(SERVICES) - {"media"}
# Each service with consumer groups, and the variable naming its consumer in them.
CONSUMER_VARIABLES = {
    "users": "USERS_CONSUMER",
    "tweets": "TRENDS_CONSUMER",
    "fanout": "FANOUT_CONSUMER",
    "notifications": "NOTIFICATIONS_CONSUMER",
    "media": "MEDIA_CONSUMER",
}


def test_every_service_that_can_scale_scales_automatically_from_two_pods() -> None:
    manifests = build(BASE)
    autoscalers = {
        m["spec"]["scaleTargetRef"]["name"]: m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(autoscalers) == SCALABLE
    for name, autoscaler in autoscalers.items():
        assert "replicas" not in find(manifests, "Deployment", name)["spec"]  # the autoscaler owns it
        assert 2 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]
    media = find(manifests, "Deployment", "media")["spec"]
    assert media["replicas"] == 1 and media["strategy"]["type"] == "Recreate"  # its volume: one pod


@pytest.mark.parametrize("service", sorted(CONSUMER_VARIABLES))
def test_each_pod_is_its_own_consumer_named_after_the_pod(service: str) -> None:
    manifests = build(BASE)
    container = find(manifests, "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
    named = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert named[CONSUMER_VARIABLES[service]] == "metadata.name"
    # The variable is the one the service reads its consumer name from.
    config = find(manifests, "ConfigMap", "tweetmesh-config")["data"]
    secret = find(build(EXAMPLE), "Secret", "tweetmesh-secrets")["stringData"]
    load = importlib.import_module(f"{service}_svc.settings").load_settings
    settings = load({**config, **secret, CONSUMER_VARIABLES[service]: "the-pod-7f9c"})
    assert "the-pod-7f9c" in [getattr(settings, f.name) for f in dataclasses.fields(settings)]


def test_peers_are_reached_through_headless_services_balanced_per_call() -> None:
    manifests = build(BASE)
    config = find(manifests, "ConfigMap", "tweetmesh-config")["data"]
    for service in SERVICES:
        assert config[f"{service.upper()}_ADDR"] == f"dns:///{service}-headless:{DEFAULT_PORTS[service].grpc}"
    example_secret = find(build(EXAMPLE), "Secret", "tweetmesh-secrets")["stringData"]
    settings = timeline_settings({**config, **example_secret})
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
            upstreams[cluster] = [(host, int(port))]
    assert upstreams == {s: [(f"{s}-headless", DEFAULT_PORTS[s].grpc)] for s in PUBLIC_SERVICES}
    rendered = yaml.safe_load(
        render_envoy_config(
            TEMPLATE,
            listen_port=8080,
            admin_port=9901,
            metrics_port=9902,
            upstreams=upstreams,
            descriptor=DESCRIPTOR,
        )
    )
    assert {c["name"] for c in rendered["static_resources"]["clusters"]} == {*PUBLIC_SERVICES, ADMIN_CLUSTER}


def test_the_example_brings_its_own_datastores_and_secret() -> None:
    manifests = build(EXAMPLE)
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {"tweetmesh"}
    find(manifests, "StatefulSet", "postgres")
    find(manifests, "StatefulSet", "redis")
    external = find(manifests, "Service", "tweetmesh-postgres")["spec"]["externalName"]
    assert external == "postgres.tweetmesh.svc.cluster.local"
    secret = find(manifests, "Secret", "tweetmesh-secrets")["stringData"]
    assert "@tweetmesh-postgres:5432/" in secret["DATABASE_URL"]
    # Redis takes no anonymous connection (tests/integration/test_deploy_redis.py runs it).
    assert secret["REDIS_URL"].startswith(
        f"redis://tweetmesh:{secret['REDIS_PASSWORD']}@tweetmesh-redis:6379"
    )


def test_the_read_replica_overlay_gives_the_readers_its_url_and_a_name() -> None:
    manifests = build(READ_REPLICA)
    assert find(manifests, "Service", "tweetmesh-postgres-read")["spec"]["type"] == "ExternalName"
    readers = set()
    for service in SERVICES:
        container = next(
            c
            for c in find(manifests, "Deployment", service)["spec"]["template"]["spec"]["containers"]
            if c["name"] == service
        )
        refs = {e["name"]: e.get("valueFrom", {}) for e in container.get("env", [])}
        if "DATABASE_READ_URL" in refs:
            readers.add(service)
            assert refs["DATABASE_READ_URL"] == {
                "secretKeyRef": {"name": "tweetmesh-secrets", "key": "DATABASE_READ_URL"}
            }
    # The services whose settings read it (meshkit.settings.read_database_read_url), and no other.
    assert readers == {"users", "tweets"}
    secret = find(build(EXAMPLE), "Secret", "tweetmesh-secrets")["stringData"]
    read_url = "postgresql://tweetmesh:tweetmesh@tweetmesh-postgres-read:5432/tweetmesh"
    assert users_settings({**secret, "DATABASE_READ_URL": read_url}).database_read_url == read_url


@pytest.mark.parametrize("service", SERVICES)
def test_the_redis_cluster_overlay_puts_every_service_on_the_cluster_client(service: str) -> None:
    manifests = build(REDIS_CLUSTER)
    assert find(manifests, "Service", "tweetmesh-redis")["spec"]["externalName"] != "redis.example.internal"
    deployment = find(manifests, "Deployment", service)
    container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == service)
    assert {"configMapRef": {"name": "tweetmesh-config"}} in container.get("envFrom", [])
    config = find(manifests, "ConfigMap", "tweetmesh-config")["data"]
    secret = find(build(EXAMPLE), "Secret", "tweetmesh-secrets")["stringData"]
    settings = importlib.import_module(f"{service}_svc.settings").load_settings({**config, **secret})
    assert settings.redis_cluster
    # Nothing about the cluster changes how many pods run: the base's autoscalers still decide.
    base = find(build(BASE), "Deployment", service)["spec"].get("replicas")
    assert deployment["spec"].get("replicas") == base
    assert [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"] == [
        m for m in build(BASE) if m["kind"] == "HorizontalPodAutoscaler"
    ]


# ----- who may connect to whom: the NetworkPolicies, evaluated


@dataclass(frozen=True)
class Pod:
    labels: dict[str, str]
    ports: dict[str, int]  # container port name -> number


INTRUDER = Pod({"app.kubernetes.io/name": "intruder"}, {})


def pods(manifests: list[Manifest]) -> dict[str, Pod]:
    """Each workload's pod (by its name label), and an unknown pod of the namespace ("intruder")."""
    found = {"intruder": INTRUDER}
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            template = manifest["spec"]["template"]
            ports = {p["name"]: p["containerPort"] for c in _containers(manifest) for p in c.get("ports", [])}
            labels = template["metadata"]["labels"]
            found[labels["app.kubernetes.io/name"]] = Pod(labels, ports)
    return found


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression  # the only operator our policies use
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _rule_allows(rule: dict[str, Any], peers: str, peer: Pod, port: int, destination: Pod) -> bool:
    """Whether an ingress (peers="from") or egress (peers="to") rule lets `peer` through on `port`
    of `destination` (named ports are the destination's)."""
    if peers in rule and not any(_selects(p["podSelector"], peer.labels) for p in rule[peers]):
        return False
    if "ports" not in rule:
        return True
    return any(destination.ports.get(p["port"], p["port"]) == port for p in rule["ports"])


def allowed(manifests: list[Manifest], source: Pod, destination: Pod, port: int) -> bool:
    """Whether the NetworkPolicies let `source` open a TCP connection to `port` of `destination`:
    the destination's ingress policies and the source's egress policies must both allow it."""
    policies = [m["spec"] for m in manifests if m["kind"] == "NetworkPolicy"]

    def passes(direction: str, selected: Pod, peers: str, peer: Pod) -> bool:
        applying = [
            p
            for p in policies
            if direction in p["policyTypes"] and _selects(p["podSelector"], selected.labels)
        ]
        rules = [rule for p in applying for rule in p.get(direction.lower(), [])]
        return not applying or any(_rule_allows(rule, peers, peer, port, destination) for rule in rules)

    return passes("Ingress", destination, "from", source) and passes("Egress", source, "to", destination)


def test_only_envoy_and_the_services_reach_the_services_and_only_the_services_the_datastores() -> None:
    manifests = build(EXAMPLE)
    pod = pods(manifests)

    def can(source: str, destination: str, port: str | int) -> bool:
        target = pod[destination]
        return allowed(
            manifests,
            pod[source],
            target,
            target.ports[port] if isinstance(port, str) else port,
        )

    # The way in: Envoy's public port and metrics, from anyone; never its admin API.
    assert can("intruder", "envoy", "http") and can("intruder", "envoy", "metrics")
    assert not can("intruder", "envoy", 9901)
    # Envoy reaches the public services, not the fan-out admin API, not the datastores.
    for name in PUBLIC_SERVICES:
        assert can("envoy", name, "grpc"), name
    assert not can("envoy", "fanout", "grpc")
    assert not can("envoy", "redis", "redis") and not can("envoy", "postgres", "postgres")
    # The services reach each other; nobody else reaches them (their metrics aside).
    for source in SERVICES:
        for destination in SERVICES:
            assert can(source, destination, "grpc"), (source, destination)
    for name in SERVICES:
        assert (
            not can("intruder", name, "grpc")
            and not can("redis", name, "grpc")
            and not can("postgres", name, "grpc")
        )
        assert can("intruder", name, "metrics")
    # Redis: every service, nobody else. PostgreSQL: the services that own a schema, nobody else.
    for name in SERVICES:
        assert can(name, "redis", "redis"), name
        assert can(name, "postgres", "postgres") == (name in ("users", "tweets", "media", "notifications")), (
            name
        )
    assert not can("intruder", "redis", "redis") and not can("intruder", "postgres", "postgres")


def test_envoy_cannot_reach_datastores_outside_the_cluster_either() -> None:
    """The base's PostgreSQL and Redis are outside (no policy of ours guards them): Envoy's own
    egress policy keeps it from them, while the services reach them."""
    manifests = build(BASE)
    pod = pods(manifests)
    outside = Pod({}, {})
    for port in (5432, 6379):
        assert not allowed(manifests, pod["envoy"], outside, port)
        assert allowed(manifests, pod["users"], outside, port)


def test_the_services_believe_forwarded_addresses_from_the_pod_network_only() -> None:
    config = find(build(BASE), "ConfigMap", "tweetmesh-config")["data"]
    networks = users_settings(
        {
            **config,
            "DATABASE_URL": "postgresql://x/y",
            "REDIS_URL": "redis://r",
            "PAGE_TOKEN_SECRET": "s" * 32,
        }
    ).trusted_proxies
    assert networks
    for network in networks:
        # One cluster's pod network at most: never a whole private range (load balancers and
        # nodes live there too, and would be believed).
        assert network.is_private and network.prefixlen >= 16, network


def test_envoy_believes_one_proxy_in_front_in_the_base_and_none_in_the_port_forwarded_example() -> None:
    for folder, hops in ((BASE, "1"), (EXAMPLE, "0")):
        container = find(build(folder), "Deployment", "envoy")["spec"]["template"]["spec"]["containers"][0]
        assert env_of(container)["XFF_TRUSTED_HOPS"] == hops, folder


def _argument(command: list[str], name: str) -> str:
    (value,) = [a.removeprefix(f"{name}=") for a in command if a.startswith(f"{name}=")]
    return value


def test_envoys_admin_api_listens_on_localhost_and_monitoring_uses_the_metrics_listener() -> None:
    pod = find(build(BASE), "Deployment", "envoy")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert _argument(container["command"], "--admin").startswith("127.0.0.1:")
    metrics_port = int(_argument(container["command"], "--metrics").rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == metrics_port
    assert 9901 not in ports.values()
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/stats/prometheus"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/ready", "port": "metrics"}


# ----- mutual TLS (deploy/k8s-mtls and its cert-manager objects)


def _mounted_secret(manifest: Manifest, container: dict[str, Any], path: str) -> str:
    """The Secret mounted at `path` in `container` of `manifest`'s pods."""
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    volumes = manifest["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    return str(volume["secret"]["secretName"])


def test_mutual_tls_gives_every_deployment_its_certificate_and_probes_the_plain_health_port() -> None:
    manifests = build(MTLS)
    certificates = {
        c["spec"]["secretName"]: c["spec"]
        for c in yaml.safe_load_all((MTLS / "cert-manager" / "certificates.yaml").read_text())
        if c["kind"] == "Certificate"
    }
    issuers = {
        i["metadata"]["name"]
        for i in yaml.safe_load_all((MTLS / "cert-manager" / "certificates.yaml").read_text())
        if i["kind"] == "Issuer"
    }
    config = find(manifests, "ConfigMap", "tweetmesh-config")["data"]
    for service in SERVICES:
        deployment = find(manifests, "Deployment", service)
        container = next(
            c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == service
        )
        env = env_of(container)
        secret = _mounted_secret(deployment, container, env["GRPC_TLS_DIR"])
        assert secret == f"tweetmesh-mtls-{service}"
        health = int(env["GRPC_HEALTH_PORT"])
        assert health != DEFAULT_PORTS[service].grpc
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["health"] == health
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health, (service, probe)
        assert container["livenessProbe"]["grpc"]["service"] == LIVENESS  # the base's, kept
        # The certificate names the host its peers dial (and check).
        spec = certificates[secret]
        dialled = config[f"{service.upper()}_ADDR"].removeprefix("dns:///").rpartition(":")[0]
        assert dialled in spec["dnsNames"], service
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["issuerRef"]["name"] in issuers
        # The settings read from this pod's environment take the folder (tests/unit/test_mesh_tls.py
        # checks what is in it).
        assert env["GRPC_TLS_DIR"] == "/etc/mesh-tls"

    envoy = find(manifests, "Deployment", "envoy")
    container = envoy["spec"]["template"]["spec"]["containers"][0]
    secret = _mounted_secret(envoy, container, env_of(container)["GRPC_TLS_DIR"])
    assert "client auth" in certificates[secret]["usages"]
    for argument in container["command"]:
        if argument.startswith("--upstream="):
            cluster, address = argument.removeprefix("--upstream=").split("=")
            host = address.rpartition(":")[0]
            assert host in certificates[f"tweetmesh-mtls-{cluster}"]["dnsNames"], argument
