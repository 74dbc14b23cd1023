"""Crossing the celebrity threshold both ways, on in-memory fakes: markers, merges and the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from fanout_svc.celebrities import Celebrities
from meshkit.celebrities import State
from meshkit.peers import TweetRef


class FakeRegistry:
    def __init__(self) -> None:
        self.states: dict[int, State] = {}
        self.history: list[tuple[int, State | None]] = []

    async def state(self, author_id: int) -> State | None:
        return self.states.get(author_id)

    async def set(self, author_id: int, state: State) -> None:
        self.states[author_id] = state
        self.history.append((author_id, state))

    async def remove(self, author_id: int) -> None:
        self.states.pop(author_id, None)
        self.history.append((author_id, None))


class FakeFollowers:
    def __init__(self, followers: dict[int, list[int]]) -> None:
        self.followers = followers

    async def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]:
        ids = self.followers.get(user_id, [])
        for start in range(0, len(ids), 2):
            yield ids[start : start + 2]

    async def followers_count(self, user_id: int) -> int:
        return len(self.followers.get(user_id, []))


class FakeTimelines:
    max_entries = 100

    def __init__(self, users: Iterable[int]) -> None:
        self.tweets: dict[int, set[int]] = {u: set() for u in users}
        self.markers: dict[int, set[int]] = {u: set() for u in users}

    async def mark_celebrity(self, author_id: int, user_ids: Sequence[int], following: bool) -> int:
        for u in user_ids:
            if u in self.markers:
                (self.markers[u].add if following else self.markers[u].discard)(author_id)
        return len(user_ids)

    async def merge_into(self, user_ids: Sequence[int], tweet_ids: Iterable[int]) -> int:
        ids = list(tweet_ids)
        for u in user_ids:
            if u in self.tweets:
                self.tweets[u].update(ids)
        return len(user_ids)


class FakeTweets:
    def __init__(self, refs: list[TweetRef]) -> None:
        self.refs = refs

    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]:
        return sorted((r for r in self.refs if r.author_id in author_ids), key=lambda r: -r.tweet_id)[:limit]


def setup(
    followers: list[int], refs: list[TweetRef], threshold: int = 3
) -> tuple[Celebrities, FakeRegistry, FakeFollowers, FakeTimelines]:
    registry, graph = FakeRegistry(), FakeFollowers({1: followers})
    timelines = FakeTimelines(range(100))
    celebrities = Celebrities(registry, graph, timelines, FakeTweets(refs), threshold, count_ttl_seconds=0)
    return celebrities, registry, graph, timelines


async def test_an_author_reaching_the_threshold_is_promoted_with_every_follower_marked_first() -> None:
    celebrities, registry, _, timelines = setup([10, 11, 12], [])
    assert not await celebrities.skips_fanout(1)
    await celebrities.after_fanout(1, followers_seen=3)
    assert registry.history == [(1, State.PROMOTING), (1, State.CELEBRITY)]
    assert all(1 in timelines.markers[f] for f in (10, 11, 12))
    assert await celebrities.skips_fanout(1)


async def test_below_the_threshold_nothing_changes() -> None:
    celebrities, registry, _, _ = setup([10, 11], [])
    await celebrities.after_fanout(1, followers_seen=2)
    assert registry.history == []
    assert not await celebrities.skips_fanout(1)


async def test_a_celebrity_below_the_threshold_is_demoted_with_its_shared_tweets_merged_back() -> None:
    refs = [TweetRef(50, 1, None), TweetRef(51, 1, 7), TweetRef(52, 1, 1)]  # 51 replies to someone else
    celebrities, registry, graph, timelines = setup([10, 11, 12], refs)
    await celebrities.promote(1)
    graph.followers[1] = [10, 11]  # one unfollowed
    assert not await celebrities.skips_fanout(1)  # demoted; this tweet is fanned out as usual
    assert registry.states == {}
    assert registry.history[-2:] == [(1, State.DEMOTING), (1, None)]
    for follower in (10, 11):
        assert timelines.tweets[follower] == {50, 52}
        assert 1 not in timelines.markers[follower]


async def test_a_half_done_promotion_is_finished_by_the_next_tweet() -> None:
    celebrities, registry, _, timelines = setup([10, 11, 12], [])
    registry.states[1] = State.PROMOTING  # a crash after the first step
    assert await celebrities.skips_fanout(1)
    assert registry.states[1] is State.CELEBRITY
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
