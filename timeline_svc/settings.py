"""timeline_svc's settings: the kit's, and what timeline_svc alone reads (README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import (
    Env,
    Networks,
    Rate,
    Settings,
    read_page_token_secrets,
    read_trusted_proxies,
    setting,
)
from social.limits import ClientRates
from social.services import DEFAULT_PORTS, read_notifications_addr, read_tweets_addr, read_users_addr
from social.timelines import read_home_timeline_max, read_home_timeline_ttl_seconds

SERVICE = "timeline"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineRates(ClientRates):
    """Opening a stream: a client reconnects after a break, not more than a few times a minute."""

    stream_open_per_user: Rate = Rate(30, 60)
    stream_open_per_address: Rate = Rate(300, 60)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCaps:
    """Streams open at once in one timeline_svc process (STREAM_MAX_PER_ACCOUNT, ..._PER_ADDRESS,
    ..._PER_PROCESS): an account has a few devices; an address may be many people (NAT); a process
    serves what its memory and event loop can (Envoy's circuit breaker allows 10,000 in all)."""

    streams_per_account: int = 10
    streams_per_address: int = 200
    streams_per_process: int = 5000


def read_stream_caps(env: Env) -> StreamCaps:
    defaults = StreamCaps()
    return StreamCaps(
        streams_per_account=env.integer("STREAM_MAX_PER_ACCOUNT", defaults.streams_per_account, minimum=1),
        streams_per_address=env.integer("STREAM_MAX_PER_ADDRESS", defaults.streams_per_address, minimum=1),
        streams_per_process=env.integer("STREAM_MAX_PER_PROCESS", defaults.streams_per_process, minimum=1),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineSettings(Settings):
    users_addr: str = setting(read_users_addr)
    tweets_addr: str = setting(read_tweets_addr)
    notifications_addr: str = setting(read_notifications_addr)
    page_token_secrets: tuple[str, ...] = setting(read_page_token_secrets)
    home_timeline_max: int = setting(read_home_timeline_max)
    home_timeline_ttl_seconds: int = setting(read_home_timeline_ttl_seconds)
    stream_heartbeat_seconds: float = setting(
        lambda env: env.number("STREAM_HEARTBEAT_SECONDS", 15.0, minimum=0.05)
    )
    rate_limits: TimelineRates = setting(lambda env: env.rates(TimelineRates()))
    stream_caps: StreamCaps = setting(read_stream_caps)
    trusted_proxies: Networks = setting(read_trusted_proxies)


def load_settings(env: Mapping[str, str] | None = None) -> TimelineSettings:
    """timeline_svc's settings from `env` (os.environ)."""
    return TimelineSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
