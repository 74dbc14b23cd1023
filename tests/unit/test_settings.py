"""Settings come from the environment, validated, with messages that name the variable; each
service reads the kit's settings and its own, no more."""

from collections.abc import Callable, Mapping

import pytest

from fanout_svc.settings import load_settings as fanout_settings
from meshkit.settings import Settings, SettingsError
from timeline_svc.settings import load_settings as timeline_settings
from tweets_svc.settings import load_settings as tweets_settings
from users_svc.settings import load_settings as users_settings

BASE = {
    "DATABASE_URL": "postgresql://db/x",
    "REDIS_URL": "redis://r:6379/0",
    "PAGE_TOKEN_SECRET": "a-test-secret-of-some-length",
}
LOADERS: dict[str, Callable[[Mapping[str, str]], Settings]] = {
    "users": users_settings,
    "tweets": tweets_settings,
    "fanout": fanout_settings,
    "timeline": timeline_settings,
}


def test_defaults_and_overrides() -> None:
    settings = tweets_settings(BASE)
    assert settings.grpc_port == 50052
    assert settings.users_addr == "127.0.0.1:50051"
    assert timeline_settings({**BASE, "HOME_TIMELINE_MAX": "50"}).home_timeline_max == 50
    assert users_settings({**BASE, "GRPC_PORT": "6000"}).grpc_port == 6000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "redis://r"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://db/x"}, "REDIS_URL"),
        ({**BASE, "DATABASE_URL": "mysql://db"}, "DATABASE_URL"),
        ({**BASE, "GRPC_PORT": "eighty"}, "GRPC_PORT"),
        ({**BASE, "TWEETS_ADDR": "no-port"}, "TWEETS_ADDR"),
        ({**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({**BASE, "RPC_DEADLINE_SECONDS": "soon"}, "RPC_DEADLINE_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        users_settings(env)


@pytest.mark.parametrize(
    ("load", "env", "named"),
    [
        (timeline_settings, {**BASE, "HOME_TIMELINE_MAX": "0"}, "HOME_TIMELINE_MAX"),
        (timeline_settings, {**BASE, "USERS_ADDR": "no-port"}, "USERS_ADDR"),
        (fanout_settings, {**BASE, "CELEBRITY_FOLLOWERS": "0"}, "CELEBRITY_FOLLOWERS"),
        (tweets_settings, {**BASE, "OUTBOX_SWEEP_SECONDS": "often"}, "OUTBOX_SWEEP_SECONDS"),
    ],
)
def test_bad_settings_of_one_service_name_the_variable(
    load: Callable[[Mapping[str, str]], Settings], env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load(env)


@pytest.mark.parametrize("load", [users_settings, tweets_settings, timeline_settings])
@pytest.mark.parametrize("secret", [None, "", " , ", "short", "a-long-enough-secret,short"])
def test_page_tokens_need_a_secret_of_their_own(
    load: Callable[[Mapping[str, str]], Settings], secret: str | None
) -> None:
    env = {k: v for k, v in BASE.items() if k != "PAGE_TOKEN_SECRET"}
    if secret is not None:
        env["PAGE_TOKEN_SECRET"] = secret
    with pytest.raises(SettingsError, match="PAGE_TOKEN_SECRET"):
        load(env)


def test_page_token_secrets_rotate_newest_first() -> None:
    settings = users_settings({**BASE, "PAGE_TOKEN_SECRET": "new-secret-0123456789, old-secret-0123456789"})
    assert settings.page_token_secrets == ("new-secret-0123456789", "old-secret-0123456789")


def test_services_without_a_database_do_not_need_one() -> None:
    for load in (fanout_settings, timeline_settings):
        env = {"REDIS_URL": "redis://r", "PAGE_TOKEN_SECRET": BASE["PAGE_TOKEN_SECRET"]}
        assert not hasattr(load(env), "database_url")


def test_a_service_reads_only_the_settings_it_uses() -> None:
    def fields(service: str) -> set[str]:
        return set(type(LOADERS[service](BASE)).__dataclass_fields__)

    assert "argon2_memory_kib" in fields("users") and "celebrity_followers" in fields("fanout")
    assert not {"argon2_memory_kib", "token_ttl_seconds", "celebrity_followers"} & fields("timeline")
    assert not {"home_timeline_max", "fanout_consumer", "argon2_time_cost"} & fields("tweets")
    assert not {"page_token_secrets", "trusted_proxies", "rate_limits"} & fields("fanout")


def test_metrics_ports_default_per_service_and_zero_disables() -> None:
    assert [LOADERS[s](BASE).metrics_port for s in ("users", "tweets", "fanout", "timeline")] == [
        9101,
        9102,
        9103,
        9104,
    ]
    assert users_settings({**BASE, "METRICS_PORT": "0"}).metrics_port == 0
    with pytest.raises(SettingsError, match="METRICS_PORT"):
        users_settings({**BASE, "METRICS_PORT": "-1"})


def test_peers_may_be_dns_targets_balanced_per_call() -> None:
    settings = timeline_settings({**BASE, "USERS_ADDR": "dns:///users-headless:50051"})
    assert settings.users_addr == "dns:///users-headless:50051"


def test_a_read_replica_is_optional_and_its_url_checked() -> None:
    for load in (users_settings, tweets_settings):
        assert load(BASE).database_read_url == ""
        assert load(BASE).read_max_lag_seconds == 5.0
        replica = "postgresql://replica/x"
        settings = load({**BASE, "DATABASE_READ_URL": replica, "DATABASE_READ_MAX_LAG_SECONDS": "2.5"})
        assert (settings.database_read_url, settings.read_max_lag_seconds) == (replica, 2.5)
        with pytest.raises(SettingsError, match="DATABASE_READ_URL"):
            load({**BASE, "DATABASE_READ_URL": "mysql://replica"})
        with pytest.raises(SettingsError, match="DATABASE_READ_MAX_LAG_SECONDS"):
            load({**BASE, "DATABASE_READ_MAX_LAG_SECONDS": "-1"})
    # Only the services that route reads to it read it.
    assert "database_read_url" not in type(LOADERS["timeline"](BASE)).__dataclass_fields__


def test_redis_cluster_is_a_switch_every_service_reads() -> None:
    for load in LOADERS.values():
        assert not load(BASE).redis_cluster
        assert not load({**BASE, "REDIS_CLUSTER": "0"}).redis_cluster
        assert load({**BASE, "REDIS_CLUSTER": "1"}).redis_cluster
        with pytest.raises(SettingsError, match="REDIS_CLUSTER"):
            load({**BASE, "REDIS_CLUSTER": "maybe"})


def test_outbox_replicas_are_refused_on_a_redis_cluster() -> None:
    # WAIT counts the replicas of one node, and a relay writes to several.
    for load in (users_settings, tweets_settings):
        assert load({**BASE, "REDIS_CLUSTER": "1"}).outbox_replicas == 0
        with pytest.raises(SettingsError, match="OUTBOX_REPLICAS"):
            load({**BASE, "REDIS_CLUSTER": "1", "OUTBOX_REPLICAS": "1"})
