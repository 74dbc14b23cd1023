"""Settings, read once from environment variables and validated, with messages that name the
variable.

`Settings` is what the kit itself reads, the same for every service. A service extends it with a
frozen dataclass of the fields it uses, no more (`<svc>/settings.py`), each naming its reader; a
variable that several services read has one reader, here or in the social package.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar, cast

from meshkit.mtls import MeshTls, MeshTlsError, load_mesh_tls

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` requests per `seconds`, spread evenly, with bursts of up to `count`."""

    count: int
    seconds: float


class Env:
    """Typed, validated reads of environment variables (os.environ unless told otherwise)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    @property
    def variables(self) -> Mapping[str, str]:
        """The variables themselves, for a group of settings that reads its own (mail's, say)."""
        return self._env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, default)

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], kind: str) -> T:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self._parsed(name, default, int, "an integer")
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float, minimum: float = 0.0, maximum: float = math.inf) -> float:
        value = self._parsed(name, default, float, "a number")
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        if value > maximum:
            raise SettingsError(f"{name} must be at most {maximum}, got {value}")
        return value

    def url(self, name: str, schemes: tuple[str, ...]) -> str:
        value = self._env.get(name, "")
        if not value:
            raise SettingsError(f"{name} is not set; expected a URL such as {schemes[0]}://127.0.0.1/...")
        if not value.startswith(tuple(f"{s}://" for s in schemes)):
            raise SettingsError(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}")
        return value

    def address(self, name: str, default_port: int) -> str:
        """host:port or any gRPC target (dns:///host:port), 127.0.0.1:`default_port` if unset."""
        value = self._env.get(name) or f"127.0.0.1:{default_port}"
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"{name} must be host:port (or dns:///host:port), got {value!r}")
        return value

    def flag(self, name: str) -> bool:
        """On when set to 1 (or true, yes), off when unset, empty or 0 (or false, no)."""
        raw = self._env.get(name, "").strip().lower()
        if raw in ("", "0", "false", "no"):
            return False
        if raw in ("1", "true", "yes"):
            return True
        raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._env.get(name, default).upper()
        if value not in allowed:
            raise SettingsError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
        return value

    def rate(self, name: str, default: Rate) -> Rate:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        count, _, seconds = raw.partition("/")
        try:
            rate = Rate(int(count), float(seconds))
        except ValueError:
            raise SettingsError(f"{name} must be COUNT/SECONDS such as 300/300, got {raw!r}") from None
        if rate.count < 1 or rate.seconds <= 0:
            raise SettingsError(f"{name} needs a count of at least 1 and a positive period, got {raw!r}")
        return rate

    def rates(self, defaults: D) -> D:
        """A dataclass of Rate fields, each from RATE_LIMIT_<FIELD NAME> or as in `defaults`."""
        return dataclasses.replace(
            defaults,
            **{
                f.name: self.rate(f"RATE_LIMIT_{f.name.upper()}", getattr(defaults, f.name))
                for f in dataclasses.fields(defaults)
            },
        )

    def networks(self, name: str, default: str) -> Networks:
        raw = self._env.get(name, default)
        try:
            return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
        except ValueError:
            raise SettingsError(
                f"{name} must be comma-separated addresses or CIDR blocks, got {raw!r}"
            ) from None


@dataclass(frozen=True, slots=True)
class Ports:
    """Where a service listens unless GRPC_PORT / METRICS_PORT say otherwise."""

    grpc: int
    metrics: int


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setting(read: Callable[[Env], T]) -> T:
    """A field of a Settings dataclass, read from the environment by `read`."""
    return cast(T, dataclasses.field(metadata={"read": read}))


def read_grpc_tls(env: Env) -> MeshTls | None:
    """Mutual TLS on the service's gRPC port and its channels to peers: GRPC_TLS_DIR is a folder
    with tls.crt, tls.key and ca.crt (meshkit.mtls); unset, both are plain. A folder that is not
    right stops the service at start rather than leaving it plain."""
    raw = env.text("GRPC_TLS_DIR", "")
    if not raw:
        return None
    try:
        return load_mesh_tls(Path(raw))
    except MeshTlsError as error:
        raise SettingsError(f"GRPC_TLS_DIR: {error}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What the kit reads for every service (runtime, logs, health, metrics). A service's settings
    extend it with their own fields, each a `setting` that names its reader; `load` reads them
    all. Each variable is documented in the README."""

    service: str
    grpc_port: int
    metrics_port: int
    redis_url: str = setting(lambda env: env.url("REDIS_URL", ("redis", "rediss", "unix")))
    # REDIS_URL names one node of a Redis Cluster, whose client every service then uses (meshkit.shards).
    redis_cluster: bool = setting(lambda env: env.flag("REDIS_CLUSTER"))
    listen_host: str = setting(lambda env: env.text("LISTEN_HOST", "127.0.0.1"))
    log_level: str = setting(
        lambda env: env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
    )
    grace_seconds: float = setting(lambda env: env.number("GRACE_SECONDS", 10.0))
    rpc_deadline_seconds: float = setting(lambda env: env.number("RPC_DEADLINE_SECONDS", 5.0, minimum=0.01))
    health_probe_seconds: float = setting(lambda env: env.number("HEALTH_PROBE_SECONDS", 1.0, minimum=0.05))
    handler_timeout_seconds: float = setting(
        lambda env: env.number("HANDLER_TIMEOUT_SECONDS", 8.0, minimum=0.1)
    )
    grpc_tls: MeshTls | None = setting(read_grpc_tls)
    # A plain-text port with the gRPC health service alone (0: none), for probes that cannot
    # present a certificate (Kubernetes' gRPC probes) when the gRPC port takes mutual TLS only.
    grpc_health_port: int = setting(lambda env: env.integer("GRPC_HEALTH_PORT", 0))
    # A consumer of an event stream's group that holds nothing and has not read for this long is
    # deleted from the group by the living (meshkit.streams.StreamConsumer).
    consumer_forget_ms: int = setting(
        lambda env: round(env.number("CONSUMER_FORGET_SECONDS", 600.0, minimum=1) * 1000)
    )

    @classmethod
    def load(cls, service: str, ports: Ports, env: Mapping[str, str] | None = None) -> Self:
        """The settings of `service` from `env` (os.environ): each field from its reader."""
        read = Env(env)
        fields = {f.name: f.metadata["read"](read) for f in dataclasses.fields(cls) if "read" in f.metadata}
        return cls(
            service=service,
            grpc_port=read.integer("GRPC_PORT", ports.grpc),
            metrics_port=read.integer("METRICS_PORT", ports.metrics),
            **fields,
        )


# Readers of the kit's variables that only some services read.


def read_consumer_name(variable: str) -> Callable[[Env], str]:
    """This process's name in its consumer groups: `variable` if set, else unique per process
    (host-pid; in Kubernetes the host is the pod's name), so that two replicas never share a name.
    A restart under a new name leaves the old one in the group: its entries are claimed by the
    living, and the name is forgotten after CONSUMER_FORGET_SECONDS (meshkit.streams)."""
    return lambda env: env.text(variable, "") or f"{socket.gethostname()}-{os.getpid()}"


def read_database_url(env: Env) -> str:
    return env.url("DATABASE_URL", ("postgresql", "postgres"))


def read_database_read_url(env: Env) -> str:
    """A streaming replica of DATABASE_URL for the reads that tolerate lag (meshkit.reads); empty:
    none, every read on the primary."""
    if not env.text("DATABASE_READ_URL", ""):
        return ""
    return env.url("DATABASE_READ_URL", ("postgresql", "postgres"))


def read_database_read_max_lag(env: Env) -> float:
    """The most a read replica may lag behind the primary and still serve (meshkit.reads)."""
    return env.number("DATABASE_READ_MAX_LAG_SECONDS", 5.0)


PAGE_TOKEN_SECRET_MIN = 16


def read_page_token_secrets(env: Env) -> tuple[str, ...]:
    """The secrets that sign page tokens: the first signs, any of them is accepted (rotation:
    `PAGE_TOKEN_SECRET=new,old`). Required: a silent default would let anyone who read it forge
    page tokens; `make run` and the test meshes set one (devstack)."""
    raw = env.text("PAGE_TOKEN_SECRET", "")
    secrets = tuple(part.strip() for part in raw.split(","))
    if not raw.strip():
        raise SettingsError(
            "PAGE_TOKEN_SECRET must be set: a random secret shared by every replica, e.g."
            " `openssl rand -hex 32` (to rotate it, list the new one first: NEW,OLD)"
        )
    if any(len(secret) < PAGE_TOKEN_SECRET_MIN for secret in secrets):
        raise SettingsError(
            f"PAGE_TOKEN_SECRET: each comma-separated secret must be at least {PAGE_TOKEN_SECRET_MIN}"
            " characters (e.g. `openssl rand -hex 32`)"
        )
    return secrets


def read_outbox_sweep_seconds(env: Env) -> float:
    return env.number("OUTBOX_SWEEP_SECONDS", 1.0, minimum=0.01)


def read_outbox_replicas(env: Env) -> int:
    """How many Redis replicas must hold a relayed event before its outbox row goes (meshkit.outbox).
    Not on a Redis Cluster: WAIT counts the replicas of one connection's node, and a relay's
    writes go to several nodes."""
    replicas = env.integer("OUTBOX_REPLICAS", 0, minimum=0)
    if replicas and env.flag("REDIS_CLUSTER"):
        raise SettingsError(
            "OUTBOX_REPLICAS must be 0 with REDIS_CLUSTER=1 (WAIT counts one node's replicas)"
        )
    return replicas


def read_trusted_proxies(env: Env) -> Networks:
    """Peers whose x-forwarded-for is believed (Envoy); anyone else is known by its own address.
    By default Envoy runs next to the services (make run, the tests); elsewhere name it."""
    return env.networks("TRUSTED_PROXIES", "127.0.0.1/32,::1/128")
