"""Envoy for development, tests and containers: renders envoy/envoy.yaml with our addresses, runs it.

In a container: `python -m devstack.envoy --listen 0.0.0.0:8080 --admin 0.0.0.0:9901
--upstream users=users:50051 --upstream tweets=tweets:50052 --upstream timeline=timeline:50054`
renders the config and replaces itself with Envoy (see docker-compose.yml). With a certificate
(`--tls-cert` and `--tls-key`, or `--tls-dir` holding tls.crt and tls.key) it also serves HTTPS and
gRPC over TLS on `--tls-listen`.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack import binaries
from devstack.errors import DevstackError
from devstack.process import ManagedProcess, Server
from devstack.tls import TlsFiles

LISTENER = "ingress"
TLS_LISTENER = "ingress_tls"
LOOPBACK = "127.0.0.1"
_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = _ROOT / "envoy" / "envoy.yaml"
DESCRIPTOR = _ROOT / "gen" / "tweetmesh.pb"
WEB = _ROOT / "web"
WEB_ROUTE = "web"
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
_ENDPOINT = ("load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")
_TLS_CONTEXT = ("filter_chains", 0, "transport_socket", "typed_config", "common_tls_context")
_ROUTE_CONFIG = ("filter_chains", 0, "filters", 0, "typed_config", "route_config")
_CORS = "envoy.filters.http.cors"


@dataclass(frozen=True, slots=True)
class TlsListener:
    """Where Envoy serves TLS, and with which certificate."""

    files: TlsFiles
    port: int
    host: str = LOOPBACK


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
    listen_host: str = LOOPBACK,
    admin_host: str = LOOPBACK,
    tls: TlsListener | None = None,
    web: Path = WEB,
    cors_origins: Sequence[str] = (),
) -> str:
    """The template with our admin and listener ports, cluster endpoints and descriptor path, as YAML.

    `upstreams` maps each cluster name to (host, port) and must name exactly the template's clusters,
    so a cluster added to the template cannot silently keep pointing at a default port. The TLS
    listener is kept, with `tls`'s address and certificate, only when `tls` is given. The web
    client's route is repeated for every file of `web`; browsers on `cors_origins` may call the API.
    """
    config = yaml.safe_load(template.read_text())
    _set_address(_at(config, ("admin", "address", "socket_address"), template), admin_port, admin_host)

    listeners = _at(config, ("static_resources", "listeners"), template)
    ingress = _listener(listeners, LISTENER, template)
    _set_address(_at(ingress, ("address", "socket_address"), template), listen_port, listen_host)
    route_config = _at(ingress, _ROUTE_CONFIG, template)
    (virtual_host,) = _at(route_config, ("virtual_hosts",), template)
    _set_web_routes(_at(virtual_host, ("routes",), template), web, route_config, template)
    _set_cors_origins(virtual_host, cors_origins, template)
    secure = _listener(listeners, TLS_LISTENER, template)
    if tls is None:
        listeners.remove(secure)
    else:
        _set_address(_at(secure, ("address", "socket_address"), template), tls.port, tls.host)
        (certificate,) = _at(secure, (*_TLS_CONTEXT, "tls_certificates"), template)
        certificate["certificate_chain"] = {"filename": os.fspath(tls.files.cert.resolve())}
        certificate["private_key"] = {"filename": os.fspath(tls.files.key.resolve())}
    for listener in listeners:
        if _set_descriptors(listener, os.fspath(descriptor.resolve())) == 0:
            raise DevstackError(f"{template}: listener {listener.get('name')!r} has no proto_descriptor")

    clusters = {c["name"]: c for c in _at(config, ("static_resources", "clusters"), template)}
    if set(clusters) != set(upstreams):
        raise DevstackError(
            f"{template} has clusters {sorted(clusters)}; upstreams given: {sorted(upstreams)}"
        )
    for name, (host, port) in upstreams.items():
        _set_address(_at(clusters[name], _ENDPOINT, template), port, host)
    return yaml.dump(config, Dumper=_PlainDumper, sort_keys=False)


def _set_web_routes(routes: list[Any], web: Path, route_config: Any, template: Path) -> None:
    """Replaces the template's `web` route with one per file of `web` (and "/" for index.html)."""
    found = [i for i, route in enumerate(routes) if route.get("name") == WEB_ROUTE]
    if len(found) != 1:
        raise DevstackError(f"{template} must have exactly one route named {WEB_ROUTE!r}")
    model = routes[found[0]]
    limit = int(route_config.get("max_direct_response_body_size_bytes", 4096))
    files = sorted(f for f in web.rglob("*") if f.is_file())
    if (web / "index.html") not in files:
        raise DevstackError(f"the web client has no {web / 'index.html'}")
    served = [("/", web / "index.html")] + [("/" + f.relative_to(web).as_posix(), f) for f in files]
    made = []
    for path, file in served:
        content_type = CONTENT_TYPES.get(file.suffix)
        if content_type is None:
            raise DevstackError(f"{file}: no content type for {file.suffix!r} files (see CONTENT_TYPES)")
        if file.stat().st_size > limit:
            raise DevstackError(f"{file} is larger than the {limit} bytes Envoy may serve from a route")
        route = copy.deepcopy(model)
        route["name"] = f"{WEB_ROUTE}:{path}"
        _at(route, ("match",), template)["path"] = path
        _at(route, ("direct_response", "body"), template)["filename"] = os.fspath(file.resolve())
        for added in _at(route, ("response_headers_to_add",), template):
            if added["header"]["key"] == "content-type":
                added["header"]["value"] = content_type
        made.append(route)
    routes[found[0] : found[0] + 1] = made


def _set_cors_origins(virtual_host: Any, origins: Sequence[str], template: Path) -> None:
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise DevstackError(f"a CORS origin is scheme://host[:port] (no path, no '*'), got {origin!r}")
    policy = _at(virtual_host, ("typed_per_filter_config", _CORS), template)
    policy["allow_origin_string_match"] = [{"exact": origin} for origin in origins]


def _listener(listeners: list[Any], name: str, template: Path) -> Any:
    found = [listener for listener in listeners if listener.get("name") == name]
    if len(found) != 1:
        raise DevstackError(f"{template} must have exactly one listener named {name!r}")
    return found[0]


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
        "--admin", type=_address, default=(LOOPBACK, 9901), help="HOST:PORT for the admin API"
    )
    parser.add_argument("--upstream", type=_upstream, action="append", default=[], help="CLUSTER=HOST:PORT")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--descriptor", type=Path, default=DESCRIPTOR)
    parser.add_argument(
        "--tls-listen", type=_address, default=(LOOPBACK, 8443), help="HOST:PORT for HTTPS and gRPC over TLS"
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="an origin (scheme://host[:port]) whose pages may call the API; repeatable",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        help="serve TLS if this folder holds tls.crt and tls.key (a Kubernetes TLS Secret mounted "
        "optional); without them, plain HTTP only",
    )
    args = parser.parse_args()
    config = render_envoy_config(
        args.template,
        listen_port=args.listen[1],
        listen_host=args.listen[0],
        admin_port=args.admin[1],
        admin_host=args.admin[0],
        upstreams=dict(args.upstream),
        descriptor=args.descriptor,
        tls=_tls_listener(parser, args),
        cors_origins=args.cors_origin,
    )
    config_path = Path(tempfile.mkdtemp(prefix="tweetmesh-envoy-")) / "envoy.yaml"
    config_path.write_text(config)
    argv = _argv(config_path)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
