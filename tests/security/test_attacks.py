"""The attack suite: each hostile call gets its expected status, and after every refused one nothing
stored has changed. Run straight at the services and through Envoy (native gRPC and HTTP/JSON)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import psycopg
import pytest

from devstack.mesh import Mesh
from meshkit.auth import new_token
from tests.helpers import PASSWORD, WRITE_VERBS, Account, Stubs, bearer, http_call, rpc_error, rpc_routes
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

C = grpc.StatusCode
INJECTIONS = [
    "'; DROP TABLE tweets; --",
    '" OR "1"="1',
    "<script>alert('x')</script>",
    "{{7*7}} ${7*7} %s %n",
    "${jndi:ldap://example.invalid/a}",
    "../../../../etc/passwd",
    "\\x00 NUL-looking, \u202e right-to-left, 👩‍👩‍👧 family",
]


@dataclass
class People:
    actor: Account
    other: Account
    expired: str  # a token of actor's that has expired
    logged_out: str  # a token of actor's that was logged out
    others_tweet: str

    def accounts(self) -> list[Account]:
        return [self.actor, self.other]


def _expired_token(mesh: Mesh, account: Account) -> str:
    token = new_token()
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users.sessions (token_hash, user_id, expire_time) VALUES (%s, %s, now() - %s)",
            (hashlib.sha256(token.encode()).digest(), int(account.user_id), timedelta(minutes=1)),
        )
    return token


@pytest.fixture(scope="module")
def people(stubs: Stubs, mesh: Mesh) -> People:
    actor, other = stubs.sign_up("actor"), stubs.sign_up("target")
    stubs.follow(actor, other)
    stubs.follow(actor, stubs.sign_up("another"))
    stubs.post(actor, "actor's tweet")
    others_tweet = stubs.post(other, "target's tweet").tweet_id
    login = stubs.users.Login(users_pb.LoginRequest(handle=actor.user.handle, password=PASSWORD))
    stubs.users.Logout(users_pb.LogoutRequest(), metadata=bearer(login.token))
    return People(actor, other, _expired_token(mesh, actor), login.token, others_tweet)


@pytest.fixture(scope="module", params=["direct", "envoy"])
def transport(request: pytest.FixtureRequest, mesh: Mesh, stubs: Stubs) -> Iterator[tuple[str, Stubs]]:
    """The generated stubs straight at each service, or all of them at Envoy's port."""
    if request.param == "direct":
        yield "direct", stubs
        return
    envoy = f"127.0.0.1:{mesh.ports.envoy}"
    through = Stubs.through(envoy)
    yield "envoy", through
    through.close()


def post_as(token_of: Callable[[People], str]) -> Callable[[Stubs, People], Any]:
    return lambda s, p: s.tweets.CreateTweet(
        tweets_pb.CreateTweetRequest(text="not mine to post"), metadata=bearer(token_of(p)), timeout=10
    )


def raw_call(
    stub_channel_of: Callable[[Stubs], Any], method: str, payload: bytes
) -> Callable[[Stubs, People], Any]:
    """A unary call with hand-made request bytes (what a generated stub would never send)."""

    def call(s: Stubs, p: People) -> Any:
        channel = stub_channel_of(s)
        invoke = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return invoke(payload, metadata=p.actor.auth, timeout=10)

    return call


def _tweets_channel(s: Stubs) -> grpc.Channel:
    return s._channels[1]


def _string_field(number: int, data: bytes) -> bytes:
    return bytes([number << 3 | 2, len(data)]) + data


def follow_page_token(s: Stubs, p: People) -> str:
    """A genuine page token, but of another list than the one it is used on."""
    page = s.users.ListFollowing(users_pb.ListFollowingRequest(user_id=p.actor.user_id, page_size=1))
    assert page.next_page_token, "the actor follows two people: the first page has a next one"
    return page.next_page_token


CASES: list[tuple[str, grpc.StatusCode, Callable[[Stubs, People], Any]]] = [
    # Forged, expired and revoked tokens.
    (
        "post without a token",
        C.UNAUTHENTICATED,
        lambda s, p: s.tweets.CreateTweet(tweets_pb.CreateTweetRequest(text="x")),
    ),
    ("post with a forged token", C.UNAUTHENTICATED, post_as(lambda p: new_token())),
    ("post with a token of the wrong shape", C.UNAUTHENTICATED, post_as(lambda p: p.actor.token[:-1])),
    ("post with an expired token", C.UNAUTHENTICATED, post_as(lambda p: p.expired)),
    ("post with a logged-out token", C.UNAUTHENTICATED, post_as(lambda p: p.logged_out)),
    (
        "post with basic auth",
        C.UNAUTHENTICATED,
        lambda s, p: s.tweets.CreateTweet(
            tweets_pb.CreateTweetRequest(text="x"), metadata=(("authorization", "Basic YWRtaW46YWRtaW4="),)
        ),
    ),
    (
        "follow with a forged token",
        C.UNAUTHENTICATED,
        lambda s, p: s.users.FollowUser(
            users_pb.FollowUserRequest(user_id=p.other.user_id), metadata=bearer(new_token())
        ),
    ),
    (
        "unfollow with an expired token",
        C.UNAUTHENTICATED,
        lambda s, p: s.users.UnfollowUser(
            users_pb.UnfollowUserRequest(user_id=p.other.user_id), metadata=bearer(p.expired)
        ),
    ),
    (
        "log out with a forged token",
        C.UNAUTHENTICATED,
        lambda s, p: s.users.Logout(users_pb.LogoutRequest(), metadata=bearer(new_token())),
    ),
    (
        "read a home timeline with a logged-out token",
        C.UNAUTHENTICATED,
        lambda s, p: s.timeline.GetHomeTimeline(
            timeline_pb.GetHomeTimelineRequest(), metadata=bearer(p.logged_out)
        ),
    ),
    (
        "open a home stream with a forged token",
        C.UNAUTHENTICATED,
        lambda s, p: next(
            iter(
                s.timeline.StreamHomeTimeline(
                    timeline_pb.StreamHomeTimelineRequest(), metadata=bearer(new_token()), timeout=10
                )
            )
        ),
    ),
    # Acting as another user.
    (
        "change another user's password",
        C.PERMISSION_DENIED,
        lambda s, p: s.users.ChangePassword(
            users_pb.ChangePasswordRequest(
                user_id=p.other.user_id, old_password=PASSWORD, new_password="taken over!"
            ),
            metadata=p.actor.auth,
        ),
    ),
    (
        "change a password without the old one",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.ChangePassword(
            users_pb.ChangePasswordRequest(
                user_id=p.actor.user_id, old_password="guess guess", new_password="taken over!"
            ),
            metadata=p.actor.auth,
        ),
    ),
    (
        "delete another user's tweet",
        C.PERMISSION_DENIED,
        lambda s, p: s.tweets.DeleteTweet(
            tweets_pb.DeleteTweetRequest(tweet_id=p.others_tweet), metadata=p.actor.auth
        ),
    ),
    (
        "edit another user's profile",
        C.PERMISSION_DENIED,
        lambda s, p: s.users.UpdateUser(
            users_pb.UpdateUserRequest(user_id=p.other.user_id, display_name="pwned", bio="pwned"),
            metadata=p.actor.auth,
        ),
    ),
    (
        "like with a forged token",
        C.UNAUTHENTICATED,
        lambda s, p: s.tweets.LikeTweet(
            tweets_pb.LikeTweetRequest(tweet_id=p.others_tweet), metadata=bearer(new_token())
        ),
    ),
    (
        "retweet with an expired token",
        C.UNAUTHENTICATED,
        lambda s, p: s.tweets.Retweet(
            tweets_pb.RetweetRequest(tweet_id=p.others_tweet), metadata=bearer(p.expired)
        ),
    ),
    (
        "delete with a logged-out token",
        C.UNAUTHENTICATED,
        lambda s, p: s.tweets.DeleteTweet(
            tweets_pb.DeleteTweetRequest(tweet_id=p.others_tweet), metadata=bearer(p.logged_out)
        ),
    ),
    (
        "edit a profile without a token",
        C.UNAUTHENTICATED,
        lambda s, p: s.users.UpdateUser(
            users_pb.UpdateUserRequest(user_id=p.actor.user_id, display_name="anon")
        ),
    ),
    # Path tricks and injection in ids.
    (
        "a user id climbing paths",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id="../../etc/passwd")),
    ),
    (
        "a user id with SQL",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id="1 OR 1=1")),
    ),
    (
        "a negative user id",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id="-1")),
    ),
    (
        "a user id in other digits",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id="\uff11\uff12\uff13")),
    ),
    (
        "a user id past 64 bits",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id="9" * 30)),
    ),
    (
        "follow a user id with a slash",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.FollowUser(
            users_pb.FollowUserRequest(user_id=f"{p.other.user_id}/../1"), metadata=p.actor.auth
        ),
    ),
    (
        "a tweet id with SQL",
        C.INVALID_ARGUMENT,
        lambda s, p: s.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id="1; DROP TABLE tweets")),
    ),
    # Pages.
    (
        "a negative page size",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.ListFollowers(
            users_pb.ListFollowersRequest(user_id=p.other.user_id, page_size=-5)
        ),
    ),
    (
        "a malformed page token",
        C.INVALID_ARGUMENT,
        lambda s, p: s.tweets.ListUserTweets(
            tweets_pb.ListUserTweetsRequest(user_id=p.actor.user_id, page_token="' OR 1=1 --")
        ),
    ),
    (
        "a page token from another list",
        C.INVALID_ARGUMENT,
        lambda s, p: s.users.ListFollowers(
            users_pb.ListFollowersRequest(user_id=p.other.user_id, page_token=follow_page_token(s, p))
        ),
    ),
    # Hand-made bytes.
    (
        "invalid UTF-8 in a string field",
        C.INVALID_ARGUMENT,
        raw_call(
            _tweets_channel,
            "/tweetmesh.tweets.v1.TweetService/CreateTweet",
            _string_field(1, b"\xff\xfe bad"),
        ),
    ),
    (
        "bytes that are no message at all",
        C.INVALID_ARGUMENT,
        raw_call(
            _tweets_channel, "/tweetmesh.tweets.v1.TweetService/CreateTweet", b"\x0a\xff\xff\xff\xff\x0f"
        ),
    ),
]


@pytest.mark.parametrize(("name", "code", "call"), CASES, ids=[c[0] for c in CASES])
def test_refused_and_nothing_changed(
    stubs: Stubs,
    people: People,
    transport: tuple[str, Stubs],
    name: str,
    code: grpc.StatusCode,
    call: Callable[[Stubs, People], Any],
) -> None:
    _, via = transport
    before = stubs.snapshot(*people.accounts())
    error = rpc_error(lambda: call(via, people))
    assert error.code() == code, f"{name}: {error.code()} {error.details()}"
    assert stubs.snapshot(*people.accounts()) == before


OVERSIZED = tweets_pb.CreateTweetRequest(text="x" * (5 * 1024 * 1024))


@pytest.mark.parametrize(
    ("route", "code"),
    # Straight at a service gRPC's own 4 MiB cap answers; Envoy's 64 KiB body limit (HTTP 413)
    # reaches a gRPC client as UNKNOWN, gRPC's mapping of an HTTP status it has no code for.
    [("direct", C.RESOURCE_EXHAUSTED), ("envoy", C.UNKNOWN)],
)
def test_an_oversized_message_is_refused(
    stubs: Stubs, mesh: Mesh, people: People, route: str, code: grpc.StatusCode
) -> None:
    address = f"127.0.0.1:{mesh.ports.tweets if route == 'direct' else mesh.ports.envoy}"
    before = stubs.snapshot(*people.accounts())
    via = Stubs.through(address)
    try:
        error = rpc_error(lambda: via.tweets.CreateTweet(OVERSIZED, metadata=people.actor.auth, timeout=10))
    finally:
        via.close()
    assert error.code() == code, error.details()
    assert stubs.snapshot(*people.accounts()) == before


INTERNAL_RPCS = [method for method, verb in rpc_routes().items() if not verb]
# Writes made without a session: signing up or in, and what a mailed link or a forgotten password allows.
ANONYMOUS_WRITES = {
    f"/tweetmesh.users.v1.UserService/{method}"
    for method in ("CreateUser", "Login", "VerifyEmail", "RequestPasswordReset", "ResetPassword")
}
TOKEN_WRITES = [m for m, verb in rpc_routes().items() if verb in WRITE_VERBS and m not in ANONYMOUS_WRITES]


@pytest.mark.parametrize("token", ["none", "forged", "expired", "logged_out"])
@pytest.mark.parametrize("method", TOKEN_WRITES)
def test_every_write_needs_a_live_token(
    stubs: Stubs, mesh: Mesh, people: People, method: str, token: str
) -> None:
    """Read from the descriptors, so a write added later is covered at once; an empty request is
    valid for every method, so only the token can be what is refused."""
    metadata = (
        ()
        if token == "none"
        else bearer(
            {"forged": new_token(), "expired": people.expired, "logged_out": people.logged_out}[token]
        )
    )
    service = method.split(".")[1]  # /tweetmesh.<service>.v1...
    before = stubs.snapshot(*people.accounts())
    for port in (mesh.ports.of(service), mesh.ports.envoy):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            invoke: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
            error = rpc_error(functools.partial(invoke, b"", metadata=metadata, timeout=10))
        assert error.code() == C.UNAUTHENTICATED, (port, error.details())
    assert stubs.snapshot(*people.accounts()) == before


def test_the_internal_rpcs_are_found() -> None:
    assert "/tweetmesh.users.v1.UserService/AuthenticateToken" in INTERNAL_RPCS
    assert "/tweetmesh.fanout.v1.FanoutService/GetFanoutStats" in INTERNAL_RPCS


@pytest.mark.parametrize("method", INTERNAL_RPCS)
def test_internal_rpcs_are_not_reachable_through_envoy(mesh: Mesh, method: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{mesh.ports.envoy}") as channel:
        # An empty message is a valid request of any type: the refusal must come from Envoy.
        invoke: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        error = rpc_error(lambda: invoke(b"", timeout=10))
    assert error.code() == C.UNIMPLEMENTED, error.details()
    assert http_call(mesh.ports.envoy, "POST", method, {}).status == 404


# ----- over HTTP/JSON through Envoy


@dataclass(frozen=True)
class HttpCase:
    name: str
    status: int
    method: str
    path: str  # {actor} and {other} stand for the user ids, {others_tweet} for a tweet of other's
    body: Any = None
    raw: bytes | None = None
    token: str = "actor"  # actor, none, forged, expired, logged_out
    headers: tuple[tuple[str, str], ...] = ()


HTTP_CASES = [
    HttpCase("post without a token", 401, "POST", "/v1/tweets", {"text": "x"}, token="none"),
    HttpCase("post with a forged token", 401, "POST", "/v1/tweets", {"text": "x"}, token="forged"),
    HttpCase("post with an expired token", 401, "POST", "/v1/tweets", {"text": "x"}, token="expired"),
    HttpCase(
        "follow with a logged-out token", 401, "POST", "/v1/users/{other}:follow", {}, token="logged_out"
    ),
    HttpCase(
        "change another user's password",
        403,
        "POST",
        "/v1/users/{other}:changePassword",
        {"old_password": PASSWORD, "new_password": "taken over!"},
    ),
    HttpCase("delete another user's tweet", 403, "DELETE", "/v1/tweets/{others_tweet}"),
    HttpCase("edit another user's profile", 403, "PATCH", "/v1/users/{other}", {"display_name": "pwned"}),
    HttpCase("like with a forged token", 401, "POST", "/v1/tweets/{others_tweet}:like", {}, token="forged"),
    HttpCase("a body over 64 KiB", 413, "POST", "/v1/tweets", {"text": "x" * 70_000}),
    HttpCase("malformed JSON", 400, "POST", "/v1/tweets", raw=b'{"text": "unterminated'),
    HttpCase("JSON that is not an object", 400, "POST", "/v1/tweets", raw=b'["text", "x"]'),
    HttpCase("a number where text goes", 400, "POST", "/v1/tweets", raw=b'{"text": 5}'),
    HttpCase("invalid UTF-8", 400, "POST", "/v1/tweets", raw=b'{"text": "\xff\xfe"}'),
    HttpCase("an over-long tweet", 400, "POST", "/v1/tweets", {"text": "x" * 281}),
    HttpCase("an encoded path climb in an id", 400, "GET", "/v1/users/..%2F..%2Fetc%2Fpasswd"),
    HttpCase("a path climb", 404, "GET", "/v1/users/../../etc/passwd"),
    HttpCase("an encoded slash in an id", 400, "POST", "/v1/users/{other}%2F..%2F1:follow", {}),
    HttpCase("a NUL in an id", 400, "GET", "/v1/users/%00"),
    HttpCase("SQL in an id", 400, "DELETE", "/v1/tweets/1%3B%20DROP%20TABLE%20tweets"),
    HttpCase("an unknown query parameter", 400, "GET", "/v1/users/{actor}?admin=true"),
    HttpCase("a negative page size", 400, "GET", "/v1/users/{actor}/followers?page_size=-5"),
    HttpCase("a page size past int32", 400, "GET", "/v1/users/{actor}/followers?page_size=99999999999"),
    HttpCase("a malformed page token", 400, "GET", "/v1/users/{actor}/tweets?page_token=%27%20OR%201%3D1"),
    HttpCase(
        "an internal RPC by its gRPC path",
        404,
        "POST",
        "/tweetmesh.users.v1.UserService/AuthenticateToken",
        {},
    ),
    HttpCase("the fan-out admin API", 404, "POST", "/tweetmesh.fanout.v1.FanoutService/GetFanoutStats", {}),
    HttpCase("an unknown route", 404, "PUT", "/v1/nowhere", {"text": "x"}),
    HttpCase("a method the path does not take", 405, "PUT", "/v1/tweets", {"text": "x"}),
    HttpCase("a 40 KiB header", 431, "GET", "/v1/users/{actor}", headers=(("x-filler", "a" * 40_000),)),
    HttpCase(
        "a hundred headers",
        431,
        "GET",
        "/v1/users/{actor}",
        headers=tuple((f"x-h{n}", "1") for n in range(100)),
    ),
]


def _http_token(case: HttpCase, people: People) -> str | None:
    return {
        "actor": people.actor.token,
        "none": None,
        "forged": new_token(),
        "expired": people.expired,
        "logged_out": people.logged_out,
    }[case.token]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_refused_over_http_and_nothing_changed(
    stubs: Stubs, mesh: Mesh, people: People, case: HttpCase
) -> None:
    before = stubs.snapshot(*people.accounts())
    path = case.path.format(
        actor=people.actor.user_id, other=people.other.user_id, others_tweet=people.others_tweet
    )
    response = http_call(
        mesh.ports.envoy,
        case.method,
        path,
        case.body,
        _http_token(case, people),
        case.raw,
        dict(case.headers),
    )
    assert response.status == case.status, response.body
    body = response.json()
    assert body["code"] != 0 and isinstance(body["message"], str)
    assert stubs.snapshot(*people.accounts()) == before


# ----- hostile input that is accepted, harmlessly


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_are_stored_verbatim(stubs: Stubs, mesh: Mesh, people: People, text: str) -> None:
    tweet = stubs.post(people.actor, text)
    assert stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=tweet.tweet_id)).tweet.text == text
    over_http = http_call(mesh.ports.envoy, "GET", f"/v1/tweets/{tweet.tweet_id}").json()
    assert over_http["tweet"]["text"] == text


def test_injection_strings_in_a_display_name_are_stored_verbatim(stubs: Stubs, mesh: Mesh) -> None:
    name = "Robert'); DROP TABLE users;--"
    created = http_call(
        mesh.ports.envoy,
        "POST",
        "/v1/users",
        {
            "handle": "bobby_tables_" + new_token()[3:5].lower().replace("-", "_"),
            "display_name": name,
            "password": PASSWORD,
        },
    )
    assert created.status == 200, created.body
    user_id = created.json()["user"]["user_id"]
    assert stubs.users.GetUser(users_pb.GetUserRequest(user_id=user_id)).user.display_name == name


def test_fields_naming_another_user_are_ignored_over_http(stubs: Stubs, mesh: Mesh, people: People) -> None:
    """JSON fields the request does not define are dropped by Envoy's transcoder (it has no option to
    refuse them); what matters is that none of them can choose the acting user."""
    others_before = stubs.snapshot(people.other)
    body = {
        "text": "who wrote this?",
        "author_id": people.other.user_id,
        "author": {"user_id": people.other.user_id},
    }
    response = http_call(mesh.ports.envoy, "POST", "/v1/tweets", body, token=people.actor.token)
    assert response.status == 200, response.body
    assert response.json()["tweet"]["author_id"] == people.actor.user_id
    third = stubs.sign_up("third")
    as_other = {"follower_id": people.other.user_id, "user": {"user_id": people.other.user_id}}
    follow = http_call(
        mesh.ports.envoy, "POST", f"/v1/users/{third.user_id}:follow", as_other, token=people.actor.token
    )
    assert follow.status == 200, follow.body
    followers = stubs.users.ListFollowers(users_pb.ListFollowersRequest(user_id=third.user_id)).users
    assert [u.user_id for u in followers] == [people.actor.user_id]
    like = http_call(
        mesh.ports.envoy, "POST", f"/v1/tweets/{people.others_tweet}:like", as_other, token=people.actor.token
    )
    assert like.status == 200, like.body
    liking = stubs.tweets.ListLikingUsers(
        tweets_pb.ListLikingUsersRequest(tweet_id=people.others_tweet)
    ).users
    assert [u.user_id for u in liking] == [people.actor.user_id]
    unlike = http_call(
        mesh.ports.envoy, "POST", f"/v1/tweets/{people.others_tweet}:unlike", {}, token=people.actor.token
    )
    assert unlike.status == 200
    assert stubs.snapshot(people.other) == others_before


def test_an_unknown_protobuf_field_naming_another_author_is_ignored(stubs: Stubs, people: People) -> None:
    others_before = stubs.snapshot(people.other)
    payload = _string_field(1, b"smuggled author") + _string_field(15, people.other.user_id.encode())
    reply = raw_call(_tweets_channel, "/tweetmesh.tweets.v1.TweetService/CreateTweet", payload)(stubs, people)
    tweet = tweets_pb.CreateTweetResponse.FromString(reply).tweet
    assert (tweet.author_id, tweet.text) == (people.actor.user_id, "smuggled author")
    assert stubs.snapshot(people.other) == others_before


def test_the_largest_page_size_is_served_not_refused(stubs: Stubs, people: People) -> None:
    """(coerced to 100: tests/unit/test_pagination.py; here, that no layer chokes on it)"""
    page = stubs.tweets.ListUserTweets(
        tweets_pb.ListUserTweetsRequest(user_id=people.actor.user_id, page_size=2**31 - 1)
    )
    assert page.tweets and not page.next_page_token
