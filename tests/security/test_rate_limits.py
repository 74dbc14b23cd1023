"""Rate limits hold: write floods, sign-in brute force on one handle from many addresses, sign-up
floods; refused calls say when to come back (RetryInfo; HTTP 429 with Retry-After) and store nothing.

users_svc and tweets_svc are restarted with low limits for this module (and restored after), so the
limits are reached in a handful of calls. Direct calls come from 127.0.0.1, a trusted proxy by
default, so a test picks its client address with x-forwarded-for, as Envoy would set it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2

from devstack.mesh import Mesh
from devstack.smtp import read_mails
from meshkit.ratelimit import RateLimiter
from meshkit.rpc_details import error_details
from meshkit.settings import Rate
from social.limits import ClientRates
from tests.edge import edge_envoy
from tests.helpers import (
    PASSWORD,
    Account,
    Metadata,
    Stubs,
    http_call,
    redis_client,
    rpc_error,
    unique_handle,
)
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

LIMITS = {
    "RATE_LIMIT_WRITE_PER_USER": "5/60",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "8/60",
    "RATE_LIMIT_LOGIN_PER_ADDRESS": "6/60",
    "RATE_LIMIT_LOGIN_PER_ACCOUNT": "3/60",
    "RATE_LIMIT_SIGNUP_PER_ADDRESS": "2/60",
    "RATE_LIMIT_RESET_PER_ADDRESS": "4/60",
    "RATE_LIMIT_RESET_PER_EMAIL": "3/60",
    "RATE_LIMIT_MAIL_PER_ACCOUNT": "2/60",
}
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


def _forget_limits(mesh: Mesh) -> None:
    r = redis_client(mesh.redis_url)
    for key in r.scan_iter("ratelimit:*"):
        r.delete(key)


@pytest.fixture(scope="module")
def tight(mesh: Mesh) -> Iterator[None]:
    _forget_limits(mesh)
    for name in ("users", "tweets"):
        mesh.start_service(name, LIMITS)
    try:
        yield
    finally:
        for name in ("users", "tweets"):
            mesh.start_service(name)
        _forget_limits(mesh)


def fresh_address() -> Metadata:
    return (("x-forwarded-for", next(_addresses)),)


def sign_up(stubs: Stubs, prefix: str) -> Account:
    """An account made and logged in from addresses of its own, so no test's budget is spent."""
    handle = unique_handle(prefix)
    stubs.users.CreateUser(
        users_pb.CreateUserRequest(handle=handle, password=PASSWORD), metadata=fresh_address(), timeout=10
    )
    login = stubs.users.Login(
        users_pb.LoginRequest(handle=handle, password=PASSWORD), metadata=fresh_address(), timeout=10
    )
    return Account(login.user, login.token)


def retry_delay(error: grpc.RpcError) -> float:
    infos = error_details(error, error_details_pb2.RetryInfo)
    assert infos, "no RetryInfo in the error details"
    return float(infos[0].retry_delay.ToTimedelta().total_seconds())


def assert_rate_limited(error: grpc.RpcError) -> None:
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert 0 < retry_delay(error) <= 60


def post(stubs: Stubs, author: Account, text: str, address: Metadata) -> Any:
    return stubs.tweets.CreateTweet(
        tweets_pb.CreateTweetRequest(text=text), metadata=author.auth + address, timeout=10
    )


def test_a_write_flood_is_cut_per_user_whatever_the_address(stubs: Stubs, tight: None) -> None:
    author = sign_up(stubs, "flood")
    for n in range(5):
        post(stubs, author, f"post {n}", fresh_address())
    before = stubs.snapshot(author)
    error = rpc_error(lambda: post(stubs, author, "one too many", fresh_address()))
    assert_rate_limited(error)
    assert stubs.snapshot(author) == before
    assert len(before[1][0]) == 5


def test_who_spent_their_write_budget_can_still_log_out(stubs: Stubs, tight: None) -> None:
    author = sign_up(stubs, "spent")
    for n in range(5):
        post(stubs, author, f"post {n}", fresh_address())
    assert_rate_limited(rpc_error(lambda: post(stubs, author, "one too many", fresh_address())))
    stubs.users.Logout(users_pb.LogoutRequest(), metadata=author.auth + fresh_address())
    error = rpc_error(lambda: post(stubs, author, "after logout", fresh_address()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_writes_are_limited_per_client_address(stubs: Stubs, tight: None) -> None:
    first, second = sign_up(stubs, "nat1"), sign_up(stubs, "nat2")
    shared = fresh_address()  # two people behind one address
    for n in range(5):
        post(stubs, first, f"first {n}", shared)
    for n in range(3):
        post(stubs, second, f"second {n}", shared)
    before = stubs.snapshot(first, second)
    assert_rate_limited(rpc_error(lambda: post(stubs, second, "over the address budget", shared)))
    assert stubs.snapshot(first, second) == before
    post(stubs, second, "from elsewhere", fresh_address())  # the user still has room of their own


def test_follows_draw_from_the_same_write_budget(stubs: Stubs, tight: None) -> None:
    actor = sign_up(stubs, "follower")
    others = [sign_up(stubs, "target") for _ in range(6)]
    for other in others[:5]:
        stubs.users.FollowUser(
            users_pb.FollowUserRequest(user_id=other.user_id), metadata=actor.auth + fresh_address()
        )
    before = stubs.snapshot(actor, others[5])
    error = rpc_error(
        lambda: stubs.users.FollowUser(
            users_pb.FollowUserRequest(user_id=others[5].user_id), metadata=actor.auth + fresh_address()
        )
    )
    assert_rate_limited(error)
    assert stubs.snapshot(actor, others[5]) == before


def login(stubs: Stubs, handle: str, password: str, address: Metadata) -> Any:
    return stubs.users.Login(users_pb.LoginRequest(handle=handle, password=password), metadata=address)


def test_password_guessing_on_one_handle_is_slowed_whatever_the_address(stubs: Stubs, tight: None) -> None:
    handle = unique_handle("victim")
    stubs.users.CreateUser(
        users_pb.CreateUserRequest(handle=handle, password=PASSWORD), metadata=fresh_address()
    )
    for guess in ("password1", "letmein!!", "123456789"):
        error = rpc_error(functools.partial(login, stubs, handle, guess, fresh_address()))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # Each guess came from another address; the handle's budget is spent all the same, and the
    # refusal comes before the password is even checked: the right one is refused too, for now.
    assert_rate_limited(rpc_error(lambda: login(stubs, handle.upper(), "qwertyuiop", fresh_address())))
    assert_rate_limited(rpc_error(lambda: login(stubs, handle, PASSWORD, fresh_address())))
    other = sign_up(stubs, "bystander")
    assert login(stubs, other.user.handle, PASSWORD, fresh_address()).token


def test_sign_in_attempts_are_limited_per_address(stubs: Stubs, tight: None) -> None:
    address = fresh_address()
    for n in range(6):
        error = rpc_error(functools.partial(login, stubs, f"nobody_{n}", "wrong password", address))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert_rate_limited(rpc_error(lambda: login(stubs, "nobody_7", "wrong password", address)))


def test_sign_ups_are_limited_per_address_and_the_refused_one_is_not_created(
    stubs: Stubs, tight: None
) -> None:
    address = fresh_address()
    for _ in range(2):
        stubs.users.CreateUser(
            users_pb.CreateUserRequest(handle=unique_handle("bulk"), password=PASSWORD), metadata=address
        )
    handle = unique_handle("bulk")
    error = rpc_error(
        lambda: stubs.users.CreateUser(
            users_pb.CreateUserRequest(handle=handle, password=PASSWORD), metadata=address
        )
    )
    assert_rate_limited(error)
    missing = rpc_error(lambda: stubs.users.GetUserByHandle(users_pb.GetUserByHandleRequest(handle=handle)))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def ask_reset(stubs: Stubs, email: str, address: Metadata) -> Any:
    return stubs.users.RequestPasswordReset(
        users_pb.RequestPasswordResetRequest(email=email), metadata=address
    )


def verified_address(stubs: Stubs, mesh: Mesh) -> str:
    """The address of a new account, verified with the token mailed to it."""
    assert mesh.mail_dir is not None
    email = f"{unique_handle('reset')}@example.com"
    stubs.users.CreateUser(
        users_pb.CreateUserRequest(handle=unique_handle("reset"), password=PASSWORD, email=email),
        metadata=fresh_address(),
    )
    (mail,) = read_mails(mesh.mail_dir, email, timeout=30)
    token = str(mail.get_body(("plain",)).get_content()).split("token=")[1].split()[0]  # type: ignore[union-attr]
    stubs.users.VerifyEmail(users_pb.VerifyEmailRequest(token=token), metadata=fresh_address())
    return email


def test_reset_mails_are_bounded_per_account_and_asking_per_address_asked_about(
    stubs: Stubs, mesh: Mesh, tight: None
) -> None:
    """Three asks for one address from three client addresses are answered alike, but the account
    gets two mails (its mail budget; nothing tells the asker); the fourth ask for that address is
    refused whoever asks (429 says nothing of the account: unknown addresses are counted alike),
    while asks for other addresses go on."""
    assert mesh.mail_dir is not None
    email = verified_address(stubs, mesh)
    for spelling in (email, email.upper(), email.capitalize()):
        ask_reset(stubs, spelling, fresh_address())
    assert_rate_limited(rpc_error(lambda: ask_reset(stubs, email, fresh_address())))
    time.sleep(1)  # a third mail would have been sent by now
    resets = [
        m for m in read_mails(mesh.mail_dir, email, at_least=3, timeout=30) if "Reset" in str(m["Subject"])
    ]
    assert len(resets) == 2
    unknown = f"{unique_handle('nobody')}@example.com"
    for _ in range(3):
        ask_reset(stubs, unknown, fresh_address())
    assert_rate_limited(rpc_error(lambda: ask_reset(stubs, unknown, fresh_address())))
    ask_reset(stubs, f"{unique_handle('other')}@example.com", fresh_address())


def test_reset_asks_are_limited_per_client_address(stubs: Stubs, tight: None) -> None:
    address = fresh_address()
    for _ in range(4):
        ask_reset(stubs, f"{unique_handle('many')}@example.com", address)
    assert_rate_limited(rpc_error(lambda: ask_reset(stubs, f"{unique_handle('many')}@example.com", address)))


def test_sign_in_by_email_is_limited_per_address_signed_in_with(
    stubs: Stubs, mesh: Mesh, tight: None
) -> None:
    email = verified_address(stubs, mesh)

    def login_email(password: str, spelling: str = email) -> Any:
        request = users_pb.LoginRequest(email=spelling, password=password)
        return stubs.users.Login(request, metadata=fresh_address())

    for guess in ("password1", "letmein!!", "123456789"):
        assert rpc_error(functools.partial(login_email, guess)).code() == grpc.StatusCode.UNAUTHENTICATED
    assert_rate_limited(rpc_error(lambda: login_email(PASSWORD, email.upper())))


def test_through_envoy_a_flood_gets_429_with_retry_after(stubs: Stubs, mesh: Mesh, tight: None) -> None:
    author = sign_up(stubs, "httpflood")
    statuses = [
        http_call(mesh.ports.envoy, "POST", "/v1/tweets", {"text": f"via http {n}"}, token=author.token)
        for n in range(6)
    ]
    assert [s.status for s in statuses] == [200] * 5 + [429], statuses[-1].body
    refused = statuses[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert any(d["@type"].endswith("google.rpc.RetryInfo") for d in body["details"])
    assert len(stubs.snapshot(author)[1][0]) == 5


def test_through_envoy_a_forged_forwarded_for_does_not_buy_more_sign_ups(mesh: Mesh, tight: None) -> None:
    """Envoy appends the address it saw; the services believe only that last hop."""
    _forget_limits(mesh)  # this module's other calls via Envoy share Envoy's client address
    statuses = []
    for n in range(3):
        response = http_call(
            mesh.ports.envoy,
            "POST",
            "/v1/users",
            {"handle": unique_handle("forged"), "password": PASSWORD},
            headers={"x-forwarded-for": f"203.0.113.{n}"},
        )
        statuses.append(response.status)
    assert statuses == [200, 200, 429]


def test_behind_a_load_balancer_each_client_is_counted_by_its_own_address(mesh: Mesh, tight: None) -> None:
    """An Envoy configured for one proxy in front (xff_trusted_hops 1), reached by every client
    through that proxy (one TCP peer, 127.0.0.2, appending each client's address): the services
    count sign-ups by the client's address Envoy determined, not by the proxy's, and what a
    client put in x-forwarded-for itself buys it nothing."""
    _forget_limits(mesh)

    def sign_up_via(port: int, forwarded_for: str) -> int:
        return http_call(
            port,
            "POST",
            "/v1/users",
            {"handle": unique_handle("balanced"), "password": PASSWORD},
            headers={"x-forwarded-for": forwarded_for},
            source="127.0.0.2",
        ).status

    with edge_envoy(mesh, xff_trusted_hops=1) as edge:
        first = [sign_up_via(edge.port, "198.51.100.201") for _ in range(3)]
        second = [sign_up_via(edge.port, "198.51.100.202") for _ in range(2)]
        # A client claiming other addresses before the one the balancer appended.
        forged = [sign_up_via(edge.port, f"203.0.113.{n}, 198.51.100.202") for n in range(2)]
    assert (first, second, forged) == ([200, 200, 429], [200, 200], [429, 429])


async def test_concurrent_calls_cannot_overdraw_a_bucket(mesh: Mesh) -> None:
    client = aioredis.Redis.from_url(mesh.redis_url)
    try:
        limiter = RateLimiter(client, ClientRates())
        bucket = [(f"ratelimit:race:{secrets.token_hex(4)}", Rate(10, 60))]
        waits = await asyncio.gather(*(limiter.charge(bucket) for _ in range(50)))
    finally:
        await client.aclose()
    assert sum(1 for wait in waits if wait == 0) == 10
    assert all(0 < wait <= 60_000 for wait in waits if wait)


async def test_a_refused_call_charges_none_of_its_buckets(mesh: Mesh) -> None:
    client = aioredis.Redis.from_url(mesh.redis_url)
    try:
        limiter = RateLimiter(client, ClientRates())
        roomy = (f"ratelimit:roomy:{secrets.token_hex(4)}", Rate(2, 60))
        full = (f"ratelimit:full:{secrets.token_hex(4)}", Rate(1, 60))
        assert await limiter.charge([full]) == 0
        assert await limiter.charge([roomy, full]) > 0  # refused: the second bucket is empty
        waits = [await limiter.charge([roomy]) for _ in range(3)]
        assert waits[:2] == [0, 0] and waits[2] > 0  # the refused call took none of roomy's two
    finally:
        await client.aclose()
