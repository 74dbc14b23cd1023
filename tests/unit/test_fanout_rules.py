"""Fan-out rules on in-memory fakes: who receives a tweet, what follow and unfollow do."""

from __future__ import annotations

from fanout_svc.service import Fanout, FollowChanged, TweetChanged
from social.homes import HomeSource
from tests.fakes import FakeFollowGraph, FakeGlobalFeed, FakeTimelineStore, FakeTweetIndex


def fanout_of(
    graph: FakeFollowGraph,
    tweets: FakeTweetIndex,
    timelines: FakeTimelineStore,
    feed: FakeGlobalFeed | None = None,
) -> Fanout:
    return Fanout(graph, timelines, feed or FakeGlobalFeed(), HomeSource(graph, tweets, timelines, None))


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
    graph = FakeFollowGraph({7: [2]})  # 2 now follows 7
    fanout = fanout_of(graph, FakeTweetIndex({7: [10, 55, 70], 2: [50, 60]}), timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 50, 55, 60, 70}
    graph.followers[7].remove(2)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=False))
    assert timelines.lines[2] == {50, 60}


async def test_unfollow_keeps_the_followees_tweets_that_mention_the_follower() -> None:
    timelines = FakeTimelineStore(existing=[2])
    graph = FakeFollowGraph({7: [2]})
    fanout = fanout_of(graph, FakeTweetIndex({7: [10, 20], 2: [5]}, mentions={2: [20]}), timelines)
    await fanout.follow_changed(FollowChanged(2, 7, True))
    assert timelines.lines[2] == {5, 10, 20}
    graph.followers[7].remove(2)
    await fanout.follow_changed(FollowChanged(2, 7, False))
    assert timelines.lines[2] == {5, 20}  # 20 mentions 2: it stays, as a rebuild would keep it


async def test_a_follow_brings_the_replies_to_the_followee_by_those_already_followed() -> None:
    # 2 follows 8; 8's tweet 30 replies to 7, whom 2 does not follow yet: not in 2's home. Once 2
    # follows 7 it is (2 follows both sides), and once 2 unfollows 7 it is not again.
    timelines = FakeTimelineStore(existing=[2])
    graph = FakeFollowGraph({8: [2], 7: [2]})
    fanout = fanout_of(graph, FakeTweetIndex({8: [30], 7: [10]}, replies_to={30: 7}), timelines)
    await fanout.follow_changed(FollowChanged(2, 7, True))
    assert timelines.lines[2] == {10, 30}
    graph.followers[7].remove(2)
    await fanout.follow_changed(FollowChanged(2, 7, False))
    assert timelines.lines[2] == set()


async def test_a_follow_applied_after_the_unfollow_that_followed_it_changes_nothing_wrong() -> None:
    # Two workers: one applies the unfollow, then the other the older follow. The graph says 2 does
    # not follow 7 any more: the window must not hold 7's tweets, whatever the late event says.
    timelines = FakeTimelineStore(existing=[2])
    fanout = fanout_of(FakeFollowGraph({}), FakeTweetIndex({7: [10, 11]}), timelines)
    await fanout.follow_changed(FollowChanged(2, 7, False))
    await fanout.follow_changed(FollowChanged(2, 7, True))
    assert timelines.lines[2] == set()


async def test_a_rebuild_overtaken_by_a_later_one_leaves_the_window_to_it() -> None:
    timelines = FakeTimelineStore(existing=[2])
    homes = HomeSource(FakeFollowGraph({7: [2]}), FakeTweetIndex({7: [10]}), timelines, None)
    first = await timelines.begin_rebuild(2)
    assert await homes.rebuild(2)
    assert not await homes.finish(2, first)
    assert timelines.lines[2] == {10} and 2 not in timelines.rebuilding


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
    fanout = fanout_of(FakeFollowGraph({8: [2], 7: [2]}), tweets, timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 20}


async def test_an_edit_tells_the_streams_and_moves_the_tweet_between_mentioned_timelines() -> None:
    # 1 posted 100 mentioning 3 and 4 (4 follows 1); the edit mentions 5 instead. 5 takes it, 3
    # loses it, 4 keeps it (it is in their home anyway); nobody else's timeline changes.
    timelines = FakeTimelineStore(existing=[1, 2, 3, 4, 5])
    feed = FakeGlobalFeed()
    fanout = fanout_of(FakeFollowGraph({1: [2, 4]}), FakeTweetIndex({}), timelines, feed)
    await fanout.tweet_changed(TweetChanged(100, 1, mentioned_user_ids=(3, 4), public=True))
    assert all(100 in timelines.lines[u] for u in (1, 2, 3, 4))
    edited = TweetChanged(
        100, 1, mentioned_user_ids=(5,), public=True, edited=True, previously_mentioned=(3, 4)
    )
    assert await fanout.tweet_changed(edited) == 0
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 4, 5}
    assert timelines.retracted == [3]
    assert {u for t, u in timelines.edited if t == 100} == {1, 2, 4, 5}
    assert feed.edited == [100] and feed.announced == [(100, False)]  # announced once as new
