"""Fan-out rules on in-memory fakes: who receives a tweet, what follow and unfollow do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from fanout_svc.service import Fanout, FollowChanged, TweetCreated


class FakeGraph:
    def __init__(self, followers: dict[int, list[int]], page: int = 2) -> None:
        self._followers = followers
        self._page = page

    async def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]:
        ids = self._followers.get(user_id, [])
        for start in range(0, max(len(ids), 1), self._page):
            yield ids[start : start + self._page]


class FakeTweets:
    def __init__(self, by_author: dict[int, list[int]]) -> None:
        self._by_author = by_author

    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        ids = sorted((t for a in author_ids for t in self._by_author.get(a, [])), reverse=True)
        ids = [t for t in ids if (before is None or t < before) and (after is None or t > after)]
        return ids[:limit]


class FakeTimelines:
    def __init__(self, existing: Iterable[int], max_entries: int = 800) -> None:
        self.max_entries = max_entries
        self.lines: dict[int, set[int]] = {u: set() for u in existing}

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int:
        present = [u for u in user_ids if u in self.lines]
        for user_id in present:
            self.lines[user_id].add(tweet_id)
        return len(present)

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
    delivered = await fanout.tweet_created(TweetCreated(tweet_id=100, author_id=1))
    assert delivered == 4  # author 1 and followers 2, 3, 5; follower 4 has no timeline to write
    assert all(100 in timelines.lines[u] for u in (1, 2, 3, 5))
    assert 4 not in timelines.lines


async def test_redelivered_tweet_changes_nothing() -> None:
    timelines = FakeTimelines(existing=[1, 2])
    fanout = Fanout(FakeGraph({1: [2]}), FakeTweets({}), timelines)
    await fanout.tweet_created(TweetCreated(100, 1))
    once = {u: set(t) for u, t in timelines.lines.items()}
    await fanout.tweet_created(TweetCreated(100, 1))
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
