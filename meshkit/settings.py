"""Settings for every service, read once from environment variables and validated."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

# Authors with at least this many followers are not fanned out on write (see README, "Hybrid
# fan-out", for the measurement behind it).
DEFAULT_CELEBRITY_FOLLOWERS = 5_000
DEFAULT_PORTS = {"users": 50051, "tweets": 50052, "fanout": 50053, "timeline": 50054}
DEFAULT_METRICS_PORTS = {"users": 9101, "tweets": 9102, "fanout": 9103, "timeline": 9104}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` requests per `seconds`, spread evenly, with bursts of up to `count`."""

    count: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Mastodon's spirit: 300 writes per 5 minutes per account; sign-in and sign-up much tighter.
    A client address gets more than one account's worth, as several people may share one (NAT)."""

    write_per_user: Rate = Rate(300, 300)
    write_per_address: Rate = Rate(1500, 300)
    login_per_address: Rate = Rate(25, 300)
    login_per_account: Rate = Rate(25, 3600)
    signup_per_address: Rate = Rate(10, 1800)


RATE_LIMIT_VARIABLES = {
    "write_per_user": "RATE_LIMIT_WRITE_PER_USER",
    "write_per_address": "RATE_LIMIT_WRITE_PER_ADDRESS",
    "login_per_address": "RATE_LIMIT_LOGIN_PER_ADDRESS",
    "login_per_account": "RATE_LIMIT_LOGIN_PER_ACCOUNT",
    "signup_per_address": "RATE_LIMIT_SIGNUP_PER_ADDRESS",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a service reads from its environment. Each field is documented in the README."""

    service: str
    database_url: str
    redis_url: str
    listen_host: str
    grpc_port: int
    metrics_port: int
    users_addr: str
    tweets_addr: str
    fanout_addr: str
    timeline_addr: str
    log_level: str
    grace_seconds: float
    rpc_deadline_seconds: float
    token_ttl_seconds: int
    argon2_memory_kib: int
    argon2_time_cost: int
    page_token_secret: str
    home_timeline_max: int
    home_timeline_ttl_seconds: int
    stream_heartbeat_seconds: float
    fanout_consumer: str
    fanout_claim_idle_ms: int
    fanout_max_deliveries: int
    outbox_sweep_seconds: float
    health_probe_seconds: float
    handler_timeout_seconds: float
    celebrity_followers: int
    rate_limits: RateLimits = RateLimits()
    # Peers whose x-forwarded-for is believed (Envoy); anyone else is known by its own address.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], required: bool) -> str:
    value = env.get(name, "")
    if not value:
        if required:
            raise SettingsError(f"{name} is not set; expected a URL such as {schemes[0]}://127.0.0.1/...")
        return ""
    if not value.startswith(tuple(f"{s}://" for s in schemes)):
        raise SettingsError(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}")
    return value


def _addr(env: Mapping[str, str], name: str, default_port: int) -> str:
    value = env.get(name) or f"127.0.0.1:{default_port}"
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise SettingsError(f"{name} must be host:port (or dns:///host:port), got {value!r}")
    return value


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate:
    raw = env.get(name)
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


def _rate_limits(env: Mapping[str, str]) -> RateLimits:
    defaults = RateLimits()
    return RateLimits(
        **{field: _rate(env, name, getattr(defaults, field)) for field, name in RATE_LIMIT_VARIABLES.items()}
    )


def _networks(
    env: Mapping[str, str], name: str, default: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = env.get(name, default)
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated addresses or CIDR blocks, got {raw!r}") from None


def load_settings(
    service: str, env: Mapping[str, str] | None = None, *, needs_database: bool = True
) -> Settings:
    """Reads the settings of `service` (users, tweets, fanout or timeline) from `env` (os.environ)."""
    if service not in DEFAULT_PORTS:
        raise SettingsError(f"unknown service {service!r}")
    env = os.environ if env is None else env
    log_level = env.get("LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    return Settings(
        service=service,
        database_url=_url(env, "DATABASE_URL", ("postgresql", "postgres"), needs_database),
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix"), True),
        listen_host=env.get("LISTEN_HOST", "127.0.0.1"),
        grpc_port=_int(env, "GRPC_PORT", DEFAULT_PORTS[service]),
        metrics_port=_int(env, "METRICS_PORT", DEFAULT_METRICS_PORTS[service]),
        users_addr=_addr(env, "USERS_ADDR", DEFAULT_PORTS["users"]),
        tweets_addr=_addr(env, "TWEETS_ADDR", DEFAULT_PORTS["tweets"]),
        fanout_addr=_addr(env, "FANOUT_ADDR", DEFAULT_PORTS["fanout"]),
        timeline_addr=_addr(env, "TIMELINE_ADDR", DEFAULT_PORTS["timeline"]),
        log_level=log_level,
        grace_seconds=_float(env, "GRACE_SECONDS", 10.0),
        rpc_deadline_seconds=_float(env, "RPC_DEADLINE_SECONDS", 5.0, minimum=0.01),
        token_ttl_seconds=_int(env, "TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=1),
        argon2_memory_kib=_int(env, "ARGON2_MEMORY_KIB", 19456, minimum=8),
        argon2_time_cost=_int(env, "ARGON2_TIME_COST", 2, minimum=1),
        page_token_secret=env.get("PAGE_TOKEN_SECRET", "tweetmesh-dev-page-token-secret"),
        home_timeline_max=_int(env, "HOME_TIMELINE_MAX", 800, minimum=1),
        home_timeline_ttl_seconds=_int(env, "HOME_TIMELINE_TTL_SECONDS", 14 * 24 * 3600, minimum=60),
        stream_heartbeat_seconds=_float(env, "STREAM_HEARTBEAT_SECONDS", 15.0, minimum=0.05),
        fanout_consumer=env.get("FANOUT_CONSUMER") or f"{socket.gethostname()}-{os.getpid()}",
        fanout_claim_idle_ms=_int(env, "FANOUT_CLAIM_IDLE_MS", 30_000, minimum=1),
        fanout_max_deliveries=_int(env, "FANOUT_MAX_DELIVERIES", 10, minimum=1),
        outbox_sweep_seconds=_float(env, "OUTBOX_SWEEP_SECONDS", 1.0, minimum=0.01),
        health_probe_seconds=_float(env, "HEALTH_PROBE_SECONDS", 1.0, minimum=0.05),
        handler_timeout_seconds=_float(env, "HANDLER_TIMEOUT_SECONDS", 8.0, minimum=0.1),
        celebrity_followers=_int(env, "CELEBRITY_FOLLOWERS", DEFAULT_CELEBRITY_FOLLOWERS, minimum=1),
        rate_limits=_rate_limits(env),
        # By default Envoy runs next to the services (make run, the tests); elsewhere name it.
        trusted_proxies=_networks(env, "TRUSTED_PROXIES", "127.0.0.1/32,::1/128"),
    )
