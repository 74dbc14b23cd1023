"""Crossing the celebrity threshold both ways, on in-memory fakes: markers, merges and the registry."""

from __future__ import annotations

from fanout_svc.celebrities import Celebrities
from social import State, TweetRef
from tests.fakes import FakeFollowGraph, FakeRegistry, FakeTimelineStore, FakeTweetIndex


def setup(
    followers: list[int], refs: list[TweetRef], threshold: int = 3
) -> tuple[Celebrities, FakeRegistry, FakeFollowGraph, FakeTimelineStore]:
    registry, graph = FakeRegistry(), FakeFollowGraph({1: followers})
    timelines = FakeTimelineStore(range(100), max_entries=100)
    tweets = FakeTweetIndex(
        {1: [r.tweet_id for r in refs]},
        replies_to={r.tweet_id: r.reply_to_author_id for r in refs if r.reply_to_author_id is not None},
    )
    celebrities = Celebrities(registry, graph, timelines, tweets, threshold, count_ttl_seconds=0)
    return celebrities, registry, graph, timelines


async def test_an_author_reaching_the_threshold_is_promoted_with_every_follower_marked_first() -> None:
    celebrities, registry, _, timelines = setup([10, 11, 12], [])
    assert await celebrities.settle(1) is not State.CELEBRITY
    await celebrities.after_fanout(1, followers_seen=3)
    assert registry.history == [(1, State.PROMOTING), (1, State.CELEBRITY)]
    assert all(1 in timelines.markers[f] for f in (10, 11, 12))
    assert await celebrities.settle(1) is State.CELEBRITY


async def test_below_the_threshold_nothing_changes() -> None:
    celebrities, registry, _, _ = setup([10, 11], [])
    await celebrities.after_fanout(1, followers_seen=2)
    assert registry.history == []
    assert await celebrities.settle(1) is not State.CELEBRITY


async def test_a_celebrity_below_the_threshold_is_demoted_with_its_shared_tweets_merged_back() -> None:
    refs = [TweetRef(50, 1, None), TweetRef(51, 1, 7), TweetRef(52, 1, 1)]  # 51 replies to someone else
    celebrities, registry, graph, timelines = setup([10, 11, 12], refs)
    await celebrities.promote(1)
    graph.followers[1] = [10, 11]  # one unfollowed
    assert await celebrities.settle(1) is not State.CELEBRITY  # demoted; this tweet is fanned out as usual
    assert registry.entries == {}
    assert registry.history[-2:] == [(1, State.DEMOTING), (1, None)]
    for follower in (10, 11):
        assert timelines.lines[follower] == {50, 52}
        assert 1 not in timelines.markers[follower]


async def test_a_half_done_promotion_is_finished_by_the_next_tweet() -> None:
    celebrities, registry, _, timelines = setup([10, 11, 12], [])
    registry.entries[1] = State.PROMOTING  # a crash after the first step
    assert await celebrities.settle(1) is State.CELEBRITY
    assert registry.entries[1] is State.CELEBRITY
    assert all(1 in timelines.markers[f] for f in (10, 11, 12))


async def test_following_a_celebrity_adds_the_marker_and_unfollowing_always_removes_it() -> None:
    celebrities, _, _, timelines = setup([10, 11, 12], [])
    await celebrities.follow_changed(20, 1, following=True)
    assert 1 not in timelines.markers[20]  # an ordinary author: no marker
    await celebrities.promote(1)
    await celebrities.follow_changed(20, 1, following=True)
    assert 1 in timelines.markers[20]
    await celebrities.follow_changed(20, 1, following=False)
    assert 1 not in timelines.markers[20]
