"""users_svc's settings: the kit's, and what users_svc alone reads (README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mail import MailSettings, MailSettingsError
from meshkit.auth import REVOKED_SECONDS
from meshkit.settings import (
    Env,
    Networks,
    Rate,
    Settings,
    SettingsError,
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
from social.follower_lists import read_follower_list_ttl_seconds
from social.limits import ClientRates
from social.services import DEFAULT_PORTS, read_tweets_addr
from users_svc.suggestions import POPULAR_SECONDS

SERVICE = "users"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRates(ClientRates):
    """Sign-in and sign-up much tighter than writes; an account is guessed at slowly from any
    number of addresses."""

    login_per_address: Rate = Rate(25, 300)
    login_per_account: Rate = Rate(25, 3600)
    signup_per_address: Rate = Rate(10, 1800)
    # Password-reset requests: per client address and per address asked about (refused with 429,
    # which says nothing of whether an account has it)...
    reset_per_address: Rate = Rate(10, 3600)
    reset_per_email: Rate = Rate(5, 3600)
    # ...and the mails an account is sent (resets and verifications): beyond it, no mail goes out
    # and the answer stays the same.
    mail_per_account: Rate = Rate(5, 3600)


def read_mail_settings(env: Env) -> MailSettings:
    try:
        return MailSettings.from_env(env.variables)
    except MailSettingsError as error:
        raise SettingsError(str(error)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsersSettings(Settings):
    database_url: str = setting(read_database_url)
    database_read_url: str = setting(read_database_read_url)
    read_max_lag_seconds: float = setting(read_database_read_max_lag)
    tweets_addr: str = setting(read_tweets_addr)
    page_token_secrets: tuple[str, ...] = setting(read_page_token_secrets)
    outbox_sweep_seconds: float = setting(read_outbox_sweep_seconds)
    outbox_replicas: int = setting(read_outbox_replicas)
    token_ttl_seconds: int = setting(lambda env: env.integer("TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=1))
    # The longest a session lives in the Redis cache (meshkit.auth); revoked ones are tombstoned for
    # longer (REVOKED_SECONDS), so it is at most that.
    session_cache_seconds: float = setting(
        lambda env: env.number("SESSION_CACHE_SECONDS", 300.0, minimum=0.1, maximum=REVOKED_SECONDS)
    )
    argon2_memory_kib: int = setting(lambda env: env.integer("ARGON2_MEMORY_KIB", 19456, minimum=8))
    argon2_time_cost: int = setting(lambda env: env.integer("ARGON2_TIME_COST", 2, minimum=1))
    # 0: as many as a quarter of the process's memory holds (users_svc.passwords).
    argon2_max_concurrent: int = setting(lambda env: env.integer("ARGON2_MAX_CONCURRENT", 0, minimum=0))
    rate_limits: UserRates = setting(lambda env: env.rates(UserRates()))
    trusted_proxies: Networks = setting(read_trusted_proxies)
    follower_list_ttl_seconds: int = setting(read_follower_list_ttl_seconds)
    cache_ttl_seconds: int = setting(read_cache_ttl_seconds)
    mail: MailSettings = setting(read_mail_settings)
    # The first retry of a mail that failed to send; later ones double, up to an hour.
    mail_retry_seconds: float = setting(lambda env: env.number("MAIL_RETRY_SECONDS", 30.0, minimum=0.1))
    # How long a deleted account's handle stays reserved before anyone may take it.
    deleted_handle_grace_days: float = setting(
        lambda env: env.number("DELETED_HANDLE_GRACE_DAYS", 30.0, minimum=0)
    )
    # This process's name in the consumer group that erases deleted accounts (social.erasure).
    erase_consumer: str = setting(read_consumer_name("USERS_CONSUMER"))
    # How old the popular accounts that fill up suggestions may be (users_svc.suggestions).
    suggestions_popular_seconds: float = setting(
        lambda env: env.number("SUGGESTIONS_POPULAR_SECONDS", POPULAR_SECONDS, minimum=0)
    )


def load_settings(env: Mapping[str, str] | None = None) -> UsersSettings:
    """users_svc's settings from `env` (os.environ)."""
    return UsersSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
