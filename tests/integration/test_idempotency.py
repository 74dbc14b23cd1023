"""Writes a client may retry, even all at once: the same request_id, follow and unfollow repeated.
Each comes out as if it had been sent once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tests.helpers import Stubs, eventually
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

T = TypeVar("T")
RETRIES = 8


def all_at_once(call: Callable[[], T], times: int = RETRIES) -> list[T]:
    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(pool.map(lambda _: call(), range(times)))


def test_create_tweet_retried_concurrently_with_one_request_id_creates_one_tweet(stubs: Stubs) -> None:
    author, reader = stubs.sign_up("retrier"), stubs.sign_up("reader")
    stubs.follow(reader, author)
    stubs.home(reader)
    tweets = all_at_once(lambda: stubs.post(author, "sent eight times", request_id="retry-me"))
    assert len({t.tweet_id for t in tweets}) == 1
    listed = stubs.tweets.ListUserTweets(
        tweets_pb.ListUserTweetsRequest(user_id=author.user_id), timeout=10
    ).tweets
    assert [t.tweet_id for t in listed] == [tweets[0].tweet_id]
    assert stubs.user(author).tweets_count == 1
    eventually(lambda: stubs.home_ids(reader) == [tweets[0].tweet_id])


def test_follow_and_unfollow_retried_concurrently_change_the_graph_once(stubs: Stubs) -> None:
    follower, followee = stubs.sign_up("follower"), stubs.sign_up("followee")
    posted = stubs.post(followee, "already there").tweet_id
    stubs.home(follower)

    all_at_once(lambda: stubs.follow(follower, followee))
    assert stubs.user(followee).followers_count == 1
    assert stubs.user(follower).following_count == 1
    followers = stubs.users.ListFollowers(users_pb.ListFollowersRequest(user_id=followee.user_id), timeout=10)
    assert [u.user_id for u in followers.users] == [follower.user_id]
    eventually(lambda: stubs.home_ids(follower) == [posted])

    unfollow = users_pb.UnfollowUserRequest(user_id=followee.user_id)
    all_at_once(lambda: stubs.users.UnfollowUser(unfollow, metadata=follower.auth, timeout=10))
    assert stubs.user(followee).followers_count == 0
    assert stubs.user(follower).following_count == 0
    eventually(lambda: stubs.home_ids(follower) == [])


def test_like_and_retweet_retried_concurrently_count_once(stubs: Stubs) -> None:
    author, fan = stubs.sign_up("liked"), stubs.sign_up("fan")
    tweet_id = stubs.post(author, "like me once").tweet_id

    def get() -> tweets_pb.Tweet:
        return stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=tweet_id), timeout=10).tweet

    like = tweets_pb.LikeTweetRequest(tweet_id=tweet_id)
    all_at_once(lambda: stubs.tweets.LikeTweet(like, metadata=fan.auth, timeout=10))
    assert get().like_count == 1
    retweet = tweets_pb.RetweetRequest(tweet_id=tweet_id)
    retweets = all_at_once(lambda: stubs.tweets.Retweet(retweet, metadata=fan.auth, timeout=10).tweet)
    assert len({r.tweet_id for r in retweets}) == 1
    assert get().retweet_count == 1

    unlike = tweets_pb.UnlikeTweetRequest(tweet_id=tweet_id)
    all_at_once(lambda: stubs.tweets.UnlikeTweet(unlike, metadata=fan.auth, timeout=10))
    unretweet = tweets_pb.UnretweetRequest(tweet_id=tweet_id)
    all_at_once(lambda: stubs.tweets.Unretweet(unretweet, metadata=fan.auth, timeout=10))
    assert (get().like_count, get().retweet_count) == (0, 0)
