"""Bad input through generated stubs: the right status, a message naming the field, nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from meshkit.auth import new_token
from tests.helpers import PASSWORD, Account, Metadata, Stubs, bearer, field_violations, rpc_error
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

UNKNOWN_ID = "1999999999999999999"


@pytest.fixture(scope="module")
def people(stubs: Stubs) -> dict[str, Account]:
    actor, other = stubs.sign_up("actor"), stubs.sign_up("other")
    stubs.follow(actor, other)
    stubs.post(actor, "existing tweet")
    return {"actor": actor, "other": other}


def revoked_token(stubs: Stubs, account: Account) -> Metadata:
    login = stubs.users.Login(users_pb.LoginRequest(handle=account.user.handle, password=PASSWORD))
    auth = bearer(login.token)
    stubs.users.Logout(users_pb.LogoutRequest(), metadata=auth)
    return auth


CASES: list[tuple[str, grpc.StatusCode, str, Callable[[Stubs, dict[str, Account]], Any]]] = [
    (
        "empty tweet",
        grpc.StatusCode.INVALID_ARGUMENT,
        "text",
        lambda s, p: s.tweets.CreateTweet(tweets_pb.CreateTweetRequest(text=""), metadata=p["actor"].auth),
    ),
    (
        "281-character tweet",
        grpc.StatusCode.INVALID_ARGUMENT,
        "text",
        lambda s, p: s.tweets.CreateTweet(
            tweets_pb.CreateTweetRequest(text="x" * 281), metadata=p["actor"].auth
        ),
    ),
    (
        "reply to an unknown tweet",
        grpc.StatusCode.NOT_FOUND,
        "reply_to_tweet_id",
        lambda s, p: s.tweets.CreateTweet(
            tweets_pb.CreateTweetRequest(text="hi", reply_to_tweet_id=UNKNOWN_ID), metadata=p["actor"].auth
        ),
    ),
    (
        "bad handle",
        grpc.StatusCode.INVALID_ARGUMENT,
        "handle",
        lambda s, p: s.users.CreateUser(users_pb.CreateUserRequest(handle="no spaces!", password=PASSWORD)),
    ),
    (
        "duplicate handle, other case",
        grpc.StatusCode.ALREADY_EXISTS,
        "handle",
        lambda s, p: s.users.CreateUser(
            users_pb.CreateUserRequest(handle=p["actor"].user.handle.upper(), password=PASSWORD)
        ),
    ),
    (
        "short password",
        grpc.StatusCode.INVALID_ARGUMENT,
        "password",
        lambda s, p: s.users.CreateUser(users_pb.CreateUserRequest(handle="fine_handle", password="short")),
    ),
    (
        "unknown user",
        grpc.StatusCode.NOT_FOUND,
        "user_id",
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id=UNKNOWN_ID)),
    ),
    (
        "malformed user id",
        grpc.StatusCode.INVALID_ARGUMENT,
        "user_id",
        lambda s, p: s.users.GetUser(users_pb.GetUserRequest(user_id="../etc/passwd")),
    ),
    (
        "unknown tweet",
        grpc.StatusCode.NOT_FOUND,
        "tweet_id",
        lambda s, p: s.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=UNKNOWN_ID)),
    ),
    (
        "follow an unknown user",
        grpc.StatusCode.NOT_FOUND,
        "user_id",
        lambda s, p: s.users.FollowUser(
            users_pb.FollowUserRequest(user_id=UNKNOWN_ID), metadata=p["actor"].auth
        ),
    ),
    (
        "no token",
        grpc.StatusCode.UNAUTHENTICATED,
        "authorization",
        lambda s, p: s.tweets.CreateTweet(tweets_pb.CreateTweetRequest(text="anonymous")),
    ),
    (
        "bad token",
        grpc.StatusCode.UNAUTHENTICATED,
        "authorization",
        lambda s, p: s.tweets.CreateTweet(
            tweets_pb.CreateTweetRequest(text="forged"), metadata=bearer(new_token())
        ),
    ),
    (
        "revoked token",
        grpc.StatusCode.UNAUTHENTICATED,
        "authorization",
        lambda s, p: s.users.FollowUser(
            users_pb.FollowUserRequest(user_id=p["other"].user_id), metadata=revoked_token(s, p["actor"])
        ),
    ),
    (
        "following yourself",
        grpc.StatusCode.INVALID_ARGUMENT,
        "user_id",
        lambda s, p: s.users.FollowUser(
            users_pb.FollowUserRequest(user_id=p["actor"].user_id), metadata=p["actor"].auth
        ),
    ),
    (
        "negative page size",
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
        lambda s, p: s.timeline.GetHomeTimeline(
            timeline_pb.GetHomeTimelineRequest(page_size=-1), metadata=p["actor"].auth
        ),
    ),
    (
        "malformed page token",
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
        lambda s, p: s.tweets.ListUserTweets(
            tweets_pb.ListUserTweetsRequest(user_id=p["actor"].user_id, page_token="not-a-token")
        ),
    ),
]


@pytest.mark.parametrize(("name", "code", "field", "call"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(
    stubs: Stubs,
    people: dict[str, Account],
    name: str,
    code: grpc.StatusCode,
    field: str,
    call: Callable[[Stubs, dict[str, Account]], Any],
) -> None:
    before = stubs.snapshot(*people.values())
    error = rpc_error(lambda: call(stubs, people))
    assert error.code() == code, error.details()
    assert field in (error.details() or ""), f"message {error.details()!r} does not name {field!r}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert field in field_violations(error)
    assert stubs.snapshot(*people.values()) == before


@pytest.mark.parametrize(
    ("service", "method"),
    [
        ("users", "/tweetmesh.users.v1.UserService/GetUserByHandle"),
        ("timeline", "/tweetmesh.timeline.v1.TimelineService/StreamHomeTimeline"),
    ],
)
def test_a_request_that_does_not_parse_is_invalid_argument_not_unknown(
    mesh: Any, service: str, method: str
) -> None:
    # Field 1, a string, holding a lone UTF-16 surrogate in UTF-8 form: not valid UTF-8, so not a
    # valid message (Envoy passes such bytes from a URL straight through; the fuzzer found it).
    malformed = b"\x0a\x03\xed\xa0\x80"
    with grpc.insecure_channel(f"127.0.0.1:{mesh.ports.of(service)}") as channel:
        if service == "timeline":
            stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)
            error = rpc_error(lambda: list(stream(malformed, timeout=10)))
        else:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
            error = rpc_error(lambda: unary(malformed, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("request: not a valid message")
