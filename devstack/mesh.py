"""The whole mesh on this machine: PostgreSQL, Redis, a local SMTP server, migrations, the six
services (one or more replicas of each) and Envoy.

Used by `make run` (devstack/__main__.py) and by the test suite's fixtures.

Replicas: with `replicas=N`, each service runs as N processes, named `<service>` (the first) and
`<service>-2` ... `<service>-N`. Replica n listens on the service's gRPC and metrics ports plus
REPLICA_PORT_STEP * (n - 1); Envoy's cluster of the service lists every replica, and the services
reach their peers through a gRPC target naming every replica (`ipv4:host:port,host:port`,
balanced round robin). Each process is its own consumer in the event streams' groups (its name
is host-pid: meshkit.settings.read_consumer_name).
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType

import grpc

from devstack.envoy import (
    DESCRIPTOR,
    TEMPLATE,
    TlsListener,
    otlp_collector,
    render_envoy_config,
    start_envoy,
)
from devstack.errors import DevstackError, StartupError
from devstack.postgres import start_postgres, start_replica
from devstack.process import ManagedProcess, RestartPolicy, Server
from devstack.redis import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_NODES,
    RedisClusterServers,
    start_redis,
    start_redis_cluster,
)
from devstack.smtp import start_smtp
from devstack.tls import TlsFiles
from meshkit.healthcheck import health_status
from meshkit.mtls import load_mesh_tls
from meshkit.runtime import DUMP_STACKS_SIGNAL
from meshkit.tracing import ENDPOINT_VARIABLE
from social.services import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent
SERVICES = (
    "users",
    "tweets",
    "fanout",
    "notifications",
    "timeline",
    "media",
)  # start order; stop is the reverse
PUBLIC_SERVICES = ("users", "tweets", "notifications", "timeline", "media")  # the Envoy clusters
# With mutual TLS, the members of the mesh besides the services that get a certificate: Envoy, and
# a client for whoever calls a service directly (the mesh's health checks, an operator's grpcurl).
ENVOY, CLIENT = "envoy", "client"
MESH_TLS_MEMBERS = (*SERVICES, ENVOY, CLIENT)
HOST = "127.0.0.1"
# Replica n of a service listens on its ports + REPLICA_PORT_STEP * (n - 1); with the default ports,
# MAX_REPLICAS keeps the services' metrics ports (9101...) below Envoy's admin port (9901).
REPLICA_PORT_STEP = 100
MAX_REPLICAS = 8
# Retry a not-yet-listening service quickly instead of gRPC's default backoff (1 s, growing).
_FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 250)]


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000


def free_port(held: ExitStack | None = None, replicas: int = 1) -> int:
    """A port free right now below the ephemeral range (kept bound in `held` until it closes), and
    with `replicas`, the ports of the other replicas too (REPLICA_PORT_STEP apart)."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768  # Linux's default
    highest = ephemeral_low - REPLICA_PORT_STEP * (replicas - 1)
    for _ in range(1_000):
        port = secrets.randbelow(highest - _LOWEST_PORT) + _LOWEST_PORT
        with ExitStack() as trying:
            try:
                for n in range(replicas):
                    sock = trying.enter_context(socket.socket())
                    sock.bind((HOST, port + REPLICA_PORT_STEP * n))
            except OSError:
                continue
            if held is not None:
                held.enter_context(trying.pop_all())
        return port
    raise DevstackError(f"no free port between {_LOWEST_PORT} and {highest}")


def free_cluster_port(held: ExitStack | None = None) -> int:
    """The first of CLUSTER_NODES consecutive ports free right now, with their cluster bus ports
    (+ 10000), all below the ephemeral range (kept bound in `held` until it closes)."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    highest = ephemeral_low - CLUSTER_BUS_OFFSET - CLUSTER_NODES
    for _ in range(1_000):
        port = secrets.randbelow(highest - _LOWEST_PORT) + _LOWEST_PORT
        with ExitStack() as trying:
            try:
                for n in range(CLUSTER_NODES):
                    for p in (port + n, port + n + CLUSTER_BUS_OFFSET):
                        trying.enter_context(socket.socket()).bind((HOST, p))
            except OSError:
                continue
            if held is not None:
                held.enter_context(trying.pop_all())
        return port
    raise DevstackError(f"no {CLUSTER_NODES} free ports (and their cluster bus ports) below {highest}")


@dataclass(frozen=True, slots=True)
class MeshPorts:
    """Where everything listens, all on 127.0.0.1."""

    envoy: int = 8080
    envoy_admin: int = 9901
    envoy_metrics: int = 9902  # Envoy's /stats/prometheus and /ready (its admin API stays local)
    envoy_tls: int = 8443  # HTTPS and gRPC over TLS, when the mesh has a certificate
    users: int = DEFAULT_PORTS["users"].grpc
    tweets: int = DEFAULT_PORTS["tweets"].grpc
    fanout: int = DEFAULT_PORTS["fanout"].grpc
    timeline: int = DEFAULT_PORTS["timeline"].grpc
    media: int = DEFAULT_PORTS["media"].grpc
    notifications: int = DEFAULT_PORTS["notifications"].grpc
    # Each service's Prometheus /metrics (METRICS_PORT).
    users_metrics: int = DEFAULT_PORTS["users"].metrics
    tweets_metrics: int = DEFAULT_PORTS["tweets"].metrics
    fanout_metrics: int = DEFAULT_PORTS["fanout"].metrics
    timeline_metrics: int = DEFAULT_PORTS["timeline"].metrics
    media_metrics: int = DEFAULT_PORTS["media"].metrics
    notifications_metrics: int = DEFAULT_PORTS["notifications"].metrics
    postgres: int = 55432
    # The embedded PostgreSQL's streaming replica, when the mesh runs one (pg_replica).
    postgres_replica: int = 55433
    redis: int = 56379
    # The first node of the local Redis Cluster (redis_cluster), the others on the next ports; each
    # node's cluster bus is on its port + 10000.
    redis_cluster: int = 7000
    # The local SMTP server that keeps mails as files (devstack.smtp).
    smtp: int = 2525

    @classmethod
    def free(cls, replicas: int = 1) -> MeshPorts:
        """Ports free right now, all different, below the kernel's ephemeral range (with the ports
        of `replicas` replicas of each, REPLICA_PORT_STEP apart).

        A port the kernel hands out for `bind(0)` comes from the range it also gives outgoing
        connections: between choosing it and the server binding it, any connection (to PostgreSQL,
        Redis, a peer) may take it as its local port, and the server fails with "Address already
        in use". Ports below that range are only ever taken by a bind.
        """
        with ExitStack() as stack:
            ports = [
                free_cluster_port(stack) if f.name == "redis_cluster" else free_port(stack, replicas)
                for f in fields(cls)
            ]
            return cls(*ports)

    def of(self, name: str) -> int:
        """The port of a service or server by name ("users", "postgres", ...)."""
        if name not in {f.name for f in fields(self)}:
            raise ValueError(f"unknown port {name!r}")
        return int(getattr(self, name))

    def replica(self, name: str) -> tuple[int, int]:
        """The gRPC and metrics ports of a service's replica by name ("users", "users-2", ...)."""
        service, n = replica_of(name)
        shift = REPLICA_PORT_STEP * (n - 1)
        return self.of(service) + shift, self.of(f"{service}_metrics") + shift


def replica_names(service: str, replicas: int) -> list[str]:
    """The names of a service's replicas: `users`, `users-2`, ..."""
    return [service if n == 1 else f"{service}-{n}" for n in range(1, replicas + 1)]


def replica_of(name: str) -> tuple[str, int]:
    """The service and replica number (from 1) of a replica's name."""
    service, dash, number = name.partition("-")
    if service not in SERVICES or (dash and not (number.isdigit() and int(number) >= 2)):
        raise ValueError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)} (or <service>-N)")
    return service, int(number or 1)


def replica_label(name: str) -> str:
    """How the console names a service's process: `users_svc`, `users_svc replica 2`."""
    service, n = replica_of(name)
    return f"{service}_svc" if n == 1 else f"{service}_svc replica {n}"


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


@dataclass
class _Restarts:
    """What supervise() knows of one service."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    due: float | None = None  # when to start it again (monotonic time)
    waiting: bool = False  # started again, not SERVING yet


class _FromEnvironment(enum.Enum):
    FROM_ENVIRONMENT = "os.environ"


FROM_ENVIRONMENT = _FromEnvironment.FROM_ENVIRONMENT


def _from_environment(value: str | _FromEnvironment | None, variable: str) -> str | None:
    if value is FROM_ENVIRONMENT:
        return os.environ.get(variable) or None
    return value


def _stop_timeout(env: Mapping[str, str]) -> float:
    """A service gets GRACE_SECONDS for in-flight calls after SIGTERM; give it that and a margin."""
    try:
        return float(env.get("GRACE_SECONDS") or 10.0) + 5.0
    except ValueError:
        return 15.0


class Mesh:
    """Brings the mesh up and down in order; every process it starts, it stops.

    `database_url` / `redis_url` / `smtp_url` default to $DATABASE_URL / $REDIS_URL / $SMTP_URL;
    when those are empty (or None is passed) a private server is started in `data_dir`. With
    `pg_replica` (and the embedded PostgreSQL), a streaming replica of it serves the services'
    lag-tolerant reads (DATABASE_READ_URL; start_read_replica). With
    `log_to_files`, each process writes to `data_dir`/logs/<name>.log; otherwise output goes to
    this process's terminal.
    `enforce_edge_limits=False` turns off the refusals of Envoy's token buckets (see
    devstack.envoy.render_envoy_config), for test suites and benchmarks. With `tls`, Envoy also
    serves HTTPS and gRPC over TLS on `ports.envoy_tls` with that certificate; browsers on
    `cors_origins` may call the API from their pages. `replicas` processes of each service run
    (see the module's docstring); the methods that take a service's name take a replica's too
    (`kill_service("fanout-2")`), and the service's name alone means its first replica. With
    `mesh_tls` (devstack.tls.mesh_certificates: a folder per member), Envoy and the services speak
    mutual TLS to each other: each service's replicas get its folder as GRPC_TLS_DIR, Envoy the
    folder `envoy`, and the mesh's own health checks present the certificate of `client`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        ports: MeshPorts | None = None,
        durable: bool = True,
        log_to_files: bool = False,
        env_overrides: Mapping[str, str] | None = None,
        database_url: str | _FromEnvironment | None = FROM_ENVIRONMENT,
        redis_url: str | _FromEnvironment | None = FROM_ENVIRONMENT,
        smtp_url: str | _FromEnvironment | None = FROM_ENVIRONMENT,
        ready_timeout: float = 30.0,
        enforce_edge_limits: bool = True,
        tls: TlsFiles | None = None,
        cors_origins: Sequence[str] = (),
        replicas: int = 1,
        mesh_tls: Path | None = None,
        pg_replica: bool = False,
        redis_cluster: bool = False,
    ) -> None:
        if not 1 <= replicas <= MAX_REPLICAS:
            raise DevstackError(f"replicas must be between 1 and {MAX_REPLICAS}, got {replicas}")
        self._replicas = replicas
        self._data_dir = data_dir.resolve()
        self._ports = ports or MeshPorts()
        self._durable = durable
        self._log_to_files = log_to_files
        self._env_overrides = dict(env_overrides or {})
        self._external_database_url = _from_environment(database_url, "DATABASE_URL")
        self._external_redis_url = _from_environment(redis_url, "REDIS_URL")
        self._external_smtp_url = _from_environment(smtp_url, "SMTP_URL")
        self._ready_timeout = ready_timeout
        self._enforce_edge_limits = enforce_edge_limits
        self._tls = tls
        self._cors_origins = tuple(cors_origins)
        self._mesh_tls = mesh_tls
        if pg_replica and self._external_database_url:
            raise DevstackError(
                "a read replica is started only for the embedded PostgreSQL; with DATABASE_URL, set"
                " DATABASE_READ_URL to your replica instead"
            )
        self._pg_replica = pg_replica
        # A local Redis Cluster instead of one Redis (unless redis_url names one: then it is the
        # cluster's node, and the services are told it is a cluster).
        self._redis_cluster = redis_cluster
        self._cluster: RedisClusterServers | None = None
        self._postgres: Server | None = None
        self._replica: Server | None = None
        self._redis: Server | None = None
        self._smtp: Server | None = None
        self._mail_folder = self._data_dir / "mail"
        self._media_folder = self._data_dir / "media"
        self._envoy: Server | None = None
        self._services: dict[str, ManagedProcess] = {}
        self._service_envs: dict[str, dict[str, str]] = {}
        self._restarts = {name: _Restarts() for name in self.processes()}
        self._reported: set[int] = set()  # pids of servers whose exit supervise() has told

    # ----- what callers read

    @property
    def ports(self) -> MeshPorts:
        return self._ports

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def replicas(self) -> int:
        """How many processes of each service run."""
        return self._replicas

    def replica_names(self, service: str) -> list[str]:
        """The names of `service`'s replicas in this mesh: `users`, `users-2`, ..."""
        replica_of(service)
        return replica_names(service, self._replicas)

    def processes(self) -> list[str]:
        """The names of every service's replicas, in start order."""
        return [name for service in SERVICES for name in replica_names(service, self._replicas)]

    @property
    def tls(self) -> TlsFiles | None:
        """The certificate Envoy's TLS listener serves, if it has one."""
        return self._tls

    @property
    def mesh_tls(self) -> Path | None:
        """The folder of the mesh's CA and its members' certificates, when they speak mutual TLS."""
        return self._mesh_tls

    @property
    def database_url(self) -> str:
        if self._external_database_url:
            return self._external_database_url
        if self._postgres is None:
            raise DevstackError("PostgreSQL is not running: call start() first")
        return self._postgres.url

    @property
    def read_replica_url(self) -> str | None:
        """The running read replica's URL (the services' DATABASE_READ_URL), if there is one."""
        return self._replica.url if self._replica is not None else None

    @property
    def redis_cluster(self) -> bool:
        """Whether the services use a Redis Cluster (REDIS_CLUSTER=1)."""
        return self._redis_cluster

    @property
    def redis_node_urls(self) -> list[str]:
        """The URL of each master of the local Redis Cluster (of the one Redis otherwise)."""
        if self._cluster is not None:
            return [m.url for m in self._cluster.masters]
        return [self.redis_url]

    @property
    def redis_url(self) -> str:
        if self._external_redis_url:
            return self._external_redis_url
        if self._redis is None:
            raise DevstackError("Redis is not running: call start() first")
        return self._redis.url

    @property
    def smtp_url(self) -> str:
        if self._external_smtp_url:
            return self._external_smtp_url
        if self._smtp is None:
            raise DevstackError("the SMTP server is not running: call start() first")
        return self._smtp.url

    @property
    def media_store(self) -> str:
        """Where media_svc keeps uploads: the object storage MEDIA_S3_URL names, or its folder."""
        return (
            self._env_overrides.get("MEDIA_S3_URL")
            or os.environ.get("MEDIA_S3_URL")
            or str(self._media_folder)
        )

    @property
    def mail_dir(self) -> Path | None:
        """Where the local SMTP server keeps each mail (devstack.smtp.read_mails); None with SMTP_URL."""
        return None if self._external_smtp_url else self._mail_folder

    def pid(self, name: str) -> int:
        """The pid of a running process: a service's (or replica's) name, "postgres",
        "postgres-replica", "redis", "smtp" or "envoy"."""
        servers = {
            "postgres": self._postgres,
            "postgres-replica": self._replica,
            "redis": self._redis,
            "smtp": self._smtp,
            "envoy": self._envoy,
        }
        server = servers.get(name)
        process = server.process if server is not None else self._services.get(name)
        if process is None or not process.alive():
            raise DevstackError(f"{name} is not running")
        return process.pid

    def casualties(self) -> list[str]:
        """Each started process that has exited since, with its exit code and the end of its log."""
        servers = [s.process for s in self._servers()]
        return [str(p.failure("has exited")) for p in [*servers, *self._services.values()] if not p.alive()]

    def _servers(self) -> list[Server]:
        """The servers started for the services (PostgreSQL, its replica, Redis, SMTP, Envoy)."""
        servers = (self._postgres, self._replica, self._redis, self._smtp, self._envoy)
        cluster = self._cluster.nodes[1:] if self._cluster is not None else []
        return [s for s in servers if s is not None] + cluster

    def service_env(self, name: str, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment the service (or replica) `name` runs with: ours, the mesh's addresses,
        env_overrides, then `extra_env`."""
        if name not in self.processes():
            raise ValueError(f"unknown service {name!r}; expected one of {', '.join(self.processes())}")
        grpc_port, metrics_port = self._ports.replica(name)
        own = {"GRPC_PORT": str(grpc_port), "METRICS_PORT": str(metrics_port)}
        # The mesh decides, not a GRPC_TLS_DIR of the caller's environment: its health checks and
        # Envoy must speak what the services speak.
        service, _ = replica_of(name)
        own["GRPC_TLS_DIR"] = "" if self._mesh_tls is None else str(self._mesh_tls / service)
        return self._base_env() | own | self._env_overrides | dict(extra_env or {})

    # ----- bringing it up and down

    def start(self) -> None:
        """Starts everything and returns once all of it is ready; on failure stops what it started."""
        if self._services or self._postgres or self._redis or self._smtp or self._envoy:
            raise DevstackError("this mesh is already started")
        self._data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if not self._external_database_url:
                self._postgres = start_postgres(
                    self._data_dir,
                    self._ports.postgres,
                    durable=self._durable,
                    log_path=self._log("postgres"),
                )
                if self._pg_replica:
                    self.start_read_replica()
            if not self._external_redis_url and self._redis_cluster:
                self._cluster = start_redis_cluster(
                    self._data_dir, self._ports.redis_cluster, log_dir=self._log_dir()
                )
                self._redis = self._cluster.nodes[0]
            elif not self._external_redis_url:
                self._redis = start_redis(self._data_dir, self._ports.redis, log_path=self._log("redis"))
            if not self._external_smtp_url:
                self._smtp = start_smtp(self._mail_folder, self._ports.smtp, log_path=self._log("smtp"))
            self._migrate()
            # Started together, waited for one by one: startup is mostly Python imports.
            for name in self.processes():
                self._spawn(name, None)
            for name in self.processes():
                self._wait_serving(name)
            self._start_envoy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops everything in reverse order: SIGTERM (SIGINT for PostgreSQL), a grace period, SIGKILL."""
        if self._envoy is not None:
            self._envoy.process.stop()
            self._envoy = None
        for name in reversed(self.processes()):
            self.stop_service(name)
        if self._smtp is not None:
            self._smtp.process.stop()
            self._smtp = None
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = self._redis = None
        if self._redis is not None:
            self._redis.process.stop()
            self._redis = None
        self.stop_read_replica()
        if self._postgres is not None:
            self._postgres.process.stop(timeout=30.0)
            self._postgres = None

    def start_read_replica(self) -> str:
        """Starts a streaming replica of the embedded PostgreSQL (devstack.postgres.start_replica)
        and returns its URL. Services started from now on read it as DATABASE_READ_URL; those
        running already need a restart (start_service) to use it."""
        if self._postgres is None:
            raise DevstackError("a read replica needs the embedded PostgreSQL (DATABASE_URL is set)")
        if self._replica is None:
            self._replica = start_replica(
                self._postgres,
                self._data_dir,
                self._ports.postgres_replica,
                durable=self._durable,
                log_path=self._log("postgres-replica"),
            )
        return self._replica.url

    def stop_read_replica(self) -> None:
        """Stops the read replica, if one runs; services started from now on read the primary only."""
        if self._replica is not None:
            self._replica.process.stop(timeout=30.0)
            self._replica = None

    def supervise(self, now: float | None = None) -> list[str]:
        """Looks after a started mesh, as a container runtime would; returns what happened since the
        last look, for the console. A service that exits is started again (same environment) after
        its RestartPolicy's delay, and given up on after repeated crashes; PostgreSQL, Redis, the
        SMTP server or Envoy exiting is told once (the mesh answers UNAVAILABLE for what needs
        them). Services stopped or killed through this class are not restarted. Call it every half
        second or so, from the thread that started the mesh (children die with their parent thread).
        """
        now = time.monotonic() if now is None else now
        events = []
        for name, restarts in self._restarts.items():
            process = self._services.get(name)
            if process is not None and not process.alive():
                del self._services[name]
                restarts.waiting = False
                delay = restarts.policy.crashed(now)
                crashed = f"{replica_label(name)} {process.state()}"
                if delay is None:
                    events.append(
                        f"{crashed}: {restarts.policy.recent_crashes} crashes within"
                        f" {restarts.policy.window:g} s, so it is not restarted again. Its last output:\n"
                        f"{process.log_tail()}"
                    )
                else:
                    restarts.due = now + delay
                    events.append(f"{crashed}; restarting it in {delay:g} s")
            elif process is None and restarts.due is not None and now >= restarts.due:
                restarts.due = None
                restarts.waiting = True
                self._services[name] = self._service_process(name, self._service_envs[name])
                events.append(f"{replica_label(name)} started again (pid {self._services[name].pid})")
            elif process is not None and restarts.waiting and self._serving(name):
                restarts.waiting = False
                events.append(f"{replica_label(name)} is SERVING again")
        for server in self._servers():
            if not server.process.alive() and server.process.pid not in self._reported:
                self._reported.add(server.process.pid)
                gone = server.process
                events.append(
                    f"{gone.name} {gone.state()}; it is not restarted (what needs it answers"
                    f" UNAVAILABLE): stop and start the mesh. Its last output:\n{gone.log_tail()}"
                )
        return events

    def start_service(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        """(Re)starts one service with `extra_env` on top of its usual environment; waits for SERVING."""
        self.stop_service(name)
        self._spawn(name, extra_env)
        try:
            self._wait_serving(name)
        except BaseException:
            self.stop_service(name)
            raise

    def stop_service(self, name: str, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` (default: its GRACE_SECONDS + 5); returns the exit code."""
        process = self._services.pop(name, None)
        if process is None:
            return None
        env = self._service_envs.get(name, {})
        return process.stop(_stop_timeout(env) if timeout is None else timeout)

    def kill_service(self, name: str) -> int | None:
        """SIGKILL, as a crash would; returns once it is gone."""
        process = self._services.pop(name, None)
        return process.kill() if process is not None else None

    # ----- faults, for the fault tests: the embedded PostgreSQL, Redis and SMTP server

    def _embedded(self, name: str) -> Server:
        if name == "redis" and self._cluster is not None:
            raise DevstackError(
                "the faults of a local Redis Cluster are its nodes': stop or pause them by pid"
            )
        server = {"postgres": self._postgres, "redis": self._redis, "smtp": self._smtp}.get(name)
        if server is None:
            raise DevstackError(f"{name} is not an embedded server of this mesh (or it is not running)")
        return server

    def stop_dependency(self, name: str) -> None:
        """Stops the embedded "postgres", "redis" or "smtp" (fast shutdown; Redis keeps nothing: a wipe)."""
        self._embedded(name).process.stop(timeout=30.0)

    def start_dependency(self, name: str) -> None:
        """Starts a stopped "postgres", "redis" or "smtp" again on the same port and data dir."""
        server = self._embedded(name)
        if server.process.alive():
            raise DevstackError(f"{name} is still running")
        if name == "postgres":
            self._postgres = start_postgres(
                self._data_dir, self._ports.postgres, durable=self._durable, log_path=self._log("postgres")
            )
        elif name == "smtp":
            self._smtp = start_smtp(self._mail_folder, self._ports.smtp, log_path=self._log("smtp"))
        else:
            self._redis = start_redis(self._data_dir, self._ports.redis, log_path=self._log("redis"))

    def pause_dependency(self, name: str) -> None:
        """SIGSTOPs "postgres" or "redis" and every process it started: it accepts connections and
        answers nothing, like a server stuck on a slow disk, until resume_dependency."""
        root = self._embedded(name).process.pid
        os.kill(root, signal.SIGSTOP)  # first, so that it starts no new process meanwhile
        for pid in _descendants(root):  # PostgreSQL's backends each lead their own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume_dependency(self, name: str) -> None:
        root = self._embedded(name).process.pid
        for pid in [*_descendants(root), root]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def __enter__(self) -> Mesh:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # ----- the steps

    def _log(self, name: str) -> Path | None:
        return self._data_dir / "logs" / f"{name}.log" if self._log_to_files else None

    def _log_dir(self) -> Path | None:
        return self._data_dir / "logs" if self._log_to_files else None

    def _target(self, service: str) -> str:
        """The gRPC target of every replica of `service` (one address, or `ipv4:` and a list)."""
        found = [f"{HOST}:{self._ports.replica(name)[0]}" for name in self.replica_names(service)]
        return found[0] if len(found) == 1 else f"ipv4:{','.join(found)}"

    def _base_env(self) -> dict[str, str]:
        addresses = {f"{name.upper()}_ADDR": self._target(name) for name in SERVICES}
        replica = {"DATABASE_READ_URL": self._replica.url} if self._replica is not None else {}
        return dict(os.environ) | {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_CLUSTER": "1" if self._redis_cluster else "0",
            "SMTP_URL": self.smtp_url,
            # media_svc's local blob store (unless MEDIA_S3_URL names object storage).
            "MEDIA_DIR": str(self._media_folder),
            "LISTEN_HOST": HOST,
            "PAGE_TOKEN_SECRET": os.environ.get("PAGE_TOKEN_SECRET") or self._page_token_secret(),
            **addresses,
            **replica,
        }

    def _page_token_secret(self) -> str:
        """The services refuse to start without PAGE_TOKEN_SECRET; unless it is set, the mesh makes a
        random one, kept in its data dir (readable by its owner only) so that page tokens survive a
        restart of `make run`."""
        path = self._data_dir / "page-token-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        return path.read_text().strip()

    def _migrate(self) -> None:
        argv = [sys.executable, "-m", "meshkit.migrate"]
        env = self._base_env() | self._env_overrides
        try:
            done = subprocess.run(
                argv, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
        except subprocess.TimeoutExpired:
            raise StartupError("migrations (python -m meshkit.migrate) did not finish within 300 s") from None
        log = self._log("migrate")
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(done.stdout + done.stderr)
        else:
            sys.stdout.write(done.stdout)
            sys.stdout.flush()
        if done.returncode != 0:
            raise StartupError(
                f"migrations failed: python -m meshkit.migrate exited with code {done.returncode}:\n"
                f"{done.stderr.strip() or done.stdout.strip()}"
            )

    def _spawn(self, name: str, extra_env: Mapping[str, str] | None) -> None:
        env = self.service_env(name, extra_env)
        self._service_envs[name] = env
        self._restarts[name] = _Restarts()
        self._services[name] = self._service_process(name, env)

    def _service_process(self, name: str, env: Mapping[str, str]) -> ManagedProcess:
        service, _ = replica_of(name)
        argv = [sys.executable, "-m", f"{service}_svc"]
        return ManagedProcess(
            name, argv, log_path=self._log(name), env=env, cwd=ROOT, dump_signal=DUMP_STACKS_SIGNAL
        )

    def channel(self, name: str, options: Sequence[tuple[str, int]] = ()) -> grpc.Channel:
        """A channel to the service (or replica) `name`: plain, or with mutual TLS presenting the
        certificate of the mesh's member `client`."""
        address = f"{HOST}:{self._ports.replica(name)[0]}"
        if self._mesh_tls is None:
            return grpc.insecure_channel(address, options=options)
        client = load_mesh_tls(self._mesh_tls / CLIENT, serves=False)
        return grpc.secure_channel(address, client.channel_credentials(), options=options)

    def _serving(self, name: str) -> bool:
        with self.channel(name) as channel:
            return health_status(channel, timeout=0.5) == "SERVING"

    def _wait_serving(self, name: str) -> None:
        process = self._services[name]
        with self.channel(name, _FAST_RECONNECT) as channel:
            process.wait_until(
                lambda: health_status(channel, timeout=1.0) == "SERVING",
                self._ready_timeout,
                "SERVING on grpc.health.v1.Health/Check",
            )

    def _start_envoy(self) -> None:
        config = render_envoy_config(
            TEMPLATE,
            listen_port=self._ports.envoy,
            admin_port=self._ports.envoy_admin,
            metrics_port=self._ports.envoy_metrics,
            upstreams={
                service: [(HOST, self._ports.replica(name)[0]) for name in self.replica_names(service)]
                for service in PUBLIC_SERVICES
            },
            descriptor=DESCRIPTOR,
            enforce_rate_limits=self._enforce_edge_limits,
            tls=None if self._tls is None else TlsListener(self._tls, self._ports.envoy_tls),
            cors_origins=self._cors_origins,
            otlp_collector=otlp_collector((self._base_env() | self._env_overrides).get(ENDPOINT_VARIABLE)),
            mesh_tls=None if self._mesh_tls is None else self._mesh_tls / ENVOY,
        )
        self._envoy = start_envoy(
            config,
            self._data_dir / "envoy" / "envoy.yaml",
            listen_port=self._ports.envoy,
            admin_port=self._ports.envoy_admin,
            log_path=self._log("envoy"),
            timeout=self._ready_timeout,
        )
