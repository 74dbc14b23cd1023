"""Envoy for development, tests and containers: renders envoy/envoy.yaml with our addresses and the
public API's allow list, runs it.

The allow list: Envoy routes only the public RPCs, those with a google.api.http rule in the
descriptor set it transcodes with, each by its exact gRPC path; anything else gets the template's
last route (404 / UNIMPLEMENTED). The template holds one route per kind of RPC (its metadata
`tweetmesh.kind`: `read`, `write`, `stream`, `upload`, `upload_stream`, `download`); rendering
replaces each with a copy per public RPC of that kind (its path and cluster:
`tweetmesh.<cluster>.v1`), so a new RPC with an HTTP route is routed and a new internal one is not.
The template's route `method-not-allowed` is repeated for each path of the HTTP/JSON API: a method
the path does not take is 405 with the ones it takes (Allow); so is an HTTP route of an RPC kind
(its twin).

In a container: `python -m devstack.envoy --listen 0.0.0.0:8080 --metrics 0.0.0.0:9902
--upstream users=users:50051 --upstream tweets=tweets:50052 --upstream timeline=timeline:50054`
renders the config and replaces itself with Envoy (see docker-compose.yml); XFF_TRUSTED_HOPS in its
environment is the number of proxies in front of it (--xff-trusted-hops). With a certificate
(`--tls-cert` and `--tls-key`, or `--tls-dir` holding tls.crt and tls.key) it also serves HTTPS and
gRPC over TLS on `--tls-listen`; `--cors-origin` (repeatable) lets pages of that origin call the API.
With `--mesh-tls-dir` (tls.crt, tls.key, ca.crt; default $GRPC_TLS_DIR, the services' variable) it
speaks mutual TLS to the services.
With OTEL_EXPORTER_OTLP_ENDPOINT in its environment it traces requests to that OTLP/gRPC collector.
The web client's files (web/) are served at / as direct responses, one route per file.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from devstack import binaries
from devstack.errors import DevstackError
from devstack.process import ManagedProcess, Server
from devstack.tls import TlsFiles
from meshkit.mtls import CERTIFICATE, PRIVATE_KEY, TRUSTED_CAS, MeshTlsError, load_mesh_tls
from meshkit.tracing import ENDPOINT_VARIABLE

LISTENER = "ingress"
TLS_LISTENER = "ingress_tls"
METRICS_LISTENER = "metrics"
ADMIN_CLUSTER = "envoy_admin"
COLLECTOR_CLUSTER = "otel_collector"
_ANY = ("0.0.0.0", "::")
LOOPBACK = "127.0.0.1"
_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = _ROOT / "envoy" / "envoy.yaml"
DESCRIPTOR = _ROOT / "gen" / "tweetmesh.pb"
WEB = _ROOT / "web"
WEB_ROUTE = "web"
PREFLIGHT_ROUTE = "cors-preflight"
# The web client's files by extension; a file of any other kind is refused rather than served
# with a guessed type.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_CORS = "envoy.filters.http.cors"
_TLS_CONTEXT = ("filter_chains", 0, "transport_socket", "typed_config", "common_tls_context")
_ENDPOINT = ("load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")
API_PACKAGE = "tweetmesh."
_LOCAL_RATE_LIMIT = ".local_ratelimit.v3.LocalRateLimit"
# The kinds of public RPC: a route of the template with one of these in its metadata `tweetmesh.kind`
# stands for every public RPC of that kind.
ROUTE_KINDS = ("read", "write", "stream", "upload", "upload_stream", "download")
HTTP_BODY = ".google.api.HttpBody"
METHOD_NOT_ALLOWED = "method-not-allowed"


@dataclass(frozen=True, slots=True)
class TlsListener:
    """Where Envoy serves TLS, and with which certificate."""

    files: TlsFiles
    port: int
    host: str = LOOPBACK


@dataclass(frozen=True, slots=True)
class PublicRpc:
    """An RPC of the public API: Envoy routes it, to `cluster`."""

    path: str  # "/tweetmesh.users.v1.UserService/GetUser"
    service: str  # "tweetmesh.users.v1.UserService"
    cluster: str  # "users": the second part of the package
    # Its google.api.http path templates ("/v1/users/{user_id}"), additional bindings included.
    http_paths: tuple[str, ...]
    # "upload" (raw bytes in: an HttpBody request body), "upload_stream" (a client stream: bytes in
    # chunks), "download" (raw bytes out: a stream whose HTTP body is an HttpBody field), "stream"
    # (a live server stream), "read" (any other HTTP GET) or "write" (any other verb).
    kind: str


def _field_type(message: descriptor_pb2.DescriptorProto, name: str) -> str:
    return next((f.type_name for f in message.field if f.name == name), "")


def _kind(
    method: descriptor_pb2.MethodDescriptorProto, messages: Mapping[str, descriptor_pb2.DescriptorProto]
) -> str:
    rule = method.options.Extensions[annotations_pb2.http]
    if method.client_streaming:
        return "upload_stream"
    if _field_type(messages[method.input_type], rule.body) == HTTP_BODY:
        return "upload"
    if method.server_streaming:
        raw = _field_type(messages[method.output_type], rule.response_body) == HTTP_BODY
        return "download" if raw else "stream"
    return "read" if rule.WhichOneof("pattern") == "get" else "write"


def public_rpcs(descriptor_set: bytes) -> list[PublicRpc]:
    """Every RPC of the tweetmesh packages that has a google.api.http rule, in descriptor order."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    messages = {f".{file.package}.{message.name}": message for file in files for message in file.message_type}
    found = []
    for file in files:
        if not file.package.startswith(API_PACKAGE):
            continue
        cluster = file.package.split(".")[1]
        for service in file.service:
            full_name = f"{file.package}.{service.name}"
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule = method.options.Extensions[annotations_pb2.http]
                    found.append(
                        PublicRpc(
                            f"/{full_name}/{method.name}",
                            full_name,
                            cluster,
                            _http_paths(rule),
                            _kind(method, messages),
                        )
                    )
    return found


def http_paths(descriptor_set: bytes) -> dict[str, list[str]]:
    """Each path template of the HTTP/JSON API ("/v1/tweets/{tweet_id}") and the methods it takes
    ("GET", "DELETE"), from the google.api.http rules (additional bindings too)."""
    paths: dict[str, list[str]] = {}

    def add(rule: http_pb2.HttpRule) -> None:
        verb = rule.WhichOneof("pattern")
        if verb == "custom":
            paths.setdefault(rule.custom.path, []).append(rule.custom.kind.upper())
        elif verb is not None:
            paths.setdefault(getattr(rule, verb), []).append(verb.upper())
        for binding in rule.additional_bindings:
            add(binding)

    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        if file.package.startswith(API_PACKAGE):
            for service in file.service:
                for method in service.method:
                    if method.options.HasExtension(annotations_pb2.http):
                        add(method.options.Extensions[annotations_pb2.http])
    return {path: list(dict.fromkeys(verbs)) for path, verbs in paths.items()}


def path_regex(template: str) -> str:
    """The RE2 expression matching the paths of a google.api.http template: a variable is one path
    segment ({id}, {id=*}) or the rest of the path ({name=**})."""
    parts, end = [], 0
    for variable in re.finditer(r"\{[^}=]+(?:=([^}]*))?\}", template):
        parts.append(re.escape(template[end : variable.start()]))
        parts.append(".+" if "**" in (variable.group(1) or "") else "[^/]+")
        end = variable.end()
    parts.append(re.escape(template[end:]))
    return "^" + "".join(parts) + "$"


def _is_query_mapper(mapper: Any) -> bool:
    return "tweetmesh.local_reply.query" in json.dumps(mapper.get("filter", {}))


def _refuse_other_methods(listener: Any, paths: dict[str, list[str]], template: Path) -> None:
    """Replaces the route `method-not-allowed`, and the local reply mapper of a QUERY without a
    content type, with one per path template of the API, the ones with more fixed characters first
    (/v1/tweets/{id}:like before /v1/tweets/{id}, which matches it too)."""
    ordered = sorted(paths, key=lambda t: -len(re.sub(r"\{[^}]*\}", "", t)))
    for manager in _managers(listener, template):
        mappers = manager.get("local_reply_config", {}).get("mappers", [])
        found = [i for i, m in enumerate(mappers) if _is_query_mapper(m)]
        if found:
            copies = []
            for path in ordered:
                copied = copy.deepcopy(mappers[found[0]])
                filters = copied["filter"]["and_filter"]["filters"]
                filters[-1]["header_filter"]["header"]["string_match"]["safe_regex"]["regex"] = (
                    path_regex(path).removesuffix("$") + "(\\?.*)?$"
                )
                copied["headers_to_add"][0]["header"]["value"] = ", ".join(paths[path])
                copies.append(copied)
            manager["local_reply_config"]["mappers"] = mappers[: found[0]] + copies + mappers[found[0] + 1 :]
        for host in manager["route_config"]["virtual_hosts"]:
            routes = host.get("routes", [])
            found = [i for i, r in enumerate(routes) if r.get("name") == METHOD_NOT_ALLOWED]
            if not found:
                continue
            prototype = routes[found[0]]
            copies = []
            for path in ordered:
                copied = copy.deepcopy(prototype)
                copied["name"] = f"{METHOD_NOT_ALLOWED} {path}"
                copied["match"] = {"safe_regex": {"regex": path_regex(path)}}
                copied["response_headers_to_add"][0]["header"]["value"] = ", ".join(paths[path])
                copies.append(copied)
            host["routes"] = routes[: found[0]] + copies + routes[found[0] + 1 :]


def _http_paths(rule: http_pb2.HttpRule) -> tuple[str, ...]:
    verb = rule.WhichOneof("pattern")
    own = rule.custom.path if verb == "custom" else getattr(rule, verb or "get")
    return (own, *(path for extra in rule.additional_bindings for path in _http_paths(extra)))


def _http_path_match(template: str) -> dict[str, Any]:
    """An Envoy route match for a google.api.http path template: exact, or a regex where the
    template has {variables} (each one path segment); never a CORS preflight (OPTIONS), which has
    its own routes."""
    not_preflight = [{"name": ":method", "string_match": {"exact": "OPTIONS"}, "invert_match": True}]
    if "{" not in template:
        return {"path": template, "headers": not_preflight}
    return {"safe_regex": {"regex": path_regex(template)}, "headers": not_preflight}


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


def _set_address(socket_address: Any, port: int, host: str = LOOPBACK) -> None:
    socket_address["address"] = host
    socket_address["port_value"] = port


def _set_transcoders(node: Any, descriptor: str, services: list[str]) -> int:
    """Points every transcoder under `node` (a map with a `proto_descriptor`) at `descriptor` and the
    public `services`; returns how many it found."""
    found = 0
    if isinstance(node, dict):
        if "proto_descriptor" in node:
            node["proto_descriptor"] = descriptor
            node["services"] = list(services)
            return 1
        found += sum(_set_transcoders(value, descriptor, services) for value in node.values())
    elif isinstance(node, list):
        found += sum(_set_transcoders(item, descriptor, services) for item in node)
    return found


def _route_kind(route: Any) -> Any:
    return route.get("metadata", {}).get("filter_metadata", {}).get("tweetmesh", {}).get("kind")


def _managers(listener: Any, template: Path) -> list[Any]:
    """The HTTP connection managers of `listener` (their typed_config)."""
    return [
        manager["typed_config"]
        for chain in _at(listener, ("filter_chains",), template)
        for manager in chain.get("filters", [])
        if "route_config" in manager.get("typed_config", {})
    ]


def _route_public_rpcs(
    listener: Any, rpcs: list[PublicRpc], clusters: set[str], allowed: dict[str, list[str]], template: Path
) -> None:
    """Replaces each route of a kind with one exact-path route per public RPC of that kind, in every
    virtual host of `listener` that has them.

    The filters before the transcoder (the body limit) see an HTTP/JSON call's own path, not the
    RPC's: so a kind whose route carries settings for filters (`typed_per_filter_config`) also
    gets, per RPC, a route for each of its HTTP paths with the same settings. It never forwards
    anything: the transcoder turns such a call into the RPC's path first, and a call it does not
    transcode (a method the path does not take) gets 405 there, with the methods it takes
    (`allowed`: http_paths), as from the route `method-not-allowed`."""
    unrouted = {rpc.cluster for rpc in rpcs} - clusters
    if unrouted:
        raise DevstackError(
            f"public RPCs of tweetmesh.<{', '.join(sorted(unrouted))}> have no cluster in {template}"
        )
    hosts = [
        host for manager in _managers(listener, template) for host in manager["route_config"]["virtual_hosts"]
    ]
    rendered = 0
    for host in hosts:
        prototypes = {_route_kind(r): r for r in host.get("routes", []) if _route_kind(r) in ROUTE_KINDS}
        if not prototypes:
            continue
        if missing := {rpc.kind for rpc in rpcs} - set(prototypes):
            raise DevstackError(
                f"{template}: virtual host {host.get('name')!r} has no route of the kinds {sorted(missing)}"
            )
        routes = []
        for route in host["routes"]:
            kind = _route_kind(route)
            if kind not in ROUTE_KINDS:
                routes.append(route)
                continue
            if "path" not in route.get("match", {}) or "cluster" not in route.get("route", {}):
                raise DevstackError(f"{template}: route {kind!r} must match a path and route to a cluster")
            for rpc in (rpc for rpc in rpcs if rpc.kind == kind):
                copied = copy.deepcopy(route)
                copied["name"] = rpc.path.removeprefix("/")
                copied["match"]["path"] = rpc.path
                copied["route"]["cluster"] = rpc.cluster
                routes.append(copied)
                if "typed_per_filter_config" in route:
                    routes.extend(_http_twins(route, rpc, allowed))
        host["routes"] = routes
        rendered += 1
    if rendered == 0:
        raise DevstackError(f"{template}: no virtual host has routes of the kinds {', '.join(ROUTE_KINDS)}")


def _http_twins(route: Any, rpc: PublicRpc, allowed: dict[str, list[str]]) -> list[Any]:
    """Routes for `rpc`'s HTTP paths that carry `route`'s filter settings and answer 405."""
    twins = []
    for http_path in rpc.http_paths:
        twin = {key: copy.deepcopy(value) for key, value in route.items() if key not in ("route", "match")}
        twin["name"] = f"{rpc.path.removeprefix('/')} {http_path}"
        twin["match"] = _http_path_match(http_path)
        twin["direct_response"] = {
            "status": 405,
            "body": {"inline_string": "this path does not take that method"},
        }
        twin["response_headers_to_add"] = [
            {
                "header": {"key": "allow", "value": ", ".join(allowed[http_path])},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
        twins.append(twin)
    return twins


def _listener(config: Any, name: str, template: Path) -> Any:
    found = [x for x in _at(config, ("static_resources", "listeners"), template) if x.get("name") == name]
    if len(found) != 1:
        raise DevstackError(f"{template} must have exactly one listener named {name!r}")
    return found[0]


def _named_route(routes: list[Any], name: str, template: Path) -> int:
    found = [i for i, route in enumerate(routes) if route.get("name") == name]
    if len(found) != 1:
        raise DevstackError(f"{template} must have exactly one route named {name!r}")
    return found[0]


def _serve_web_client(host: Any, web: Path, limit: int, template: Path) -> None:
    """Replaces the route `web` with one per file of `web`, and "/" for index.html."""
    routes = host["routes"]
    at = _named_route(routes, WEB_ROUTE, template)
    files = sorted(f for f in web.rglob("*") if f.is_file())
    if (web / "index.html") not in files:
        raise DevstackError(f"the web client has no {web / 'index.html'}")
    made = []
    for path, file in [("/", web / "index.html")] + [("/" + f.relative_to(web).as_posix(), f) for f in files]:
        content_type = CONTENT_TYPES.get(file.suffix)
        if content_type is None:
            raise DevstackError(f"{file}: no content type for {file.suffix!r} files (see CONTENT_TYPES)")
        if file.stat().st_size > limit:
            raise DevstackError(f"{file} is larger than the {limit} bytes Envoy may serve from a route")
        route = copy.deepcopy(routes[at])
        route["name"] = f"{WEB_ROUTE}:{path}"
        route["match"]["path"] = path
        route["direct_response"]["body"]["filename"] = os.fspath(file.resolve())
        for added in route["response_headers_to_add"]:
            if added["header"]["key"] == "content-type":
                added["header"]["value"] = content_type
        made.append(route)
    routes[at : at + 1] = made


def _allow_origins(host: Any, origins: Sequence[str], template: Path) -> None:
    """The CORS policy's origins, and the preflight route repeated for each (dropped for none)."""
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise DevstackError(f"a CORS origin is scheme://host[:port] (no path, no '*'), got {origin!r}")
    policy = _at(host, ("typed_per_filter_config", _CORS), template)
    policy["allow_origin_string_match"] = [{"exact": origin} for origin in origins]
    routes = host["routes"]
    at = _named_route(routes, PREFLIGHT_ROUTE, template)
    made = []
    for origin in origins:
        route = copy.deepcopy(routes[at])
        route["name"] = f"{PREFLIGHT_ROUTE}:{origin}"
        asked_from = route["match"]["headers"][1]  # after the :method match
        asked_from["string_match"]["exact"] = origin
        for added in route["response_headers_to_add"]:
            if added["header"]["key"] == "access-control-allow-origin":
                added["header"]["value"] = origin
        made.append(route)
    routes[at : at + 1] = made


def _set_tls(listeners: list[Any], tls: TlsListener | None, template: Path) -> None:
    """Keeps the TLS listener with `tls`'s address and certificate, or drops it without one."""
    secure = next((x for x in listeners if x.get("name") == TLS_LISTENER), None)
    if secure is None:
        raise DevstackError(f"{template} must have exactly one listener named {TLS_LISTENER!r}")
    if tls is None:
        listeners.remove(secure)
        return
    _set_address(_at(secure, ("address", "socket_address"), template), tls.port, tls.host)
    (certificate,) = _at(secure, (*_TLS_CONTEXT, "tls_certificates"), template)
    certificate["certificate_chain"] = {"filename": os.fspath(tls.files.cert.resolve())}
    certificate["private_key"] = {"filename": os.fspath(tls.files.key.resolve())}


def _set_mesh_tls(cluster: Any, host: str, folder: Path | None, template: Path) -> None:
    """Keeps the service cluster's mutual TLS with the files of `folder` and `host` (what it dials)
    as the name the service's certificate must carry, or drops it without `folder`: plain h2c."""
    if "transport_socket" not in cluster:
        raise DevstackError(f"{template}: cluster {cluster['name']!r} has no transport_socket (mutual TLS)")
    if folder is None:
        del cluster["transport_socket"]
        return
    socket = copy.deepcopy(cluster["transport_socket"])  # one node for every cluster (a YAML alias)
    # Absolute, not resolved: a mounted Secret's files are links that a renewal points elsewhere.
    context = _at(socket, ("typed_config", "common_tls_context"), template)
    (certificate,) = _at(context, ("tls_certificates",), template)
    certificate["certificate_chain"] = {"filename": os.path.abspath(folder / CERTIFICATE)}
    certificate["private_key"] = {"filename": os.path.abspath(folder / PRIVATE_KEY)}
    validation = _at(context, ("validation_context",), template)
    validation["trusted_ca"] = {"filename": os.path.abspath(folder / TRUSTED_CAS)}
    try:
        ipaddress.ip_address(host)
        name = {"san_type": "IP_ADDRESS", "matcher": {"exact": host}}
    except ValueError:
        name = {"san_type": "DNS", "matcher": {"exact": host}}
        socket["typed_config"]["sni"] = host
    validation["match_typed_subject_alt_names"] = [name]
    cluster["transport_socket"] = socket


def _set_collector(
    config: Any, ingress: Any, cluster: Any, collector: tuple[str, int] | None, template: Path
) -> None:
    """Points the collector cluster at `collector`, or drops it and every manager's tracing."""
    if cluster is None:
        raise DevstackError(f"{template} has no cluster {COLLECTOR_CLUSTER!r} (for tracing)")
    if collector is not None:
        _set_address(_at(cluster, _ENDPOINT, template), collector[1], collector[0])
        return
    clusters = _at(config, ("static_resources", "clusters"), template)
    clusters.remove(cluster)
    for manager in _managers(ingress, template):
        manager.pop("tracing", None)


def otlp_collector(endpoint: str | None) -> tuple[str, int] | None:
    """(host, port) of an OTLP/gRPC endpoint URL such as http://collector:4317 (None: none)."""
    if not endpoint:
        return None
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parsed.hostname:
        raise DevstackError(f"{ENDPOINT_VARIABLE} {endpoint!r} names no host")
    return parsed.hostname, parsed.port or 4317


def _stop_enforcing_rate_limits(manager: Any) -> None:
    for http_filter in manager.get("http_filters", []):
        if http_filter.get("typed_config", {}).get("@type", "").endswith(_LOCAL_RATE_LIMIT):
            http_filter["typed_config"]["filter_enforced"] = {
                "default_value": {"numerator": 0, "denominator": "HUNDRED"}
            }


def render_envoy_config(
    template: Path,
    *,
    listen_port: int,
    admin_port: int,
    metrics_port: int,
    upstreams: Mapping[str, tuple[str, int]],
    descriptor: Path,
    listen_host: str = LOOPBACK,
    admin_host: str = LOOPBACK,
    metrics_host: str = LOOPBACK,
    xff_trusted_hops: int = 0,
    enforce_rate_limits: bool = True,
    tls: TlsListener | None = None,
    web: Path = WEB,
    cors_origins: Sequence[str] = (),
    otlp_collector: tuple[str, int] | None = None,
    mesh_tls: Path | None = None,
) -> str:
    """The template with our listener, admin and metrics addresses, cluster endpoints, descriptor
    path and the routes of the descriptor set's public RPCs (see the module's docstring), as YAML.

    `upstreams` maps each service cluster's name to (host, port) and must name exactly the
    template's service clusters, so a cluster added to the template cannot silently keep pointing
    at a default port. `xff_trusted_hops`: how many proxies in front of Envoy append the client's
    address to x-forwarded-for (0: clients connect to Envoy directly). `enforce_rate_limits=False`
    leaves the token buckets counting but refusing nothing (a test suite or benchmark driving the
    mesh from one address far past any client's limits). The TLS listener (the same filters and
    routes as the plain one) is kept, with `tls`'s address and certificate, only when `tls` is
    given. The web client's route is repeated for every file of `web`; browsers on `cors_origins`
    may call the API. With `otlp_collector` (host, port), Envoy traces every request and sends its
    spans there (OTLP/gRPC); without, the template's tracing and collector cluster are dropped.
    With `mesh_tls` (a folder of tls.crt, tls.key and ca.crt, checked here as meshkit.mtls checks
    a service's), Envoy speaks mutual TLS to every service cluster; without, plain h2c.
    """
    if mesh_tls is not None:
        try:
            load_mesh_tls(mesh_tls, serves=False)
        except MeshTlsError as error:
            raise DevstackError(f"Envoy's mesh TLS: {error}") from None
    config = yaml.safe_load(template.read_text())
    _set_address(_at(config, ("admin", "address", "socket_address"), template), admin_port, admin_host)
    metrics = _listener(config, METRICS_LISTENER, template)
    _set_address(_at(metrics, ("address", "socket_address"), template), metrics_port, metrics_host)
    ingress = _listener(config, LISTENER, template)
    _set_address(_at(ingress, ("address", "socket_address"), template), listen_port, listen_host)
    rpcs = public_rpcs(descriptor.read_bytes())
    services = list(dict.fromkeys(rpc.service for rpc in rpcs))
    if _set_transcoders(ingress, os.fspath(descriptor.resolve()), services) == 0:
        raise DevstackError(f"{template}: listener {LISTENER!r} has no proto_descriptor")

    clusters = {c["name"]: c for c in _at(config, ("static_resources", "clusters"), template)}
    _set_collector(config, ingress, clusters.pop(COLLECTOR_CLUSTER, None), otlp_collector, template)
    admin = clusters.pop(ADMIN_CLUSTER, None)
    if admin is None:
        raise DevstackError(
            f"{template} has no cluster {ADMIN_CLUSTER!r} (the admin API, for {METRICS_LISTENER!r})"
        )
    _set_address(_at(admin, _ENDPOINT, template), admin_port, LOOPBACK if admin_host in _ANY else admin_host)
    if set(clusters) != set(upstreams):
        raise DevstackError(
            f"{template} has service clusters {sorted(clusters)}; upstreams given: {sorted(upstreams)}"
        )
    for name, (host, port) in upstreams.items():
        _set_address(_at(clusters[name], _ENDPOINT, template), port, host)
        _set_mesh_tls(clusters[name], host, mesh_tls, template)
    allowed = http_paths(descriptor.read_bytes())
    _route_public_rpcs(ingress, rpcs, set(clusters), allowed, template)
    _refuse_other_methods(ingress, allowed, template)
    for manager in _managers(ingress, template):
        manager["xff_num_trusted_hops"] = xff_trusted_hops
        if not enforce_rate_limits:
            _stop_enforcing_rate_limits(manager)
        limit = int(manager["route_config"].get("max_direct_response_body_size_bytes", 4096))
        for host in manager["route_config"]["virtual_hosts"]:
            _serve_web_client(host, web, limit, template)
            _allow_origins(host, cors_origins, template)
    # The TLS listener shares the plain one's filters (a YAML alias): rendered above with them.
    _set_tls(_at(config, ("static_resources", "listeners"), template), tls, template)
    return yaml.dump(config, Dumper=_PlainDumper, sort_keys=False)


def _is_live(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{admin_port}/ready", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"LIVE")
    except (urllib.error.URLError, OSError):
        return False


def _argv(config_path: Path) -> list[str]:
    return [
        os.fspath(binaries.envoy()),
        "-c", os.fspath(config_path),
        "--log-level", "warn",
        # No hot restart means no shared-memory region keyed by a base id, so any number of
        # Envoys (parallel test runs, a `make run` next to the tests) can run on one machine.
        "--disable-hot-restart",
    ]  # fmt: skip


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
    process = ManagedProcess("envoy", _argv(config_path), log_path=log_path, cwd=config_path.parent)
    try:
        process.wait_until(lambda: _is_live(admin_port), timeout, "ready (admin /ready LIVE)")
    except BaseException:
        process.stop()
        raise
    return Server(process, f"http://{LOOPBACK}:{listen_port}")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _upstream(text: str) -> tuple[str, tuple[str, int]]:
    name, _, address = text.partition("=")
    return name, _address(address)


def _tls_listener(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsListener | None:
    host, port = args.tls_listen
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key) or args.tls_dir:
            parser.error("give --tls-cert with --tls-key, or --tls-dir alone")
        return TlsListener(TlsFiles(args.tls_cert, args.tls_key).check(), port, host)
    if args.tls_dir:
        files = TlsFiles(args.tls_dir / "tls.crt", args.tls_dir / "tls.key")
        if files.cert.exists() and files.key.exists():
            return TlsListener(files.check(), port, host)
        print(f"devstack.envoy: no tls.crt and tls.key in {args.tls_dir}: plain HTTP only", flush=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.envoy", description="Render envoy.yaml and run Envoy."
    )
    parser.add_argument(
        "--listen", type=_address, default=(LOOPBACK, 8080), help="HOST:PORT for HTTP and gRPC"
    )
    parser.add_argument(
        "--admin", type=_address, default=(LOOPBACK, 9901), help="HOST:PORT for the admin API (keep it local)"
    )
    parser.add_argument(
        "--metrics",
        type=_address,
        default=(LOOPBACK, 9902),
        help="HOST:PORT for GET /stats/prometheus and GET /ready",
    )
    parser.add_argument("--upstream", type=_upstream, action="append", default=[], help="CLUSTER=HOST:PORT")
    parser.add_argument(
        "--xff-trusted-hops",
        type=int,
        default=os.environ.get("XFF_TRUSTED_HOPS") or "0",  # a string default goes through `type` too
        help="proxies in front of Envoy that append the client's address to x-forwarded-for"
        " (default: $XFF_TRUSTED_HOPS, else 0)",
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--descriptor", type=Path, default=DESCRIPTOR)
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="an origin (scheme://host[:port]) whose pages may call the API; repeatable",
    )
    parser.add_argument(
        "--tls-listen", type=_address, default=(LOOPBACK, 8443), help="HOST:PORT for HTTPS and gRPC over TLS"
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        help="serve TLS if this folder holds tls.crt and tls.key (a Kubernetes TLS Secret mounted "
        "optional); without them, plain HTTP only",
    )
    parser.add_argument(
        "--mesh-tls-dir",
        type=Path,
        default=os.environ.get("GRPC_TLS_DIR") or None,
        help="speak mutual TLS to the services with this folder's tls.crt, tls.key and ca.crt"
        " (Envoy's certificate and the mesh's CA), as the services do with GRPC_TLS_DIR"
        " (default: $GRPC_TLS_DIR; unset: plain)",
    )
    args = parser.parse_args()
    try:
        config = render_envoy_config(
            args.template,
            listen_port=args.listen[1],
            listen_host=args.listen[0],
            admin_port=args.admin[1],
            admin_host=args.admin[0],
            metrics_port=args.metrics[1],
            metrics_host=args.metrics[0],
            upstreams=dict(args.upstream),
            descriptor=args.descriptor,
            xff_trusted_hops=args.xff_trusted_hops,
            tls=_tls_listener(parser, args),
            cors_origins=args.cors_origin,
            otlp_collector=otlp_collector(os.environ.get(ENDPOINT_VARIABLE)),
            mesh_tls=args.mesh_tls_dir,
        )
    except DevstackError as error:  # a wrong setup, said in one line
        sys.exit(f"devstack.envoy: {error}")
    config_path = Path(tempfile.mkdtemp(prefix="tweetmesh-envoy-")) / "envoy.yaml"
    config_path.write_text(config)
    argv = _argv(config_path)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
