"""tweets_svc's settings: the kit's, and what tweets_svc alone reads (README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import (
    Networks,
    Settings,
    read_consumer_name,
    read_database_read_max_lag,
    read_database_read_url,
    read_database_url,
    read_outbox_replicas,
    read_outbox_sweep_seconds,
    read_page_token_secrets,
    read_trusted_proxies,
    setting,
)
from social.caches import read_cache_ttl_seconds
from social.limits import ClientRates
from social.services import DEFAULT_PORTS, read_media_addr, read_users_addr

SERVICE = "tweets"


@dataclass(frozen=True, slots=True, kw_only=True)
class TweetsSettings(Settings):
    database_url: str = setting(read_database_url)
    database_read_url: str = setting(read_database_read_url)
    read_max_lag_seconds: float = setting(read_database_read_max_lag)
    users_addr: str = setting(read_users_addr)
    media_addr: str = setting(read_media_addr)
    page_token_secrets: tuple[str, ...] = setting(read_page_token_secrets)
    outbox_sweep_seconds: float = setting(read_outbox_sweep_seconds)
    outbox_replicas: int = setting(read_outbox_replicas)
    rate_limits: ClientRates = setting(lambda env: env.rates(ClientRates()))
    trusted_proxies: Networks = setting(read_trusted_proxies)
    cache_ttl_seconds: int = setting(read_cache_ttl_seconds)
    # Concurrent CreateTweet calls are committed together: at most this many posts a batch, and
    # this many batches at once (each holds a PostgreSQL connection while it runs).
    post_batch_max: int = setting(lambda env: env.integer("POST_BATCH_MAX", 64, minimum=1))
    post_batches_in_flight: int = setting(lambda env: env.integer("POST_BATCHES_IN_FLIGHT", 2, minimum=1))
    # How long a minute of trends lasts (tests shorten it), and how many windows before the one
    # ranked make a hashtag's baseline.
    trends_minute_seconds: float = setting(
        lambda env: env.number("TRENDS_MINUTE_SECONDS", 60.0, minimum=0.01)
    )
    trends_baseline_windows: int = setting(lambda env: env.integer("TRENDS_BASELINE_WINDOWS", 6, minimum=1))
    trends_consumer: str = setting(read_consumer_name("TRENDS_CONSUMER"))
    # How long after posting a tweet may be edited, and how many times (tests shorten the window).
    edit_window_seconds: float = setting(lambda env: env.number("EDIT_WINDOW_SECONDS", 1800.0, minimum=0.0))
    edit_max: int = setting(lambda env: env.integer("EDIT_MAX", 5, minimum=0))


def load_settings(env: Mapping[str, str] | None = None) -> TweetsSettings:
    """tweets_svc's settings from `env` (os.environ)."""
    return TweetsSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
