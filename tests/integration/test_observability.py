"""What an operator watches: each service's Prometheus metrics, JSON logs that follow one request
across services by its id, and Envoy's access log with the gRPC status."""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from devstack.mesh import SERVICES, Mesh
from tests.helpers import LiveStream, Stubs, eventually, rpc_error
from tests.media_samples import encode, picture
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(mesh: Mesh, service: str) -> Samples:
    port = mesh.ports.of(f"{service}_metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= set(have))


def log_lines(mesh: Mesh, name: str) -> list[dict[str, Any]]:
    lines = []
    for line in (mesh.data_dir / "logs" / f"{name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_every_service_serves_rpc_histograms_by_method_and_code(mesh: Mesh, stubs: Stubs) -> None:
    author = stubs.sign_up("metric")
    stubs.post(author, "counted")
    stubs.home(author)
    stubs.fanout_stats()
    stubs.upload(author, encode(picture(), "PNG"), "image/png")
    stubs.notifications.GetUnreadCount(
        notifications_pb.GetUnreadCountRequest(), metadata=author.auth, timeout=10
    )
    calls = {
        "users": ("tweetmesh.users.v1.UserService", "Login"),
        "tweets": ("tweetmesh.tweets.v1.TweetService", "CreateTweet"),
        "fanout": ("tweetmesh.fanout.v1.FanoutService", "GetFanoutStats"),
        "timeline": ("tweetmesh.timeline.v1.TimelineService", "GetHomeTimeline"),
        "media": ("tweetmesh.media.v1.MediaService", "UploadMedia"),
        "notifications": ("tweetmesh.notifications.v1.NotificationService", "GetUnreadCount"),
    }
    for service in SERVICES:
        grpc_service, method = calls[service]
        samples = scrape(mesh, service)
        labels = {"grpc_service": grpc_service, "grpc_method": method, "grpc_code": "OK"}
        assert value(samples, "grpc_server_handling_seconds_count", **labels) >= 1, service
        assert value(samples, "grpc_server_handling_seconds_bucket", le="+Inf", **labels) >= 1, service
        assert value(samples, "grpc_server_handled_total", **labels) >= 1, service


def test_a_failed_call_is_counted_under_its_code(mesh: Mesh, stubs: Stubs) -> None:
    labels = {"grpc_method": "GetUserByHandle", "grpc_code": "NOT_FOUND"}
    before = value(scrape(mesh, "users"), "grpc_server_handled_total", **labels)
    error = rpc_error(
        lambda: stubs.users.GetUserByHandle(users_pb.GetUserByHandleRequest(handle="nobody_here"), timeout=10)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert value(scrape(mesh, "users"), "grpc_server_handled_total", **labels) == before + 1


def test_open_streams_and_fanout_and_pool_gauges(mesh: Mesh, stubs: Stubs) -> None:
    viewer, author = stubs.sign_up("watcher"), stubs.sign_up("poster")
    stubs.follow(viewer, author)
    stubs.home(viewer)  # fan-out writes only home timelines that exist (a read builds one)
    streams = {"grpc_method": "StreamHomeTimeline"}
    before = value(scrape(mesh, "timeline"), "grpc_server_open_streams", **streams)
    stream = LiveStream(stubs.timeline, viewer)
    try:
        stream.next_event(timeout=10)  # a heartbeat or a tweet: the stream is open
        assert value(scrape(mesh, "timeline"), "grpc_server_open_streams", **streams) == before + 1
        stubs.post(author, "to the stream")
        stream.next_tweet(timeout=10)
    finally:
        stream.close()
    eventually(lambda: value(scrape(mesh, "timeline"), "grpc_server_open_streams", **streams) == before)

    # fanout_svc refreshes the consumer group's gauges every few seconds.
    eventually(
        lambda: value(scrape(mesh, "fanout"), "tweetmesh_fanout_stream_length", stream="events:tweets") >= 1,
        timeout=15,
    )
    fanout = scrape(mesh, "fanout")
    assert value(fanout, "tweetmesh_fanout_timeline_writes_total") >= 1
    assert value(fanout, "tweetmesh_stream_entries_total", stream="events:tweets", outcome="acked") >= 1
    assert ("tweetmesh_fanout_stream_lag", (("stream", "events:tweets"),)) in fanout
    for service in ("users", "tweets", "media"):
        pool = scrape(mesh, service)
        assert value(pool, "tweetmesh_db_pool_max_connections") >= 1, service
        assert value(pool, "tweetmesh_db_pool_connections") >= 1, service
    for service in SERVICES:
        pools = scrape(mesh, service)
        assert value(pools, "tweetmesh_redis_pool_max_connections", pool=service) >= 1, service
        assert value(pools, "tweetmesh_redis_pool_connections", pool=service) >= 1, service


def test_a_live_delivery_is_timed_from_the_post_and_a_replay_is_not(mesh: Mesh, stubs: Stubs) -> None:
    viewer, author = stubs.sign_up("timed"), stubs.sign_up("timer")
    stubs.follow(viewer, author)
    stubs.home(viewer)  # fan-out writes only home timelines that exist (a read builds one)
    first = stubs.post(author, "before the stream")
    eventually(lambda: stubs.home(viewer).tweets)
    latency = {"stream": "home"}
    before = scrape(mesh, "timeline")
    stream = LiveStream(stubs.timeline, viewer)
    try:
        stream.next_event(timeout=10)  # a heartbeat or a tweet: the stream is open
        stubs.post(author, "timed on its way")
        stream.next_tweet(timeout=10)
    finally:
        stream.close()
    after = scrape(mesh, "timeline")
    count = "tweetmesh_delivery_latency_seconds_count"
    assert value(after, count, **latency) == value(before, count, **latency) + 1
    # Counted within a minute of its post (the largest finite bucket), however slow this machine is.
    within = {"le": "60.0", **latency}
    bucket, total = "tweetmesh_delivery_latency_seconds_bucket", "tweetmesh_delivery_latency_seconds_sum"
    assert value(after, bucket, **within) == value(before, bucket, **within) + 1
    assert value(after, total, **latency) > value(before, total, **latency)

    # A stream resuming from before `first` replays it: that is not a delivery's latency.
    replayed = LiveStream(stubs.timeline, viewer, since=str(int(first.tweet_id) - 1))
    try:
        assert replayed.next_tweet(timeout=10).tweet_id == first.tweet_id
    finally:
        replayed.close()
    assert value(scrape(mesh, "timeline"), count, **latency) == value(after, count, **latency)


def test_one_request_id_follows_a_call_through_the_services_and_secrets_stay_out(
    mesh: Mesh, stubs: Stubs
) -> None:
    viewer, author = stubs.sign_up("traced"), stubs.sign_up("tracee")
    stubs.follow(viewer, author)
    stubs.post(author, "hydrated through tweets_svc and users_svc")
    eventually(lambda: stubs.home(viewer).tweets)
    request_id = f"trace-{secrets.token_hex(6)}"
    stubs.timeline.GetHomeTimeline(
        timeline_pb.GetHomeTimelineRequest(page_size=5),
        metadata=(*viewer.auth, ("x-request-id", request_id)),
        timeout=10,
    )

    def logged_by(service: str) -> bool:
        return any(line.get("request_id") == request_id for line in log_lines(mesh, service))

    # timeline_svc served it; tweets_svc hydrated the tweets, users_svc their authors.
    eventually(lambda: logged_by("timeline") and logged_by("tweets") and logged_by("users"))
    served = [
        line
        for line in log_lines(mesh, "timeline")
        if line.get("request_id") == request_id and line["message"] == "rpc"
    ]
    assert served[0]["method"] == "/tweetmesh.timeline.v1.TimelineService/GetHomeTimeline"
    assert served[0]["grpc_code"] == "OK"

    # Neither passwords nor tokens are ever written to a log.
    for name in [*SERVICES, "envoy"]:
        text = (mesh.data_dir / "logs" / f"{name}.log").read_text(errors="replace")
        assert viewer.token not in text, name
        assert "correct horse battery" not in text, name


def test_envoy_logs_each_request_as_json_with_its_grpc_status_and_passes_the_id_on(
    mesh: Mesh, stubs: Stubs
) -> None:
    failing_status, failing = http_call_with_id(mesh, f"/v1/handles/nobody_{secrets.token_hex(3)}")
    assert failing_status == 404
    account = stubs.sign_up("edge")
    working_status, working = http_call_with_id(mesh, f"/v1/users/{account.user_id}")
    assert working_status == 200
    assert failing and working and failing != working  # Envoy made an id for each and returned it

    def access_line(request_id: str) -> dict[str, Any] | None:
        return next((e for e in log_lines(mesh, "envoy") if e.get("request_id") == request_id), None)

    failed = eventually(lambda: access_line(failing))
    assert (failed["method"], failed["status"], failed["upstream"]) == ("GET", 404, "users"), failed
    assert failed["upstream_grpc_status"] == "5", failed  # NOT_FOUND, as users_svc answered
    succeeded = eventually(lambda: access_line(working))
    assert (succeeded["status"], succeeded["grpc_status"]) == (200, "OK"), succeeded
    # Envoy passed the id on: users_svc logged it.
    eventually(lambda: any(line.get("request_id") == failing for line in log_lines(mesh, "users")))


def http_call_with_id(mesh: Mesh, path: str) -> tuple[int, str]:
    """The status of a GET through Envoy and the x-request-id Envoy returned with it."""
    url = f"http://127.0.0.1:{mesh.ports.envoy}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.headers.get("x-request-id", "")
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers.get("x-request-id", "")


def exposed_names(text: str) -> tuple[set[str], set[str]]:
    """Metric names (families, samples, and counters without the parser's `_total`) and label names."""
    metrics: set[str] = set()
    labels: set[str] = set()
    for family in text_string_to_metric_families(text):
        metrics.add(family.name)
        for sample in family.samples:
            metrics |= {sample.name, sample.name.removesuffix("_total")}
            labels |= set(sample.labels)
    return metrics, labels


def test_the_grafana_dashboard_charts_only_metrics_that_are_served(mesh: Mesh, stubs: Stubs) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    author = stubs.sign_up("charted")
    stubs.post(author, "for the dashboard")
    assert http_call_with_id(mesh, f"/v1/users/{author.user_id}")[0] == 200
    urls = [f"http://127.0.0.1:{mesh.ports.of(f'{s}_metrics')}/metrics" for s in SERVICES]
    urls.append(f"http://127.0.0.1:{mesh.ports.envoy_admin}/stats/prometheus")
    served: set[str] = set()
    label_names = {"le", "pod"}  # `pod` comes from Prometheus's Kubernetes discovery
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics, labels = exposed_names(response.read().decode())
        served |= metrics
        label_names |= labels
    used = {
        name
        for expr in expressions
        for name in re.findall(r"\b[a-z_][a-z0-9_]*\b", expr)
        if name.startswith(("grpc_server_", "tweetmesh_", "envoy_", "process_")) and name not in label_names
    }
    assert len(used) >= 10, used
    assert used - served == set()
