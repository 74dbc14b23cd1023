"""Fan-out rules on in-memory fakes: who receives a tweet, what follow and unfollow do."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fanout_svc.celebrities import Celebrities
from fanout_svc.service import Fanout, FollowChanged, FollowerListMissing, TweetChanged
from social import State
from social.homes import HomeSource
from social.live import GLOBAL_CHANNEL
from tests.fakes import FakeFollowerLists, FakeFollowGraph, FakeRegistry, FakeTimelineStore, FakeTweetIndex


def fanout_of(
    graph: FakeFollowGraph,
    tweets: FakeTweetIndex,
    timelines: FakeTimelineStore,
    celebrities: Celebrities | None = None,
) -> Fanout:
    """Fan-out on fakes, the follower lists being the graph's (built)."""
    if timelines.follower_lists is None:
        timelines.follower_lists = FakeFollowerLists(graph)
    homes = HomeSource(graph, tweets, timelines, None)
    return Fanout(graph, timelines.follower_lists, timelines, homes, celebrities, timelines)


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
    timelines = FakeTimelineStore(existing=[1, 2, 3, 8])
    fanout = fanout_of(FakeFollowGraph({1: [2, 3]}), FakeTweetIndex({}), timelines)
    await fanout.tweet_changed(
        TweetChanged(100, 1, reply_to_author_id=1, mentioned_user_ids=(8,), public=True)
    )
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 3, 8}
    assert timelines.announced == [(100, False)]
    assert fanout.job(TweetChanged(100, 1, public=True), celebrity=False).announce == GLOBAL_CHANNEL


async def test_delete_takes_the_tweet_out_of_every_timeline_that_may_hold_it() -> None:
    timelines = FakeTimelineStore(existing=[1, 2, 3, 9])
    fanout = fanout_of(FakeFollowGraph({1: [2, 3]}), FakeTweetIndex({}), timelines)
    await fanout.tweet_changed(TweetChanged(100, 1, mentioned_user_ids=(9,), public=True))
    await fanout.tweet_changed(TweetChanged(100, 1, deleted=True, mentioned_user_ids=(9,), public=True))
    assert all(100 not in line for line in timelines.lines.values())
    assert set(timelines.retracted) == {1, 2, 3, 9}
    assert timelines.announced == [(100, False), (100, True)]
    assert timelines.others == [("list:1", 100, False), ("list:1", 100, True)]  # the author's own list


async def test_follow_merges_only_the_replies_the_follower_may_see() -> None:
    # 7's tweets: 10 plain, 20 replies to 8 (whom 2 follows), 30 replies to 9 (whom 2 does not).
    timelines = FakeTimelineStore(existing=[2])
    tweets = FakeTweetIndex({7: [10, 20, 30]}, replies_to={20: 8, 30: 9})
    fanout = fanout_of(FakeFollowGraph({8: [2], 7: [2]}), tweets, timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 20}


async def test_a_missing_follower_list_is_built_and_its_jobs_run_again_the_others_once() -> None:
    graph = FakeFollowGraph({1: [2, 3], 5: [3]})
    timelines = FakeTimelineStore(existing=[1, 2, 3, 5])
    timelines.follower_lists = FakeFollowerLists(graph, missing=[1])
    fanout = fanout_of(graph, FakeTweetIndex({}), timelines)
    written = await fanout.tweets_changed([TweetChanged(100, 1), TweetChanged(200, 5)])
    assert written == [3, 2]
    assert timelines.follower_lists.ensured == [[1]]
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 3}
    assert {u for u, line in timelines.lines.items() if 200 in line} == {3, 5}


async def test_a_list_that_cannot_be_built_fails_only_its_own_events() -> None:
    class Unbuildable(FakeFollowerLists):
        async def ensure_follower_lists(self, author_ids: Sequence[int]) -> None:
            raise ConnectionError("users_svc is down")

    graph = FakeFollowGraph({1: [2], 5: [2]})
    timelines = FakeTimelineStore(existing=[1, 2, 5], follower_lists=Unbuildable(graph, missing=[1]))
    fanout = fanout_of(graph, FakeTweetIndex({}), timelines)
    first, second = await fanout.tweets_changed([TweetChanged(100, 1), TweetChanged(200, 5)])
    assert isinstance(first, ConnectionError) and second == 2


async def test_a_list_still_missing_after_its_build_fails_the_event_for_a_retry() -> None:
    class NeverBuilt(FakeFollowerLists):
        async def ensure_follower_lists(self, author_ids: Sequence[int]) -> None:
            pass

    graph = FakeFollowGraph({1: [2]})
    timelines = FakeTimelineStore(existing=[1, 2], follower_lists=NeverBuilt(graph, missing=[1]))
    with pytest.raises(FollowerListMissing):
        await fanout_of(graph, FakeTweetIndex({}), timelines).tweet_changed(TweetChanged(100, 1))


async def test_a_celebritys_tweet_goes_to_its_own_list_and_its_reply_to_the_followers_of_both() -> None:
    graph = FakeFollowGraph({1: [2, 3, 4], 9: [3, 7]})
    timelines = FakeTimelineStore(existing=[1, 2, 3, 4, 7, 9])
    registry = FakeRegistry()
    registry.entries[1] = State.CELEBRITY
    celebrities = Celebrities(registry, graph, timelines, FakeTweetIndex({}), threshold=3)
    fanout = fanout_of(graph, FakeTweetIndex({}), timelines, celebrities)
    await fanout.tweet_changed(TweetChanged(100, 1))  # for everyone: merged at read time
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1}
    assert timelines.others == [("list:1", 100, False)]
    await fanout.tweet_changed(TweetChanged(200, 1, reply_to_author_id=9, mentioned_user_ids=(9,)))
    assert {u for u, line in timelines.lines.items() if 200 in line} == {1, 3, 9}
    assert timelines.others == [("list:1", 100, False)]  # not for everyone: not in its list


async def test_an_author_crossing_the_threshold_is_promoted_after_its_tweet_fans_out() -> None:
    graph = FakeFollowGraph({1: [2, 3, 4]})
    timelines = FakeTimelineStore(existing=[1, 2, 3, 4])
    registry = FakeRegistry()
    celebrities = Celebrities(registry, graph, timelines, FakeTweetIndex({}), threshold=3)
    fanout = fanout_of(graph, FakeTweetIndex({}), timelines, celebrities)
    assert await fanout.tweet_changed(TweetChanged(100, 1)) == 4  # the list counts 3 followers
    assert registry.entries == {1: State.CELEBRITY}
    assert all(1 in timelines.markers[f] for f in (2, 3, 4))


async def test_a_follow_syncs_the_followees_list_first_even_for_a_follower_without_a_timeline() -> None:
    timelines = FakeTimelineStore(existing=[])
    graph = FakeFollowGraph({})
    fanout = fanout_of(graph, FakeTweetIndex({7: [10]}), timelines)
    await fanout.follow_changed(FollowChanged(2, 7, False))
    assert timelines.follower_lists is not None and timelines.follower_lists.synced == [(2, 7)]


async def test_an_edit_tells_the_streams_and_moves_the_tweet_between_mentioned_timelines() -> None:
    # 1 posted 100 mentioning 3 and 4 (4 follows 1); the edit mentions 5 instead. 5 takes it, 3
    # loses it, 4 keeps it (it is in their home anyway); nobody else's timeline changes.
    timelines = FakeTimelineStore(existing=[1, 2, 3, 4, 5])
    fanout = fanout_of(FakeFollowGraph({1: [2, 4]}), FakeTweetIndex({}), timelines)
    await fanout.tweet_changed(TweetChanged(100, 1, mentioned_user_ids=(3, 4), public=True))
    assert all(100 in timelines.lines[u] for u in (1, 2, 3, 4))
    edited = TweetChanged(
        100, 1, mentioned_user_ids=(5,), public=True, edited=True, previously_mentioned=(3, 4)
    )
    assert await fanout.tweet_changed(edited) == 0
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 4, 5}
    assert timelines.retracted == [3]
    assert {u for t, u in timelines.edited if t == 100} == {1, 2, 4, 5}
    assert timelines.announced_edits == [100]
    assert timelines.announced == [(100, False)]  # announced once as new
