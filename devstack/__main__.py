"""python -m devstack (what `make run` runs): the whole mesh on this machine until Ctrl-C.

Environment:
  TWEETMESH_DATA_DIR   where the embedded PostgreSQL and Redis keep their files (default: <repo>/.data)
  TWEETMESH_REPLICAS   how many processes of each service to run (default 1, at most 8): replica n
                       of a service listens on its ports + 100 * (n - 1) (USERS_PORT, USERS_METRICS_PORT...),
                       Envoy balances over every replica, and so do the services calling each other
  DATABASE_URL         use this PostgreSQL instead of starting one
  POSTGRES_REPLICA=1   also start a streaming replica of the embedded PostgreSQL (a fresh
                       pg_basebackup at each start, in <data dir>/postgres-replica) and send the
                       services' lag-tolerant reads to it (DATABASE_READ_URL; README, "Read replica")
  REDIS_URL            use this Redis instead of starting one
  REDIS_CLUSTER=1      a Redis Cluster: without REDIS_URL, start a local one (three masters with a
                       replica each, on REDIS_CLUSTER_PORT and the next five ports, their cluster
                       bus on those + 10000, in <data dir>/redis-cluster-<port>, kept in memory
                       only); with REDIS_URL, that URL names a node of your cluster. Either way
                       every service uses the cluster client (README, "Redis Cluster")
  SMTP_URL             send mail there instead of starting the local SMTP server, which keeps each
                       mail as a file in <data dir>/mail (its path is printed)
  ENVOY_PORT           Envoy HTTP/JSON and gRPC (default 8080)
  ENVOY_ADMIN_PORT     Envoy admin (default 9901)
  ENVOY_METRICS_PORT   Envoy's /stats/prometheus and /ready (default 9902)
  ENVOY_TLS_PORT       Envoy HTTPS and gRPC over TLS, when there is a certificate (default 8443)
  TLS_CERT_FILE, TLS_KEY_FILE
                       serve TLS with this PEM certificate chain and private key
  TLS_SELF_SIGNED=1    serve TLS with a self-signed certificate for localhost/127.0.0.1, made once
                       and kept in <data dir>/tls (clients trust <data dir>/tls/tls.crt)
  MESH_TLS=1           mutual TLS between Envoy and the services and among the services, with a
                       private CA and a certificate per service, for Envoy and for a client, made
                       once and kept in <data dir>/mesh-tls (grpcurl a service with mesh-tls/client)
  CORS_ALLOWED_ORIGINS comma-separated origins (scheme://host[:port]) whose pages may call the API
                       (default none: the web client at / is same-origin)
  USERS_PORT, TWEETS_PORT, FANOUT_PORT, TIMELINE_PORT, MEDIA_PORT, NOTIFICATIONS_PORT
                       the services' gRPC ports (defaults 50051, 50052, 50053, 50054, 50055, 50056)
  USERS_METRICS_PORT, TWEETS_METRICS_PORT, FANOUT_METRICS_PORT, TIMELINE_METRICS_PORT, MEDIA_METRICS_PORT,
  NOTIFICATIONS_METRICS_PORT
                       the services' Prometheus /metrics (defaults 9101, 9102, 9103, 9104, 9105, 9106)
  MEDIA_S3_URL         keep uploaded media in S3-compatible object storage instead of <data dir>/media
  POSTGRES_PORT        the embedded PostgreSQL (default 55432)
  POSTGRES_REPLICA_PORT
                       its read replica, with POSTGRES_REPLICA=1 (default 55433)
  REDIS_PORT           the embedded Redis (default 56379)
  REDIS_CLUSTER_PORT   the first node of the local Redis Cluster, with REDIS_CLUSTER=1 (default 7000)
  SMTP_PORT            the local SMTP server (default 2525)
Everything listens on 127.0.0.1. The services' JSON logs go to stdout. Once all is up it prints
every endpoint and then the line `tweetmesh is ready`; from then on a service that exits is started
again after 1 s, 2 s, 4 s... (up to 30 s), and given up on after 5 crashes within 5 minutes, each
said on stderr with the reason. SIGINT or SIGTERM stops it all, in order.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from types import FrameType

from devstack.errors import DevstackError
from devstack.mesh import CLIENT, MAX_REPLICAS, MESH_TLS_MEMBERS, ROOT, Mesh, MeshPorts, replica_label
from devstack.tls import mesh_tls_from_env, tls_from_env

READY_LINE = "tweetmesh is ready"
SUPERVISE_SECONDS = 0.5


class _StopRequested(Exception):
    """Raised from the signal handler to leave start() or the wait, whichever is running."""


def ports_from_env(env: Mapping[str, str]) -> MeshPorts:
    """MeshPorts with each <NAME>_PORT variable that is set (ENVOY_ADMIN_PORT for envoy_admin...)."""
    chosen: dict[str, int] = {}
    for field in fields(MeshPorts):
        variable = f"{field.name.upper()}_PORT"
        raw = env.get(variable)
        if raw:
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise DevstackError(f"{variable} must be a port number, got {raw!r}")
            chosen[field.name] = int(raw)
    return MeshPorts(**chosen)


def replicas_from_env(env: Mapping[str, str]) -> int:
    """TWEETMESH_REPLICAS: processes of each service (1 when unset)."""
    raw = env.get("TWEETMESH_REPLICAS") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
        raise DevstackError(f"TWEETMESH_REPLICAS must be a number from 1 to {MAX_REPLICAS}, got {raw!r}")
    return int(raw)


def cors_origins_from_env(env: Mapping[str, str]) -> list[str]:
    """The origins of CORS_ALLOWED_ORIGINS (comma-separated; spaces ignored)."""
    return [origin.strip() for origin in env.get("CORS_ALLOWED_ORIGINS", "").split(",") if origin.strip()]


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Once: a second Ctrl-C while stopping must not cut the orderly stop short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _StopRequested(signal.Signals(signum).name)


def _endpoints(mesh: Mesh) -> list[tuple[str, str]]:
    ports = mesh.ports
    processes = mesh.processes()
    secure = []
    if mesh.tls is not None:
        secure = [
            ("Envoy HTTPS and gRPC over TLS", f"https://localhost:{ports.envoy_tls}"),
            ("TLS certificate", str(mesh.tls.cert)),
        ]
    if mesh.mesh_tls is not None:
        secure.append(("mesh mTLS: CA and certificates", str(mesh.mesh_tls)))
        secure.append(("mesh mTLS: a client's certificate", str(mesh.mesh_tls / CLIENT)))
    return [
        ("web client", f"http://127.0.0.1:{ports.envoy}/"),
        ("Envoy HTTP/JSON and gRPC", f"http://127.0.0.1:{ports.envoy}"),
        *secure,
        ("Envoy admin", f"http://127.0.0.1:{ports.envoy_admin}"),
        ("Envoy metrics", f"http://127.0.0.1:{ports.envoy_metrics}/stats/prometheus"),
        *[(f"{replica_label(n)} gRPC", f"127.0.0.1:{ports.replica(n)[0]}") for n in processes],
        *[
            (f"{replica_label(n)} metrics", f"http://127.0.0.1:{ports.replica(n)[1]}/metrics")
            for n in processes
        ],
        ("PostgreSQL", mesh.database_url),
        *([("PostgreSQL read replica", mesh.read_replica_url)] if mesh.read_replica_url else []),
        ("Redis Cluster" if mesh.redis_cluster else "Redis", mesh.redis_url),
        *[("Redis Cluster master", url) for url in mesh.redis_node_urls[1:]],
        ("SMTP", mesh.smtp_url),
        ("media kept in", mesh.media_store),
        *([("mails kept in", str(mesh.mail_dir))] if mesh.mail_dir is not None else []),
        ("data dir", str(mesh.data_dir)),
    ]


def main() -> int:
    try:
        data_dir = Path(os.environ.get("TWEETMESH_DATA_DIR") or ROOT / ".data")
        mesh = Mesh(
            data_dir,
            ports=ports_from_env(os.environ),
            durable=True,
            tls=tls_from_env(os.environ, data_dir),
            mesh_tls=mesh_tls_from_env(os.environ, data_dir, MESH_TLS_MEMBERS),
            cors_origins=[
                o for o in os.environ.get("CORS_ALLOWED_ORIGINS", "").replace(" ", "").split(",") if o
            ],
            replicas=replicas_from_env(os.environ),
            pg_replica=os.environ.get("POSTGRES_REPLICA", "") not in ("", "0"),
            redis_cluster=os.environ.get("REDIS_CLUSTER", "") not in ("", "0"),
        )
    except DevstackError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        mesh.start()
        print("tweetmesh endpoints:")
        width = max(len(label) for label, _ in _endpoints(mesh))
        for label, where in _endpoints(mesh):
            print(f"  {label:<{width}}  {where}")
        print(READY_LINE, flush=True)
        while True:  # a service that crashes from now on is restarted (Mesh.supervise)
            for event in mesh.supervise():
                print(f"devstack: {event}", file=sys.stderr, flush=True)
            time.sleep(SUPERVISE_SECONDS)
    except _StopRequested as stop:
        print(f"devstack: {stop}, stopping", file=sys.stderr, flush=True)
        return 0
    except DevstackError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    finally:
        mesh.stop()  # idempotent; also covers start()'s own failures and unexpected errors


if __name__ == "__main__":
    sys.exit(main())
