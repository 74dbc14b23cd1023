"""Fan-out rules on in-memory fakes: who receives a tweet, what follow and unfollow do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from fanout_svc.service import Fanout, FollowChanged, TweetChanged
from meshkit.peers import TweetRef


class FakeGraph:
    def __init__(self, followers: dict[int, list[int]], page: int = 2) -> None:
        self._followers = followers
        self._page = page

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        return [c for c in candidates if c in self._followers.get(user_id, [])]

    async def following(self, user_id: int) -> list[int]:
        return [u for u, followers in self._followers.items() if user_id in followers]

    async def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]:
        ids = self._followers.get(user_id, [])
        for start in range(0, max(len(ids), 1), self._page):
            yield ids[start : start + self._page]


class FakeTweets:
    def __init__(self, by_author: dict[int, list[int]], replies_to: dict[int, int] | None = None) -> None:
        self._by_author = by_author
        self._replies_to = replies_to or {}

    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]:
        refs = sorted(
            (TweetRef(t, a, self._replies_to.get(t)) for a in author_ids for t in self._by_author.get(a, [])),
            key=lambda r: -r.tweet_id,
        )
        refs = [
            r
            for r in refs
            if (before is None or r.tweet_id < before) and (after is None or r.tweet_id > after)
        ]
        return refs[:limit]

    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        refs = await self.refs_by_authors(author_ids, before=before, after=after, limit=limit)
        return [r.tweet_id for r in refs]


class FakeTimelines:
    def __init__(self, existing: Iterable[int], max_entries: int = 800) -> None:
        self.max_entries = max_entries
        self.lines: dict[int, set[int]] = {u: set() for u in existing}
        self.retracted: list[int] = []
        self.announced: list[tuple[int, bool]] = []

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int:
        present = [u for u in user_ids if u in self.lines]
        for user_id in present:
            self.lines[user_id].add(tweet_id)
        return len(present)

    async def retract(self, tweet_id: int, user_ids: Sequence[int]) -> None:
        for user_id in user_ids:
            self.lines.get(user_id, set()).discard(tweet_id)
        self.retracted.extend(user_ids)

    async def announce_global(self, tweet_id: int, *, deleted: bool) -> None:
        self.announced.append((tweet_id, deleted))

    async def exists(self, user_id: int) -> bool:
        return user_id in self.lines

    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int:
        ids = list(tweet_ids)
        if user_id in self.lines:
            self.lines[user_id].update(ids)
        return len(ids)

    async def remove(self, user_id: int, tweet_ids: Iterable[int]) -> None:
        self.lines.get(user_id, set()).difference_update(tweet_ids)

    async def oldest(self, user_id: int) -> int | None:
        line = self.lines.get(user_id)
        return min(line) if line else None


async def test_tweet_reaches_author_and_every_follower_with_a_timeline() -> None:
    timelines = FakeTimelines(existing=[1, 2, 3, 5])
    fanout = Fanout(FakeGraph({1: [2, 3, 4, 5]}), FakeTweets({}), timelines)
    delivered = await fanout.tweet_changed(TweetChanged(tweet_id=100, author_id=1))
    assert delivered == 4  # author 1 and followers 2, 3, 5; follower 4 has no timeline to write
    assert all(100 in timelines.lines[u] for u in (1, 2, 3, 5))
    assert 4 not in timelines.lines


async def test_redelivered_tweet_changes_nothing() -> None:
    timelines = FakeTimelines(existing=[1, 2])
    fanout = Fanout(FakeGraph({1: [2]}), FakeTweets({}), timelines)
    await fanout.tweet_changed(TweetChanged(100, 1))
    once = {u: set(t) for u, t in timelines.lines.items()}
    await fanout.tweet_changed(TweetChanged(100, 1))
    assert timelines.lines == once


async def test_follow_merges_and_unfollow_removes_only_the_followees_tweets() -> None:
    timelines = FakeTimelines(existing=[2])
    timelines.lines[2] = {50, 60}
    fanout = Fanout(FakeGraph({}), FakeTweets({7: [10, 55, 70]}), timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 50, 55, 60, 70}
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=False))
    assert timelines.lines[2] == {50, 60}


async def test_follow_of_a_user_without_a_timeline_is_left_to_the_rebuild() -> None:
    timelines = FakeTimelines(existing=[])
    fanout = Fanout(FakeGraph({}), FakeTweets({7: [10]}), timelines)
    await fanout.follow_changed(FollowChanged(2, 7, True))
    assert timelines.lines == {}


async def test_reply_to_someone_else_reaches_only_followers_of_both_and_the_replied_to() -> None:
    # 1 replies to 9. Followers of 1: 2 (also follows 9), 3 (does not). 9 is mentioned implicitly.
    timelines = FakeTimelines(existing=[1, 2, 3, 9])
    fanout = Fanout(FakeGraph({1: [2, 3], 9: [2]}), FakeTweets({}), timelines)
    event = TweetChanged(100, 1, reply_to_author_id=9, mentioned_user_ids=(9,))
    assert await fanout.tweet_changed(event) == 3
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 9}


async def test_self_reply_and_mentions_reach_every_follower_and_the_mentioned() -> None:
    timelines = FakeTimelines(existing=[1, 2, 3, 8])
    fanout = Fanout(FakeGraph({1: [2, 3]}), FakeTweets({}), timelines)
    await fanout.tweet_changed(
        TweetChanged(100, 1, reply_to_author_id=1, mentioned_user_ids=(8,), public=True)
    )
    assert {u for u, line in timelines.lines.items() if 100 in line} == {1, 2, 3, 8}
    assert timelines.announced == [(100, False)]


async def test_delete_takes_the_tweet_out_of_every_timeline_that_may_hold_it() -> None:
    timelines = FakeTimelines(existing=[1, 2, 3, 9])
    fanout = Fanout(FakeGraph({1: [2, 3]}), FakeTweets({}), timelines)
    await fanout.tweet_changed(TweetChanged(100, 1, mentioned_user_ids=(9,), public=True))
    await fanout.tweet_changed(TweetChanged(100, 1, deleted=True, mentioned_user_ids=(9,), public=True))
    assert all(100 not in line for line in timelines.lines.values())
    assert set(timelines.retracted) == {1, 2, 3, 9}
    assert timelines.announced == [(100, False), (100, True)]


async def test_follow_merges_only_the_replies_the_follower_may_see() -> None:
    # 7's tweets: 10 plain, 20 replies to 8 (whom 2 follows), 30 replies to 9 (whom 2 does not).
    timelines = FakeTimelines(existing=[2])
    tweets = FakeTweets({7: [10, 20, 30]}, replies_to={20: 8, 30: 9})
    fanout = Fanout(FakeGraph({8: [2]}), tweets, timelines)
    await fanout.follow_changed(FollowChanged(follower_id=2, followee_id=7, following=True))
    assert timelines.lines[2] == {10, 20}
