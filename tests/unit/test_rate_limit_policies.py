"""The services' rate-limit policies cover every public RPC (writes, reads, stream opens; streams
are capped too), and callers are known by the right address."""

from __future__ import annotations

import ipaddress

import pytest

from devstack.envoy import DESCRIPTOR, public_rpcs
from media_svc import server as media_server
from media_svc.settings import load_settings as media_settings
from meshkit.errors import ResourceExhausted
from meshkit.ratelimit import Cap, Limit, OpenStreams, Scope, address_key, client_address, peer_address
from meshkit.settings import Rate, SettingsError
from notifications_svc import server as notifications_server
from notifications_svc.settings import load_settings as notifications_settings
from tests.helpers import WRITE_VERBS, rpc_routes
from timeline_svc import server as timeline_server
from timeline_svc.settings import load_settings as timeline_settings
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweets_svc import server as tweets_server
from tweets_svc.settings import load_settings as tweets_settings
from users_svc import server as users_server
from users_svc.settings import load_settings

BASE = {
    "DATABASE_URL": "postgresql://db/x",
    "REDIS_URL": "redis://r:6379/0",
    "PAGE_TOKEN_SECRET": "a-test-secret-of-some-length",
}
# Each service's policies, at the rates of its own settings.
timeline = timeline_settings(BASE)
media = media_settings(BASE)
SERVICES = [
    (users_server.RATE_LIMITS, load_settings(BASE).rate_limits, None),
    (tweets_server.RATE_LIMITS, tweets_settings(BASE).rate_limits, None),
    (timeline_server.RATE_LIMITS, timeline.rate_limits, timeline.stream_caps),
    (media_server.RATE_LIMITS, media.rate_limits, media.download_caps),
    (notifications_server.RATE_LIMITS, notifications_settings(BASE).rate_limits, None),
]
POLICIES = {method: policy for policies, _, _ in SERVICES for method, policy in policies.items()}


def _method(path: str) -> object:
    return users_pb.DESCRIPTOR.pool.FindMethodByName(path.strip("/").replace("/", "."))


def test_every_public_rpc_has_a_rate_limit() -> None:
    public = {path for path, verb in rpc_routes().items() if verb}
    assert {v for v in rpc_routes().values() if v} >= {"get", "post"}, "the descriptor walk is broken"
    missing = public - set(POLICIES)
    assert not missing, f"public RPCs without a policy in their service's server.py: {sorted(missing)}"
    assert set(POLICIES) <= public, "a policy names an internal or unknown RPC"


def test_every_limit_names_a_configured_rate_and_every_cap_a_number() -> None:
    for policies, rates, caps in SERVICES:
        for policy in policies.values():
            for limit in policy:
                if isinstance(limit, Limit):
                    assert isinstance(getattr(rates, limit.rate, None), Rate), limit
                else:
                    assert isinstance(getattr(caps, limit.limit, None), int), limit


def test_streams_are_capped_per_client_and_per_process_and_unary_calls_are_not() -> None:
    for path, policy in POLICIES.items():
        caps = {(cap.scope, cap.bucket) for cap in policy if isinstance(cap, Cap)}
        if _method(path).server_streaming:  # type: ignore[attr-defined]
            assert {(Scope.ADDRESS, "stream"), (Scope.PROCESS, "stream")} <= caps, path
            needs_token = path.rsplit("/", 1)[1] in SIGNED_IN_READS
            assert ((Scope.USER, "stream") in caps) == needs_token, path
        else:
            assert not caps, path


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
    writes = {path for path, verb in rpc_routes().items() if verb in WRITE_VERBS}
    for method in writes:
        scopes = {limit.scope for limit in POLICIES[method]}
        assert (Scope.USER in scopes) == (method not in not_per_user), method


# The reads that only serve the caller's own data (they need a token).
SIGNED_IN_READS = {
    "GetHomeTimeline",
    "StreamHomeTimeline",
    "ListBlocks",
    "ListMutes",
    "ListBookmarks",
    "ListSuggestions",
    "ListNotifications",
    "GetUnreadCount",
    "StreamNotifications",
}


def test_reads_are_counted_per_address_and_per_user_when_they_need_a_token() -> None:
    reads = {path for path, verb in rpc_routes().items() if verb == "get"}
    # A live stream draws from the stream-open budget; a download (bytes in a few messages) is a read.
    kinds = {rpc.path: rpc.kind for rpc in public_rpcs(DESCRIPTOR.read_bytes())}
    for method in reads:
        limits = {(limit.bucket, limit.scope) for limit in POLICIES[method] if isinstance(limit, Limit)}
        bucket = "stream" if kinds[method] == "stream" else "read"
        assert (bucket, Scope.ADDRESS) in limits, method
        assert ((bucket, Scope.USER) in limits) == (method.rsplit("/", 1)[1] in SIGNED_IN_READS), method


def buckets(method: str) -> set[tuple[str, str]]:
    """(bucket, whom it counts) of a users_svc method's rate limits."""
    return {
        (limit.bucket, limit.field or limit.scope.value)
        for limit in POLICIES[f"/tweetmesh.users.v1.UserService/{method}"]
        if isinstance(limit, Limit)
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
        # grpcio percent-encodes the brackets of an IPv6 peer.
        ("ipv6:%5B::1%5D:4242", "2001:db8::7", "2001:db8::7"),
        ("ipv6:%5B2001:db8::9%5D:4242", "203.0.113.5", "2001:db8::9"),
        ("ipv6:%5B::ffff:10.1.2.3%5D:4242", "203.0.113.5", "203.0.113.5"),  # IPv4 in IPv6, trusted
        ("ipv4:10.1.2.3:4242", None, "10.1.2.3"),
        ("ipv4:10.1.2.3:4242", "not an address", "10.1.2.3"),
        ("unix:/tmp/socket", "203.0.113.5", "unix:/tmp/socket"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    metadata = [("x-forwarded-for", forwarded)] if forwarded is not None else []
    assert client_address(peer, metadata, TRUSTED) == expected


def test_a_trusted_proxys_external_address_header_names_the_client() -> None:
    metadata = [("x-forwarded-for", "198.51.100.1"), ("x-envoy-external-address", "203.0.113.9")]
    assert client_address("ipv4:10.1.2.3:4242", metadata, TRUSTED) == "203.0.113.9"
    # Sent by anyone else, it is the client's own claim: ignored.
    assert client_address("ipv4:192.0.2.9:4242", metadata, TRUSTED) == "192.0.2.9"


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("203.0.113.5") == "203.0.113.5"
    assert peer_address("ipv6:%5B2001:db8::1%5D:443") == ipaddress.ip_address("2001:db8::1")


def test_open_streams_are_capped_per_key_and_released_when_they_end() -> None:
    streams = OpenStreams()
    with streams.hold([("stream:user:1", 2)]), streams.hold([("stream:user:1", 2)]):
        with pytest.raises(ResourceExhausted) as refused, streams.hold([("stream:user:1", 2)]):
            pass
        assert refused.value.reason == "TOO_MANY_STREAMS"
        with streams.hold([("stream:user:2", 2)]):  # another key has room
            pass
    with streams.hold([("stream:user:1", 2)]):  # released when the streams ended
        pass


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
