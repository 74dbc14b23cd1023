"""Fan-out rules on in-memory fakes: who receives a tweet, what follow and unfollow do."""

from __future__ import annotations

from fanout_svc.service import Fanout, FollowChanged, TweetChanged
from tests.fakes import FakeFollowGraph, FakeGlobalFeed, FakeTimelineStore, FakeTweetIndex


def fanout_of(
    graph: FakeFollowGraph,
    tweets: FakeTweetIndex,
    timelines: FakeTimelineStore,
    feed: FakeGlobalFeed | None = None,
) -> Fanout:
    return Fanout(graph, tweets, timelines, feed or FakeGlobalFeed())


async def test_tweet_reaches_author_and_every_follower_with_a_timeline() -> None:
    timelines = FakeTimelineStore(existing=[1, 2, 3, 5])
    fanout = fanout_of(FakeFollowGraph({1: [2, 3, 4, 5]}), FakeTweetIndex({}), timelines)
    delivered = await fanout.tweet_changed(TweetChanged(tweet_id=100, author_id=1))
    assert delivered == 4  # author 1 and followers 2, 3, 5; follower 4 has no timeline to write
    assert all(100 in timelines.lines[u] for u in (1, 2, 3, 5))
    assert 4 not in timelines.lines


async def test_redelivered_tweet_changes_nothing() -> None:
    timelines = FakeTimelineStore(existing=[1, 2])
    fanout = fanout_of(FakeFollowGraph({1: [2]}), FakeTweetIndex({}), timelines)
    await fanout.tweet_changed(TweetChanged(100, 1))
    once = {u: set(t) for u, t in timelines.lines.items()}
    await fanout.tweet_changed(TweetChanged(100, 1))
    assert timelines.lines == once


async def test_follow_merges_and_unfollow_removes_only_the_followees_tweets() -> None:
    timelines = FakeTimelineStore(existing=[2])
    timelines.lines[2] = {50, 60}
    fanout = fanout_of(FakeFollowGraph({}), FakeTweetIndex({7: [10, 55, 70]}), timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 50, 55, 60, 70}
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=False))
    assert timelines.lines[2] == {50, 60}


async def test_follow_of_a_user_without_a_timeline_is_left_to_the_rebuild() -> None:
    timelines = FakeTimelineStore(existing=[])
    fanout = fanout_of(FakeFollowGraph({}), FakeTweetIndex({7: [10]}), timelines)
    await fanout.follow_changed(FollowChanged(2, 7, True))
    assert timelines.lines == {}


async def test_reply_to_someone_else_reaches_only_followers_of_both_and_the_replied_to() -> None:
    # 1 replies to 9. Followers of 1: 2 (also follows 9), 3 (does not). 9 is mentioned implicitly.
    timelines = FakeTimelineStore(existing=[1, 2, 3, 9])
    fanout = fanout_of(FakeFollowGraph({1: [2, 3], 9: [2]}), FakeTweetIndex({}), timelines)
    event = TweetChanged(100, 1, reply_to_author_id=9, mentioned_user_ids=(9,))
    assert await fanout.tweet_changed(event) == 3
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 9}


async def test_self_reply_and_mentions_reach_every_follower_and_the_mentioned() -> None:
    timelines, feed = FakeTimelineStore(existing=[1, 2, 3, 8]), FakeGlobalFeed()
    fanout = fanout_of(FakeFollowGraph({1: [2, 3]}), FakeTweetIndex({}), timelines, feed)
    await fanout.tweet_changed(
        TweetChanged(100, 1, reply_to_author_id=1, mentioned_user_ids=(8,), public=True)
    )
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 3, 8}
    assert feed.announced == [(100, False)]


async def test_delete_takes_the_tweet_out_of_every_timeline_that_may_hold_it() -> None:
    timelines, feed = FakeTimelineStore(existing=[1, 2, 3, 9]), FakeGlobalFeed()
    fanout = fanout_of(FakeFollowGraph({1: [2, 3]}), FakeTweetIndex({}), timelines, feed)
    await fanout.tweet_changed(TweetChanged(100, 1, mentioned_user_ids=(9,), public=True))
    await fanout.tweet_changed(TweetChanged(100, 1, deleted=True, mentioned_user_ids=(9,), public=True))
    assert all(100 not in line for line in timelines.lines.values())
    assert set(timelines.retracted) == {1, 2, 3, 9}
    assert feed.announced == [(100, False), (100, True)]


async def test_follow_merges_only_the_replies_the_follower_may_see() -> None:
    # 7's tweets: 10 plain, 20 replies to 8 (whom 2 follows), 30 replies to 9 (whom 2 does not).
    timelines = FakeTimelineStore(existing=[2])
    tweets = FakeTweetIndex({7: [10, 20, 30]}, replies_to={20: 8, 30: 9})
    fanout = fanout_of(FakeFollowGraph({8: [2]}), tweets, timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 20}
