"""timeline_svc's settings: the kit's, and what timeline_svc alone reads (README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import Settings, read_page_token_secrets, setting
from social.services import DEFAULT_PORTS, read_tweets_addr, read_users_addr
from social.timelines import read_home_timeline_max, read_home_timeline_ttl_seconds

SERVICE = "timeline"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineSettings(Settings):
    users_addr: str = setting(read_users_addr)
    tweets_addr: str = setting(read_tweets_addr)
    page_token_secrets: tuple[str, ...] = setting(read_page_token_secrets)
    home_timeline_max: int = setting(read_home_timeline_max)
    home_timeline_ttl_seconds: int = setting(read_home_timeline_ttl_seconds)
    stream_heartbeat_seconds: float = setting(
        lambda env: env.number("STREAM_HEARTBEAT_SECONDS", 15.0, minimum=0.05)
    )


def load_settings(env: Mapping[str, str] | None = None) -> TimelineSettings:
    """timeline_svc's settings from `env` (os.environ)."""
    return TimelineSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
