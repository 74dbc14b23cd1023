"""fanout_svc's settings: the kit's, and what fanout_svc alone reads (README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import Settings, read_consumer_name, setting
from social.services import DEFAULT_PORTS, read_tweets_addr, read_users_addr
from social.timelines import CALL_BUDGET, read_home_timeline_max, read_home_timeline_ttl_seconds

SERVICE = "fanout"
# Authors with at least this many followers are not fanned out on write (see README, "Hybrid
# fan-out", for the measurement behind it).
DEFAULT_CELEBRITY_FOLLOWERS = 5_000


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutSettings(Settings):
    users_addr: str = setting(read_users_addr)
    tweets_addr: str = setting(read_tweets_addr)
    home_timeline_max: int = setting(read_home_timeline_max)
    home_timeline_ttl_seconds: int = setting(read_home_timeline_ttl_seconds)
    fanout_consumer: str = setting(read_consumer_name("FANOUT_CONSUMER"))
    fanout_claim_idle_ms: int = setting(lambda env: env.integer("FANOUT_CLAIM_IDLE_MS", 30_000, minimum=1))
    fanout_max_deliveries: int = setting(lambda env: env.integer("FANOUT_MAX_DELIVERIES", 10, minimum=1))
    celebrity_followers: int = setting(
        lambda env: env.integer("CELEBRITY_FOLLOWERS", DEFAULT_CELEBRITY_FOLLOWERS, minimum=1)
    )
    # Timelines one call of the fan-out script goes through at most (social.timelines.CALL_BUDGET).
    fanout_call_budget: int = setting(lambda env: env.integer("FANOUT_CALL_BUDGET", CALL_BUDGET, minimum=1))


def load_settings(env: Mapping[str, str] | None = None) -> FanoutSettings:
    """fanout_svc's settings from `env` (os.environ)."""
    return FanoutSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
