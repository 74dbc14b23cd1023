"""The whole story through generated stubs: sign up, log in, follow, post, read the home timeline."""

from __future__ import annotations

from typing import Any

import grpc

from devstack.mesh import Mesh
from meshkit.auth import REVOKED, cache_key, new_token
from tests.helpers import (
    ON_BOTH_REDIS,
    PASSWORD,
    Stubs,
    bearer,
    eventually,
    fanned_out,
    held_in_redis,
    redis_client,
    rpc_error,
)
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

# The story runs on one Redis and on a Redis Cluster.
pytestmark = ON_BOTH_REDIS


def test_follower_reads_a_followed_users_tweet_in_the_home_timeline(stubs: Stubs) -> None:
    alice, bob = stubs.sign_up("alice"), stubs.sign_up("bob")
    followed = stubs.follow(alice, bob)
    assert followed.followers_count == 1

    tweet = stubs.post(bob, "hello from bob")
    assert tweet.author.handle == bob.user.handle
    assert tweet.author.tweets_count == 1

    page = eventually(lambda: stubs.home(alice).tweets)
    assert [t.tweet_id for t in page] == [tweet.tweet_id]
    assert page[0].author.user_id == bob.user_id
    assert page[0].text == "hello from bob"


def test_home_timeline_is_newest_first_and_includes_own_tweets(stubs: Stubs) -> None:
    reader, writer = stubs.sign_up("reader"), stubs.sign_up("writer")
    stubs.follow(reader, writer)
    stubs.home(reader)  # builds the timeline now, so the posts below arrive by fan-out
    posted = [stubs.post(writer, "one"), stubs.post(reader, "mine"), stubs.post(writer, "three")]
    expected = [t.tweet_id for t in reversed(posted)]
    eventually(lambda: stubs.home_ids(reader) == expected)


def test_counts_stay_right_through_follow_unfollow_and_posting(stubs: Stubs) -> None:
    a, b = stubs.sign_up("counts"), stubs.sign_up("counts")
    stubs.follow(a, b)
    stubs.follow(a, b)  # twice changes nothing
    assert stubs.user(b).followers_count == 1
    assert stubs.user(a).following_count == 1
    stubs.post(b, "one")
    stubs.post(b, "two")
    assert stubs.user(b).tweets_count == 2
    stubs.users.UnfollowUser(users_pb.UnfollowUserRequest(user_id=b.user_id), metadata=a.auth)
    stubs.users.UnfollowUser(users_pb.UnfollowUserRequest(user_id=b.user_id), metadata=a.auth)
    assert stubs.user(b).followers_count == 0
    assert stubs.user(a).following_count == 0


def test_followers_and_following_lists_page_newest_first(stubs: Stubs) -> None:
    star = stubs.sign_up("star")
    fans = [stubs.sign_up("fan") for _ in range(5)]
    for fan in fans:
        stubs.follow(fan, star)
    seen: list[str] = []
    token = ""
    while True:
        page = stubs.users.ListFollowers(
            users_pb.ListFollowersRequest(user_id=star.user_id, page_size=2, page_token=token)
        )
        assert len(page.users) <= 2
        seen.extend(u.user_id for u in page.users)
        token = page.next_page_token
        if not token:
            break
    assert seen == [f.user_id for f in reversed(fans)]
    following = stubs.users.ListFollowing(users_pb.ListFollowingRequest(user_id=fans[0].user_id))
    assert [u.user_id for u in following.users] == [star.user_id]


def test_login_is_case_insensitive_on_handle_and_logout_revokes_at_once(stubs: Stubs) -> None:
    account = stubs.sign_up("Casey")
    login = stubs.users.Login(users_pb.LoginRequest(handle=account.user.handle.upper(), password=PASSWORD))
    assert login.user.user_id == account.user_id
    assert login.expire_time.seconds > 0
    auth = bearer(login.token)
    stubs.tweets.CreateTweet(tweets_pb.CreateTweetRequest(text="before logout"), metadata=auth)
    stubs.users.Logout(users_pb.LogoutRequest(), metadata=auth)
    error = rpc_error(
        lambda: stubs.tweets.CreateTweet(tweets_pb.CreateTweetRequest(text="after"), metadata=auth)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # The other session of the same user still works.
    stubs.post(account, "other session still valid")


def test_many_tokens_are_authenticated_in_one_call_and_the_cache_refilled(stubs: Stubs, mesh: Mesh) -> None:
    """The streams of a timeline_svc re-check their tokens together at each heartbeat: the tokens
    the session cache no longer holds are one AuthenticateTokens call, not one call each."""
    ann, ben = stubs.sign_up("ann"), stubs.sign_up("ben")
    revoked = stubs.users.Login(users_pb.LoginRequest(handle=ben.user.handle, password=PASSWORD)).token
    stubs.users.Logout(users_pb.LogoutRequest(), metadata=bearer(revoked))
    unknown = new_token()
    r = redis_client(mesh.redis_url)
    r.delete(cache_key(ann.token), cache_key(ben.token))

    asked = [ann.token, revoked, ben.token, unknown, ann.token]
    reply = stubs.users.AuthenticateTokens(users_pb.AuthenticateTokensRequest(tokens=asked))
    assert {s.token: s.user_id for s in reply.sessions} == {ann.token: ann.user_id, ben.token: ben.user_id}
    assert all(s.expire_time.seconds > 0 for s in reply.sessions)
    assert r.get(cache_key(ann.token)) is not None and r.get(cache_key(ben.token)) is not None
    assert r.get(cache_key(revoked)) == REVOKED  # its tombstone stays (meshkit.auth)
    assert r.get(cache_key(unknown)) is None

    too_many = users_pb.AuthenticateTokensRequest(tokens=[unknown] * 1001)
    error = rpc_error(lambda: stubs.users.AuthenticateTokens(too_many))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_create_tweet_with_the_same_request_id_returns_the_same_tweet(stubs: Stubs) -> None:
    author = stubs.sign_up("retry")
    first = stubs.post(author, "only once", request_id="req-1")
    again = stubs.post(author, "only once", request_id="req-1")
    assert again.tweet_id == first.tweet_id
    assert stubs.user(author).tweets_count == 1
    listed = stubs.tweets.ListUserTweets(tweets_pb.ListUserTweetsRequest(user_id=author.user_id))
    assert [t.tweet_id for t in listed.tweets] == [first.tweet_id]


def test_replies_point_at_an_existing_tweet_and_count(stubs: Stubs) -> None:
    author, replier = stubs.sign_up("op"), stubs.sign_up("replier")
    original = stubs.post(author, "original")
    reply = stubs.post(replier, "a reply", reply_to_tweet_id=original.tweet_id)
    assert reply.reply_to_tweet_id == original.tweet_id
    fetched = stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=original.tweet_id)).tweet
    assert fetched.reply_count == 1


def test_user_tweets_are_listed_newest_first_across_pages(stubs: Stubs) -> None:
    author = stubs.sign_up("pager")
    posted = [stubs.post(author, f"tweet {i}").tweet_id for i in range(7)]
    seen: list[str] = []
    token = ""
    while True:
        page = stubs.tweets.ListUserTweets(
            tweets_pb.ListUserTweetsRequest(user_id=author.user_id, page_size=3, page_token=token)
        )
        seen.extend(t.tweet_id for t in page.tweets)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(posted))


def test_follow_merges_recent_tweets_and_unfollow_removes_them(stubs: Stubs, mesh: Any) -> None:
    reader, author = stubs.sign_up("merge"), stubs.sign_up("merged")
    older = [stubs.post(author, f"before the follow {i}").tweet_id for i in range(3)]
    assert stubs.home_ids(reader) == []  # builds the reader's timeline in Redis
    r = redis_client(mesh.redis_url)

    def in_redis() -> list[str]:
        return held_in_redis(r, reader.user_id) or []

    stubs.follow(reader, author)
    eventually(lambda: in_redis() == list(reversed(older)))
    assert stubs.home_ids(reader) == list(reversed(older))
    stubs.users.UnfollowUser(users_pb.UnfollowUserRequest(user_id=author.user_id), metadata=reader.auth)
    eventually(lambda: in_redis() == [])
    assert stubs.home_ids(reader) == []


def test_home_timeline_pages_past_the_redis_window_from_postgresql(stubs: Stubs) -> None:
    # The test mesh caps Redis timelines at 30 entries; 45 tweets must all be readable in order.
    reader, author = stubs.sign_up("deep"), stubs.sign_up("prolific")
    stubs.follow(reader, author)
    stubs.home(reader)
    posted = [stubs.post(author, f"n{i}").tweet_id for i in range(45)]
    expected = list(reversed(posted))
    eventually(lambda: stubs.home_ids(reader, page_size=7) == expected)


def test_batch_get_tweets_keeps_order_and_skips_unknown(stubs: Stubs) -> None:
    author = stubs.sign_up("batch")
    a, b = stubs.post(author, "a"), stubs.post(author, "b")
    reply = stubs.tweets.BatchGetTweets(
        tweets_pb.BatchGetTweetsRequest(tweet_ids=[b.tweet_id, "1", a.tweet_id])
    )
    assert [t.tweet_id for t in reply.tweets] == [b.tweet_id, a.tweet_id]
    assert all(t.author.handle == author.user.handle for t in reply.tweets)


def test_fanout_stats_report_the_stream_and_deliveries(stubs: Stubs) -> None:
    reader, author = stubs.sign_up("stats"), stubs.sign_up("stats")
    stubs.follow(reader, author)
    stubs.home(reader)
    before = stubs.fanout_stats().delivered
    stubs.post(author, "counted")
    stats = eventually(lambda: (s := stubs.fanout_stats()).delivered >= before + 1 and s)
    tweets_stream = next(s for s in stats.streams if s.stream == "events:tweets")
    assert tweets_stream.length >= 1
    assert tweets_stream.consumers >= 1


def test_rapid_follow_and_unfollow_leave_the_timeline_as_the_last_one_says(stubs: Stubs, mesh: Any) -> None:
    reader, author = stubs.sign_up("flip"), stubs.sign_up("flop")
    posted = [stubs.post(author, f"t{i}").tweet_id for i in range(3)]
    stubs.home(reader)
    r = redis_client(mesh.redis_url)
    # With fan-out stopped the events pile up, so the restarted worker reads them as one batch.
    mesh.stop_service("fanout")
    try:
        for _ in range(4):
            stubs.follow(reader, author)
            stubs.users.UnfollowUser(
                users_pb.UnfollowUserRequest(user_id=author.user_id), metadata=reader.auth
            )
    finally:
        mesh.start_service("fanout")
    # Every follow event is applied before the unfollow after it, so the author's tweets end up out.
    eventually(lambda: fanned_out(r, "events:follows"))
    held = set(held_in_redis(r, reader.user_id) or [])
    assert held.isdisjoint(posted)
