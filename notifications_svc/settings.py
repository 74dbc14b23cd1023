"""notifications_svc's settings: the kit's, and what notifications_svc alone reads (README,
"Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import (
    Networks,
    Settings,
    read_consumer_name,
    read_database_url,
    read_page_token_secrets,
    read_trusted_proxies,
    setting,
)
from social.limits import ClientRates
from social.services import DEFAULT_PORTS, read_tweets_addr, read_users_addr

SERVICE = "notifications"


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationsSettings(Settings):
    database_url: str = setting(read_database_url)
    users_addr: str = setting(read_users_addr)
    tweets_addr: str = setting(read_tweets_addr)
    page_token_secrets: tuple[str, ...] = setting(read_page_token_secrets)
    notifications_consumer: str = setting(read_consumer_name("NOTIFICATIONS_CONSUMER"))
    notifications_claim_idle_ms: int = setting(
        lambda env: env.integer("NOTIFICATIONS_CLAIM_IDLE_MS", 30_000, minimum=1)
    )
    notifications_max_deliveries: int = setting(
        lambda env: env.integer("NOTIFICATIONS_MAX_DELIVERIES", 10, minimum=1)
    )
    rate_limits: ClientRates = setting(lambda env: env.rates(ClientRates()))
    trusted_proxies: Networks = setting(read_trusted_proxies)


def load_settings(env: Mapping[str, str] | None = None) -> NotificationsSettings:
    """notifications_svc's settings from `env` (os.environ)."""
    return NotificationsSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
