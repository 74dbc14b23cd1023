"""A real Prometheus (Debian's) scraping the test mesh through deploy/prometheus's relabel rules, and
the alert rules of deploy/prometheus checked and unit-tested with promtool."""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.mesh import HOST, SERVICES, Mesh, free_port
from devstack.process import ManagedProcess
from tests.helpers import LiveStream, Stubs, debian_tool, eventually

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
ALERTS = RULES_DIR / "alerts.yaml"


def promtool(*args: str) -> str:
    done = subprocess.run(
        [debian_tool("promtool", "prometheus"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULES_DIR,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_alert_rules_are_valid() -> None:
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "alerts.yaml")


def test_alert_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yaml")


def test_the_prometheus_rule_for_the_operator_holds_the_same_groups() -> None:
    rule = yaml.safe_load((RULES_DIR / "prometheus-rule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())


def _pod(mesh: Mesh, service: str) -> dict[str, Any]:
    """A static target carrying the labels Kubernetes pod discovery gives a pod of deploy/k8s
    (its address without the metrics port, the prometheus.io annotations, app.kubernetes.io/name)."""
    if service == "envoy":
        port, path = mesh.ports.envoy_metrics, "/stats/prometheus"
    else:
        port, path = mesh.ports.of(f"{service}_metrics"), "/metrics"
    return {
        "targets": [HOST],
        "labels": {
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_annotation_prometheus_io_port": str(port),
            "__meta_kubernetes_pod_annotation_prometheus_io_path": path,
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": service,
            "__meta_kubernetes_pod_name": f"{service}-0",
            "__meta_kubernetes_namespace": "tweetmesh",
        },
    }


def scrape_config(mesh: Mesh) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the pods of this mesh in place of Kubernetes discovery
    (Debian builds Prometheus without it), scraping and evaluating every second."""
    config: dict[str, Any] = yaml.safe_load((RULES_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
    config["rule_files"] = [str(ALERTS)]
    (job,) = config["scrape_configs"]
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [_pod(mesh, service) for service in (*SERVICES, "envoy")]
    return config


class Prometheus:
    def __init__(self, port: int) -> None:
        self.port = port

    def api(self, path: str, **query: str) -> Any:
        url = f"http://{HOST}:{self.port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expression)["result"])

    def targets(self) -> dict[str, str]:
        """Each active target's `service` label and its health (up, down, unknown)."""
        return {t["labels"]["service"]: t["health"] for t in self.api("targets")["activeTargets"]}

    def active_alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]


@pytest.fixture(scope="module")
def prometheus(mesh: Mesh) -> Iterator[Prometheus]:
    binary = debian_tool("prometheus", "prometheus")
    with tempfile.TemporaryDirectory(prefix="tweetmesh-prometheus-") as folder:
        config = Path(folder) / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(mesh), sort_keys=False))
        port = free_port()
        process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder}/data",
                f"--web.listen-address={HOST}:{port}",
                "--web.enable-lifecycle",
            ],
            log_path=Path(folder) / "prometheus.log",
        )
        try:
            process.wait_until(lambda: _answers(port), 60, "ready (/-/ready)")
            yield Prometheus(port)
        finally:
            process.stop()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_every_target_is_up_and_the_key_series_are_there(prometheus: Prometheus, stubs: Stubs) -> None:
    eventually(lambda: prometheus.targets() == dict.fromkeys([*SERVICES, "envoy"], "up"), timeout=60)
    author = stubs.sign_up("prom")
    stream = LiveStream(stubs.timeline, None)
    try:
        stream.next_event(timeout=10)  # a heartbeat: the global stream is open
        posted = stubs.post(author, "scraped")
        while stream.next_tweet(timeout=10).tweet_id != posted.tweet_id:
            pass  # another test's tweet
    finally:
        stream.close()
    stubs.home(author)
    key_series = {
        'grpc_server_handled_total{service="tweets", grpc_method="CreateTweet", grpc_code="OK"}': "tweets",
        'grpc_server_handling_seconds_bucket{service="timeline", grpc_method="GetHomeTimeline"}': "timeline",
        'grpc_server_handled_total{service="users", grpc_method="Login"}': "users",
        "tweetmesh_fanout_stream_lag": "fanout",
        "tweetmesh_fanout_dead_lettered": "fanout",
        'tweetmesh_stream_entries_total{outcome="acked"}': "fanout",
        "tweetmesh_db_pool_connections": "tweets",
        'envoy_cluster_membership_healthy{envoy_cluster_name="timeline"}': "envoy",
        'envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="ingress"}': "envoy",
        "process_resident_memory_bytes": "timeline",
        'tweetmesh_delivery_latency_seconds_count{stream="global"} > 0': "timeline",
    }
    for series, service in key_series.items():
        found = eventually(partial(prometheus.query, series), timeout=15)
        assert service in {sample["metric"]["service"] for sample in found}, series
        assert {sample["metric"]["namespace"] for sample in found} == {"tweetmesh"}, series


def test_the_alert_rules_run_on_the_real_series(prometheus: Prometheus, mesh: Mesh) -> None:
    eventually(lambda: prometheus.targets() == dict.fromkeys([*SERVICES, "envoy"], "up"), timeout=60)

    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        assert len(rules) == 8
        assert all(r["health"] == "ok" and r["lastEvaluation"][:4] != "0001" for r in rules), rules
        return rules

    eventually(evaluated, timeout=30)
    # Before the first scrape every service is absent (pending); with all targets up, none may stay.
    eventually(lambda: prometheus.active_alerts("TweetmeshServiceDown") == [], timeout=30)

    # fanout_svc can be away for a moment without anyone losing a tweet: its events wait in Redis.
    mesh.stop_service("fanout")
    try:
        pending = eventually(lambda: prometheus.active_alerts("TweetmeshInstanceDown"), timeout=60)
        assert [(a["labels"]["service"], a["state"]) for a in pending] == [("fanout", "pending")]
    finally:
        mesh.start_service("fanout")
    eventually(lambda: prometheus.active_alerts("TweetmeshInstanceDown") == [], timeout=60)
