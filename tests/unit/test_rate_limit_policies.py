"""The services' rate-limit policies cover every public write, and callers are known by the right
address."""

from __future__ import annotations

import ipaddress

import pytest

from meshkit.ratelimit import Limit, Scope, client_address
from meshkit.settings import Rate, SettingsError
from tests.helpers import WRITE_VERBS, rpc_routes
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweets_svc import server as tweets_server
from tweets_svc.settings import load_settings as tweets_settings
from users_svc import server as users_server
from users_svc.settings import load_settings

BASE = {"DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r:6379/0"}
# Each service's policies, at the rates of its own settings.
SERVICES = [
    (users_server.RATE_LIMITS, load_settings(BASE).rate_limits),
    (tweets_server.RATE_LIMITS, tweets_settings(BASE).rate_limits),
]
POLICIES = {method: policy for policies, _ in SERVICES for method, policy in policies.items()}


def test_every_public_write_has_a_rate_limit() -> None:
    writes = {path for path, verb in rpc_routes().items() if verb in WRITE_VERBS}
    assert writes, "no public write found: the descriptor walk is broken"
    missing = writes - set(POLICIES)
    assert not missing, (
        f"public writes without a rate-limit policy in their service's server.py: {sorted(missing)}"
    )


def test_every_limit_names_a_configured_rate() -> None:
    for policies, rates in SERVICES:
        for policy in policies.values():
            for limit in policy:
                assert isinstance(getattr(rates, limit.rate, None), Rate), limit


def test_every_policy_names_a_real_unary_method() -> None:
    assert set(POLICIES) <= set(rpc_routes())
    for path in POLICIES:
        method = users_pb.DESCRIPTOR.pool.FindMethodByName(path.strip("/").replace("/", "."))
        assert not method.server_streaming and not method.client_streaming, path


def test_every_write_but_sign_up_sign_in_and_logout_is_counted_per_user() -> None:
    not_per_user = {
        "/tweetmesh.users.v1.UserService/CreateUser",
        "/tweetmesh.users.v1.UserService/Login",
        "/tweetmesh.users.v1.UserService/Logout",  # always possible, bounded per address
        # Made without a session (a link from a mail, a forgotten password): per address.
        "/tweetmesh.users.v1.UserService/VerifyEmail",
        "/tweetmesh.users.v1.UserService/RequestPasswordReset",
        "/tweetmesh.users.v1.UserService/ResetPassword",
    }
    for method, policy in POLICIES.items():
        assert (Scope.USER in {limit.scope for limit in policy}) == (method not in not_per_user), method


def buckets(method: str) -> set[tuple[str, str]]:
    """(bucket, whom it counts) of a users_svc method's policy."""
    return {
        (limit.bucket, limit.field or limit.scope.value)
        for limit in POLICIES[f"/tweetmesh.users.v1.UserService/{method}"]
    }


def test_login_and_signup_are_limited_by_address_and_login_by_account() -> None:
    assert buckets("Login") == {("login", "address"), ("login", "handle"), ("login", "email")}
    assert buckets("CreateUser") == {("signup", "address")}


def test_password_resets_are_limited_per_address_and_per_address_asked_about() -> None:
    assert buckets("RequestPasswordReset") == {("reset", "address"), ("reset", "email")}
    # Trying a reset token is a sign-in.
    assert buckets("ResetPassword") == {("login", "address")}


def test_a_field_limit_names_its_field() -> None:
    with pytest.raises(ValueError, match="field"):
        Limit("login", Scope.FIELD, "login_per_account")
    with pytest.raises(ValueError, match="field"):
        Limit("login", Scope.ADDRESS, "login_per_address", field="handle")


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # An untrusted peer is known by its own address, whatever it claims.
        ("ipv4:192.0.2.9:4242", "203.0.113.5", "192.0.2.9"),
        # A trusted proxy's last hop is the client it saw; earlier hops are the client's claims.
        ("ipv4:10.1.2.3:4242", "198.51.100.1, 203.0.113.5", "203.0.113.5"),
        ("ipv6:[::1]:4242", "2001:db8::7", "2001:db8::7"),
        ("ipv4:10.1.2.3:4242", None, "10.1.2.3"),
        ("ipv4:10.1.2.3:4242", "not an address", "10.1.2.3"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    metadata = [("x-forwarded-for", forwarded)] if forwarded is not None else []
    assert client_address(peer, metadata, TRUSTED) == expected


def test_rate_limit_settings() -> None:
    defaults = load_settings(BASE)
    assert defaults.rate_limits.write_per_user == Rate(300, 300)
    assert defaults.rate_limits.login_per_account.count < defaults.rate_limits.write_per_user.count
    tuned = load_settings({**BASE, "RATE_LIMIT_LOGIN_PER_ACCOUNT": "5/60", "TRUSTED_PROXIES": "10.0.0.0/8"})
    assert tuned.rate_limits.login_per_account == Rate(5, 60)
    assert tuned.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_WRITE_PER_USER", "lots"),
        ("RATE_LIMIT_WRITE_PER_USER", "0/60"),
        ("RATE_LIMIT_SIGNUP_PER_ADDRESS", "5/-1"),
        ("TRUSTED_PROXIES", "envoy"),
    ],
)
def test_bad_rate_limit_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, name: value})
