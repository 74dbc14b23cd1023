"""The rendered Envoy config routes exactly the public API, as read from the descriptor set: every
RPC with a google.api.http rule by its exact path to its service's cluster, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from devstack.envoy import (
    ADMIN_CLUSTER,
    COLLECTOR_CLUSTER,
    DESCRIPTOR,
    ROUTE_KINDS,
    TEMPLATE,
    otlp_collector,
    path_regex,
    public_rpcs,
    render_envoy_config,
)
from devstack.errors import DevstackError
from devstack.mesh import PUBLIC_SERVICES
from media_svc.media import MAX_UPLOAD_BYTES
from media_svc.server import MAX_REQUEST_BYTES
from tests.helpers import rpc_routes

UPSTREAMS = {name: ("127.0.0.1", 50000 + n) for n, name in enumerate(PUBLIC_SERVICES)}


def rendered(descriptor: Path = DESCRIPTOR, **options: Any) -> dict[str, Any]:
    config = render_envoy_config(
        TEMPLATE,
        listen_port=8080,
        admin_port=9901,
        metrics_port=9902,
        upstreams=UPSTREAMS,
        descriptor=descriptor,
        **options,
    )
    return dict(yaml.safe_load(config))


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "ingress"]
    return dict(listener["filter_chains"][0]["filters"][0]["typed_config"])


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    (host,) = _manager(config)["route_config"]["virtual_hosts"]
    return list(host["routes"])


def forwarded(config: dict[str, Any]) -> dict[str, str]:
    """Each forwarding route's exact path and cluster; fails on any route that forwards by a
    prefix or pattern (an allow list has none), or forwards anything but gRPC."""
    found = {}
    for route in routes(config):
        if "route" in route:
            assert set(route["match"]) == {"path", "headers"}, route["match"]
            assert route["match"]["headers"] == [GRPC_ONLY], route["match"]
            found[route["match"]["path"]] = route["route"]["cluster"]
    return found


GRPC_ONLY = {"name": "content-type", "string_match": {"prefix": "application/grpc"}}


def test_a_method_a_path_does_not_take_is_refused_with_the_ones_it_does() -> None:
    config = rendered()
    refusals = {
        r["match"]["safe_regex"]["regex"]: r["response_headers_to_add"][0]["header"]["value"]
        for r in routes(config)
        if r["name"].startswith("method-not-allowed")
    }
    assert refusals["^/v1/users/[^/]+$"] == "DELETE, GET, PATCH"
    assert refusals["^/v1/tweets/[^/]+:like$"] == "POST"
    assert refusals["^/v1/tweets$"] == "POST"
    order = list(refusals)
    # A path with a custom verb is tried before the bare one, which would match it too.
    assert order.index("^/v1/tweets/[^/]+:like$") < order.index("^/v1/tweets/[^/]+$")
    # Each refusal comes after every forwarding route and before the catch-all.
    names = [r["name"] for r in routes(config)]
    first = names.index(next(n for n in names if n.startswith("method-not-allowed")))
    assert all("route" not in r for r in routes(config)[first:])
    assert names[-1] == "not-found"
    # Envoy's own 400 for a QUERY without a content type becomes the same 405, path by path.
    mappers = _manager(config)["local_reply_config"]["mappers"]
    query = [m for m in mappers if m.get("status_code") == 405]
    assert len(query) == len(refusals)
    assert {m["headers_to_add"][0]["header"]["value"] for m in query} == set(refusals.values())


def test_path_templates_become_anchored_expressions() -> None:
    assert path_regex("/v1/users/{user_id}:follow") == "^/v1/users/[^/]+:follow$"
    assert path_regex("/v1/files/{name=**}") == "^/v1/files/.+$"
    assert path_regex("/v1/a.b/{x=*}") == "^/v1/a\\.b/[^/]+$"


def test_every_public_rpc_is_routed_to_its_service_and_nothing_else_is() -> None:
    config = rendered()
    public = {path for path, verb in rpc_routes().items() if verb}
    assert forwarded(config) == {path: path.split(".")[1] for path in public}
    last = routes(config)[-1]
    assert last["match"] == {"prefix": "/"} and last["direct_response"]["status"] == 404


def test_streams_have_no_route_timeout_and_unary_calls_do() -> None:
    kinds = {rpc.path: rpc.kind for rpc in public_rpcs(DESCRIPTOR.read_bytes())}
    for route in routes(rendered()):
        if "route" in route:
            # Live streams and media downloads (a video on a slow link) last as long as they last.
            streaming = kinds[route["match"]["path"]] in ("stream", "download")
            assert (route["route"]["timeout"] == "0s") == streaming, route


def _body_limit(route: dict[str, Any]) -> Any:
    return route.get("typed_per_filter_config", {}).get("envoy.filters.http.buffer")


def test_only_uploads_may_send_large_bodies_and_no_larger_than_media_svc_takes() -> None:
    config = rendered()
    (transcoder,) = [
        f["typed_config"] for f in _manager(config)["http_filters"] if f["name"].endswith("transcoder")
    ]
    (buffer,) = [f["typed_config"] for f in _manager(config)["http_filters"] if f["name"].endswith(".buffer")]
    assert buffer["max_request_bytes"] == 64 * 1024
    kinds = {rpc.path: rpc.kind for rpc in public_rpcs(DESCRIPTOR.read_bytes())}
    limits = {}
    for route in routes(config):
        limit = _body_limit(route)
        if "route" in route:
            kind = kinds[route["match"]["path"]]
            assert (limit is not None) == kind.startswith("upload"), route["name"]
            if kind == "upload":
                limits[route["match"]["path"]] = limit["buffer"]["max_request_bytes"]
            elif kind == "upload_stream":
                assert limit == {"@type": limit["@type"], "disabled": True}  # media_svc counts
    (limit,) = set(limits.values())
    # Whatever Envoy lets through reaches media_svc's own refusal (MEDIA_TOO_LARGE), not gRPC's.
    assert MAX_UPLOAD_BYTES < limit < MAX_REQUEST_BYTES
    assert transcoder["max_request_body_size"] == limit


def test_an_uploads_http_path_carries_its_body_limit_and_forwards_nothing() -> None:
    """The buffer filter runs before the transcoder, on the HTTP path (POST /v1/media): a route
    for that path carries the raised limit; the call itself is routed by its RPC's path."""
    twins = {
        r["match"].get("path"): r for r in routes(rendered()) if "direct_response" in r and _body_limit(r)
    }
    assert set(twins) == {"/v1/media", "/v1/media:stream"}
    for route in twins.values():
        # Reached only by a method the path does not take (the transcoder moves the call).
        assert route["direct_response"]["status"] == 405 and "route" not in route
        assert route["response_headers_to_add"][0]["header"] == {"key": "allow", "value": "POST"}
        # A CORS preflight of an upload goes to the preflight routes, not to this one.
        assert route["match"]["headers"] == [
            {"name": ":method", "string_match": {"exact": "OPTIONS"}, "invert_match": True}
        ]


def test_the_transcoder_serves_the_services_of_the_public_rpcs() -> None:
    (transcoder,) = [
        f["typed_config"]
        for f in _manager(rendered())["http_filters"]
        if "proto_descriptor" in f["typed_config"]
    ]
    assert transcoder["proto_descriptor"] == str(DESCRIPTOR.resolve())
    assert set(transcoder["services"]) == {path.split("/")[1] for path, verb in rpc_routes().items() if verb}


def _with_methods(tmp_path: Path, package: str, methods: dict[str, str | None]) -> Path:
    """The descriptor set plus a service in `package` with `methods` (name -> HTTP GET path or None)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())
    extra = files.file.add(name=f"{package.replace('.', '/')}/extra.proto", package=package, syntax="proto3")
    extra.dependency.append("google/api/annotations.proto")
    extra.message_type.add(name="Empty")
    service = extra.service.add(name="ExtraService")
    for name, get in methods.items():
        method = service.method.add(
            name=name, input_type=f".{package}.Empty", output_type=f".{package}.Empty"
        )
        if get is not None:
            method.options.Extensions[annotations_pb2.http].get = get
    path = tmp_path / "extended.pb"
    path.write_bytes(files.SerializeToString())
    return path


def test_a_new_rpc_with_an_http_route_is_allowed_and_a_new_internal_one_is_not(tmp_path: Path) -> None:
    descriptor = _with_methods(
        tmp_path, "tweetmesh.users.v1", {"ListBlockedUsers": "/v1/blocks", "PurgeSessions": None}
    )
    paths = forwarded(rendered(descriptor))
    assert paths["/tweetmesh.users.v1.ExtraService/ListBlockedUsers"] == "users"
    assert "/tweetmesh.users.v1.ExtraService/PurgeSessions" not in paths


def test_a_public_rpc_without_a_cluster_to_send_it_to_stops_the_render(tmp_path: Path) -> None:
    descriptor = _with_methods(tmp_path, "tweetmesh.nowhere.v1", {"GetNothing": "/v1/nothing"})
    with pytest.raises(DevstackError, match="nowhere"):
        rendered(descriptor)


def test_every_cluster_has_explicit_circuit_breakers_with_room_for_the_streams() -> None:
    thresholds = {}
    for cluster in rendered()["static_resources"]["clusters"]:
        if cluster["name"] == ADMIN_CLUSTER:
            continue
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert {"max_connections", "max_pending_requests", "max_requests", "max_retries"} <= set(threshold)
        thresholds[cluster["name"]] = threshold["max_requests"]
    assert set(thresholds) == set(PUBLIC_SERVICES)
    # Thousands of open streams per timeline pod; Envoy's default of 1,024 would be the limit.
    assert thresholds["timeline"] >= 10_000 > thresholds["users"] == thresholds["tweets"] > 1024


def test_calls_are_counted_per_client_address_and_kind_after_the_transcoder() -> None:
    config = rendered()
    filters = [f["name"] for f in _manager(config)["http_filters"]]
    transcoder = filters.index("envoy.filters.http.grpc_json_transcoder")
    assert (
        transcoder
        < filters.index("envoy.filters.http.local_ratelimit")
        < filters.index("envoy.filters.http.router")
    )
    limiter = next(
        f["typed_config"] for f in _manager(config)["http_filters"] if f["name"].endswith("local_ratelimit")
    )
    (actions,) = [limit["actions"] for limit in limiter["rate_limits"]]
    assert actions[0]["masked_remote_address"] == {"v4_prefix_mask_len": 32, "v6_prefix_mask_len": 64}
    assert actions[1]["metadata"]["default_value"] == "any"
    kinds = {d["entries"][1]["value"] for d in limiter["descriptors"]}
    assert kinds == {*ROUTE_KINDS, "any"}
    assert all(
        d["entries"][0] == {"key": "masked_remote_address"} for d in limiter["descriptors"]
    )  # any address
    kinds_by_path = {rpc.path: rpc.kind for rpc in public_rpcs(DESCRIPTOR.read_bytes())}
    assert set(ROUTE_KINDS) == set(kinds_by_path.values())
    for route in routes(config):
        if "route" in route:
            kind = route["metadata"]["filter_metadata"]["tweetmesh"]["kind"]
            assert kind == kinds_by_path[route["match"]["path"]], route["match"]


def test_the_trusted_hop_count_is_what_the_deployment_says() -> None:
    assert _manager(rendered())["xff_num_trusted_hops"] == 0
    assert _manager(rendered(xff_trusted_hops=1))["xff_num_trusted_hops"] == 1


def test_a_test_mesh_can_keep_the_buckets_counting_without_refusing() -> None:
    def enforced(config: dict[str, Any]) -> int:
        (limiter,) = [f for f in _manager(config)["http_filters"] if f["name"].endswith("local_ratelimit")]
        return int(limiter["typed_config"]["filter_enforced"]["default_value"]["numerator"])

    assert (enforced(rendered()), enforced(rendered(enforce_rate_limits=False))) == (100, 0)


def test_envoy_traces_to_the_collector_only_when_one_is_given() -> None:
    plain = rendered()
    assert "tracing" not in _manager(plain)
    assert COLLECTOR_CLUSTER not in {c["name"] for c in plain["static_resources"]["clusters"]}

    traced = rendered(otlp_collector=otlp_collector("http://collector.example:4317"))
    provider = _manager(traced)["tracing"]["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == COLLECTOR_CLUSTER
    (cluster,) = [c for c in traced["static_resources"]["clusters"] if c["name"] == COLLECTOR_CLUSTER]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "collector.example", "port_value": 4317}


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:4317", ("127.0.0.1", 4317)),
        ("https://otel.example", ("otel.example", 4317)),
        ("collector:5555", ("collector", 5555)),
        ("", None),
        (None, None),
    ],
)
def test_the_collector_is_read_from_the_otlp_endpoint(
    endpoint: str | None, expected: tuple[str, int] | None
) -> None:
    assert otlp_collector(endpoint) == expected
