"""Account deletion through the real mesh: after DeleteUser nothing of the account shows anywhere
(its profile, handle and sessions; its tweets, retweets, replies and mentions in timelines, the live
global stream, search and counts; its likes' counts; the follower counts of those it followed; its
notifications to others), also after a Redis wipe; the handle stays reserved for the grace period;
a crash of an eraser midway resumes; and what is refused (another account, a wrong password)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2

from devstack.mesh import Mesh
from meshkit.rpc_details import error_details
from tests.conftest import report_lines
from tests.helpers import PASSWORD, Account, LiveStream, Stubs, eventually, http_call, redis_client, rpc_error
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as pb


@dataclass
class Scene:
    dana: Account  # deleted
    erin: Account  # follows dana
    frank: Account  # followed by dana; dana likes, retweets, replies to and mentions him
    gil: Account  # mutes dana
    word: str  # in every tweet of dana's
    dana_tweets: list[str]  # her tweet, reply, mention and retweet
    frank_tweet: tweets_pb.Tweet


@pytest.fixture
def scene(stubs: Stubs) -> Scene:
    dana, erin, frank, gil = (stubs.sign_up(name) for name in ("dana", "erin", "frank", "gil"))
    stubs.follow(erin, dana)
    stubs.follow(dana, frank)
    stubs.users.MuteUser(pb.MuteUserRequest(user_id=dana.user_id), metadata=gil.auth, timeout=10)
    word = "w" + secrets.token_hex(5)
    frank_tweet = stubs.post(frank, f"frank says {word}")
    tweets = [
        stubs.post(dana, f"dana says {word}"),
        stubs.post(dana, f"dana replies {word}", reply_to_tweet_id=frank_tweet.tweet_id),
        stubs.post(dana, f"dana tells @{frank.user.handle} {word}"),
    ]
    retweet = stubs.tweets.Retweet(
        tweets_pb.RetweetRequest(tweet_id=frank_tweet.tweet_id), metadata=dana.auth, timeout=10
    ).tweet
    stubs.tweets.LikeTweet(
        tweets_pb.LikeTweetRequest(tweet_id=frank_tweet.tweet_id), metadata=dana.auth, timeout=10
    )
    stubs.tweets.BookmarkTweet(
        tweets_pb.BookmarkTweetRequest(tweet_id=frank_tweet.tweet_id), metadata=dana.auth, timeout=10
    )
    # Frank likes dana's tweet: a notification of dana's own.
    stubs.tweets.LikeTweet(
        tweets_pb.LikeTweetRequest(tweet_id=tweets[0].tweet_id), metadata=frank.auth, timeout=10
    )
    return Scene(dana, erin, frank, gil, word, [t.tweet_id for t in (*tweets, retweet)], frank_tweet)


def notification_actors(stubs: Stubs, viewer: Account) -> set[str]:
    reply = stubs.notifications.ListNotifications(
        notifications_pb.ListNotificationsRequest(page_size=100), metadata=viewer.auth, timeout=10
    )
    return {a.user_id for g in reply.groups for a in g.sample_accounts}


def found(stubs: Stubs, tweet_id: str) -> bool:
    try:
        stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=tweet_id), timeout=10)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def search(stubs: Stubs, word: str) -> set[str]:
    reply = stubs.tweets.SearchTweets(tweets_pb.SearchTweetsRequest(query=word, page_size=100), timeout=10)
    return {t.tweet_id for t in reply.tweets}


def user(stubs: Stubs, account: Account) -> pb.User:
    return stubs.user(account)


def followers_of(stubs: Stubs, account: Account) -> set[str]:
    listed = stubs.users.ListFollowers(
        pb.ListFollowersRequest(user_id=account.user_id, page_size=100), timeout=10
    )
    return {u.user_id for u in listed.users}


def nothing_of_dana_shows(stubs: Stubs, scene: Scene) -> bool:
    """Every surface, without dana: the erasure is done."""
    frank_tweet = stubs.tweets.GetTweet(
        tweets_pb.GetTweetRequest(tweet_id=scene.frank_tweet.tweet_id), timeout=10
    )
    frank = user(stubs, scene.frank)
    return (
        not any(found(stubs, t) for t in scene.dana_tweets)
        and not set(scene.dana_tweets) & set(stubs.home_ids(scene.erin))
        and not set(scene.dana_tweets) & set(stubs.home_ids(scene.frank))
        and search(stubs, scene.word) == {scene.frank_tweet.tweet_id}
        and (frank_tweet.tweet.like_count, frank_tweet.tweet.retweet_count, frank_tweet.tweet.reply_count)
        == (0, 0, 0)
        and frank.followers_count == 0
        and user(stubs, scene.erin).following_count == 0
        and scene.dana.user_id not in followers_of(stubs, scene.frank)
        and scene.dana.user_id not in notification_actors(stubs, scene.frank)
    )


def reason(error: grpc.RpcError) -> str:
    infos = error_details(error, error_details_pb2.ErrorInfo)
    return infos[0].reason if infos else ""


def delete(stubs: Stubs, actor: Account, target: Account, password: str = PASSWORD) -> None:
    stubs.users.DeleteUser(
        pb.DeleteUserRequest(user_id=target.user_id, password=password), metadata=actor.auth, timeout=10
    )


def test_a_deleted_account_leaves_nothing_visible_anywhere(stubs: Stubs, mesh: Mesh, scene: Scene) -> None:
    dana, frank = scene.dana, scene.frank
    # Before: all of it shows.
    eventually(lambda: set(scene.dana_tweets[:1]) <= set(stubs.home_ids(scene.erin)))
    eventually(lambda: dana.user_id in notification_actors(stubs, frank))
    assert user(stubs, frank).followers_count == 1
    assert search(stubs, scene.word) == {scene.frank_tweet.tweet_id, *scene.dana_tweets[:3]}
    # The global stream (her tweets are public) is told each went. A follower's home stream may not
    # be: once the follow ends, fan-out rebuilds the follower's timeline without her tweets, and a
    # deletion is announced to the timelines of her followers as they are then.
    stream = LiveStream(stubs.timeline, None).wait_open()
    try:
        # Refused, with nothing changed: another account, a wrong password.
        error = rpc_error(lambda: delete(stubs, frank, dana))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
        error = rpc_error(lambda: delete(stubs, dana, dana, password="not her password"))
        assert (error.code(), reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_PASSWORD")
        assert user(stubs, dana).handle == dana.user.handle

        # Through Envoy, as a client would: DELETE with the password in the body.
        answer = http_call(
            mesh.ports.envoy, "DELETE", f"/v1/users/{dana.user_id}", {"password": PASSWORD}, token=dana.token
        )
        assert answer.status == 200, answer.body

        # At once: no profile, no handle, no session, no sign-in.
        for call in (
            lambda: stubs.users.GetUser(pb.GetUserRequest(user_id=dana.user_id), timeout=10),
            lambda: stubs.users.GetUserByHandle(
                pb.GetUserByHandleRequest(handle=dana.user.handle), timeout=10
            ),
        ):
            assert rpc_error(call).code() == grpc.StatusCode.NOT_FOUND
        error = rpc_error(lambda: stubs.home(dana))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
        error = rpc_error(
            lambda: stubs.users.Login(pb.LoginRequest(handle=dana.user.handle, password=PASSWORD), timeout=10)
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
        search_users = stubs.users.SearchUsers(pb.SearchUsersRequest(query=dana.user.handle), timeout=10)
        assert not search_users.users

        # Through the events: every surface, and the live stream is told her tweets went.
        eventually(lambda: nothing_of_dana_shows(stubs, scene), timeout=30)
        assert stream.next_deletion(timeout=10) in scene.dana_tweets
    finally:
        stream.close()
    muted = stubs.users.ListMutes(pb.ListMutesRequest(page_size=100), metadata=scene.gil.auth, timeout=10)
    assert not muted.users
    try:
        liked = stubs.tweets.ListLikedTweets(
            tweets_pb.ListLikedTweetsRequest(user_id=dana.user_id, page_size=100), timeout=10
        ).tweets
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    else:
        assert not liked

    # A wiped Redis (caches, timelines, streams) brings nothing of it back.
    redis_client(mesh.redis_url).flushall()
    eventually(lambda: nothing_of_dana_shows(stubs, scene), timeout=30)
    eventually(lambda: not stubs.home(scene.erin).rebuilding)
    assert not set(scene.dana_tweets) & set(stubs.home_ids(scene.erin))

    # A second deletion finds no account.
    answer = http_call(
        mesh.ports.envoy, "DELETE", f"/v1/users/{dana.user_id}", {"password": PASSWORD}, token=dana.token
    )
    assert answer.status == 401, answer.body


def backdate_deletion(mesh: Mesh, account: Account, days: int) -> None:
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE users.users SET delete_time = delete_time - make_interval(days => %s) WHERE id = %s",
            (days, int(account.user_id)),
        )


def test_the_handle_is_reserved_for_the_grace_period_then_free(stubs: Stubs, mesh: Mesh) -> None:
    hal = stubs.sign_up("hal")
    handle = hal.user.handle
    delete(stubs, hal, hal)
    error = rpc_error(
        lambda: stubs.users.CreateUser(
            pb.CreateUserRequest(handle=handle.upper(), password=PASSWORD), timeout=10
        )
    )
    assert (error.code(), reason(error)) == (grpc.StatusCode.ALREADY_EXISTS, "HANDLE_TAKEN")
    backdate_deletion(mesh, hal, 29)
    assert (
        rpc_error(
            lambda: stubs.users.CreateUser(pb.CreateUserRequest(handle=handle, password=PASSWORD), timeout=10)
        ).code()
        == grpc.StatusCode.ALREADY_EXISTS
    )
    backdate_deletion(mesh, hal, 2)  # 31 days ago: past the 30 days
    new = stubs.users.CreateUser(pb.CreateUserRequest(handle=handle, password=PASSWORD), timeout=10).user
    assert new.user_id != hal.user_id and new.followers_count == 0
    assert (
        stubs.users.GetUserByHandle(pb.GetUserByHandleRequest(handle=handle), timeout=10).user.user_id
        == new.user_id
    )
    login = stubs.users.Login(pb.LoginRequest(handle=handle, password=PASSWORD), timeout=10)
    assert login.user.user_id == new.user_id
    assert (
        rpc_error(lambda: stubs.users.GetUser(pb.GetUserRequest(user_id=hal.user_id), timeout=10)).code()
        == grpc.StatusCode.NOT_FOUND
    )


def live_tweets_of(mesh: Mesh, account: Account) -> int:
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM tweets.tweets WHERE author_id = %s AND delete_time IS NULL",
            (int(account.user_id),),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def named_tweets(mesh: Mesh) -> Iterator[str]:
    """tweets_svc with a fixed consumer name (a restart under it reads its own pending entries
    first, as a restarted pod keeping its name would); the usual one again afterwards."""
    name = "erase-" + secrets.token_hex(3)
    mesh.start_service("tweets", {"TRENDS_CONSUMER": name})
    try:
        yield name
    finally:
        mesh.start_service("tweets")


def test_an_eraser_killed_midway_resumes_where_it_stopped(
    stubs: Stubs, mesh: Mesh, named_tweets: str, pytestconfig: pytest.Config
) -> None:
    ivy, fan = stubs.sign_up("ivy"), stubs.sign_up("fan")
    stubs.follow(fan, ivy)
    posted = [stubs.post(ivy, f"ivy {n}").tweet_id for n in range(300)]
    delete(stubs, ivy, ivy)
    mesh.kill_service("tweets")  # tweets_svc's eraser is busy deleting her 300 tweets, one at a time
    left = live_tweets_of(mesh, ivy)
    report_lines(pytestconfig).append(
        f"account deletion: {left} of 300 tweets left when the eraser was killed"
    )
    assert left > 0, left  # killed before the erasure was done
    mesh.start_service("tweets", {"TRENDS_CONSUMER": named_tweets})
    eventually(lambda: live_tweets_of(mesh, ivy) == 0, timeout=60)
    eventually(lambda: not set(posted) & set(stubs.home_ids(fan)), timeout=30)
    assert not any(found(stubs, t) for t in posted[:5] + posted[-5:])
