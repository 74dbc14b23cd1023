"""Settings come from the environment, validated, with messages that name the variable."""

import pytest

from meshkit.settings import SettingsError, load_settings

BASE = {"DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r:6379/0"}


def test_defaults_and_overrides() -> None:
    settings = load_settings("tweets", {**BASE, "HOME_TIMELINE_MAX": "50"})
    assert settings.grpc_port == 50052
    assert settings.users_addr == "127.0.0.1:50051"
    assert settings.home_timeline_max == 50
    assert load_settings("users", {**BASE, "GRPC_PORT": "6000"}).grpc_port == 6000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "redis://r"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://db/x"}, "REDIS_URL"),
        ({**BASE, "DATABASE_URL": "mysql://db"}, "DATABASE_URL"),
        ({**BASE, "GRPC_PORT": "eighty"}, "GRPC_PORT"),
        ({**BASE, "HOME_TIMELINE_MAX": "0"}, "HOME_TIMELINE_MAX"),
        ({**BASE, "USERS_ADDR": "no-port"}, "USERS_ADDR"),
        ({**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({**BASE, "RPC_DEADLINE_SECONDS": "soon"}, "RPC_DEADLINE_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings("users", env)


def test_services_without_a_database_do_not_need_one() -> None:
    assert load_settings("fanout", {"REDIS_URL": "redis://r"}, needs_database=False).database_url == ""


def test_metrics_ports_default_per_service_and_zero_disables() -> None:
    assert [load_settings(s, BASE).metrics_port for s in ("users", "tweets", "fanout", "timeline")] == [
        9101,
        9102,
        9103,
        9104,
    ]
    assert load_settings("users", {**BASE, "METRICS_PORT": "0"}).metrics_port == 0
    with pytest.raises(SettingsError, match="METRICS_PORT"):
        load_settings("users", {**BASE, "METRICS_PORT": "-1"})


def test_peers_may_be_dns_targets_balanced_per_call() -> None:
    settings = load_settings("timeline", {**BASE, "USERS_ADDR": "dns:///users-headless:50051"})
    assert settings.users_addr == "dns:///users-headless:50051"
