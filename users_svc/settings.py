"""users_svc's settings: the kit's, and what users_svc alone reads (README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import (
    Networks,
    Rate,
    Settings,
    read_database_url,
    read_outbox_sweep_seconds,
    read_page_token_secret,
    read_trusted_proxies,
    setting,
)
from social.caches import read_cache_ttl_seconds
from social.limits import WriteRates
from social.services import DEFAULT_PORTS, read_tweets_addr

SERVICE = "users"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRates(WriteRates):
    """Sign-in and sign-up much tighter than writes; an account is guessed at slowly from any
    number of addresses."""

    login_per_address: Rate = Rate(25, 300)
    login_per_account: Rate = Rate(25, 3600)
    signup_per_address: Rate = Rate(10, 1800)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsersSettings(Settings):
    database_url: str = setting(read_database_url)
    tweets_addr: str = setting(read_tweets_addr)
    page_token_secret: str = setting(read_page_token_secret)
    outbox_sweep_seconds: float = setting(read_outbox_sweep_seconds)
    token_ttl_seconds: int = setting(lambda env: env.integer("TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=1))
    argon2_memory_kib: int = setting(lambda env: env.integer("ARGON2_MEMORY_KIB", 19456, minimum=8))
    argon2_time_cost: int = setting(lambda env: env.integer("ARGON2_TIME_COST", 2, minimum=1))
    rate_limits: UserRates = setting(lambda env: env.rates(UserRates()))
    trusted_proxies: Networks = setting(read_trusted_proxies)
    cache_ttl_seconds: int = setting(read_cache_ttl_seconds)


def load_settings(env: Mapping[str, str] | None = None) -> UsersSettings:
    """users_svc's settings from `env` (os.environ)."""
    return UsersSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
