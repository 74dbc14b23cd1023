"""Home timeline reads on in-memory fakes: rebuild, the Redis window, paging and dropped tweets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

from meshkit.pagination import PageTokens
from timeline_svc.service import HomeTimeline


class FakeGraph:
    def __init__(self, following: dict[int, list[int]]) -> None:
        self.following_of = following

    async def following(self, user_id: int) -> list[int]:
        return self.following_of.get(user_id, [])


class FakeTweets:
    def __init__(self, by_author: dict[int, list[int]], deleted: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.by_author = by_author
        self.deleted = deleted

    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        ids = sorted((t for a in author_ids for t in self.by_author.get(a, [])), reverse=True)
        return [t for t in ids if (before is None or t < before) and (after is None or t > after)][:limit]

    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, str]:
        return {t: f"tweet-{t}" for t in tweet_ids if t not in self.deleted}


class FakeTimelines:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.lines: dict[int, set[int]] = {}
        self.rebuilds = 0

    async def begin_rebuild(self, user_id: int) -> None:
        self.rebuilds += 1
        self.lines[user_id] = set()

    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int:
        line = self.lines.get(user_id)
        if line is None:
            return 0
        line.update(tweet_ids)
        for extra in sorted(line)[: max(len(line) - self.max_entries, 0)]:
            line.discard(extra)
        return len(line)

    async def finish_rebuild(self, user_id: int, tweet_ids: Iterable[int]) -> None:
        await self.merge(user_id, tweet_ids)

    async def page(self, user_id: int, before: int | None, limit: int) -> list[int] | None:
        line = self.lines.get(user_id)
        if line is None:
            return None
        return sorted((t for t in line if before is None or t < before), reverse=True)[:limit]

    async def after(self, user_id: int, after: int, limit: int) -> list[int] | None:
        line = self.lines.get(user_id)
        return None if line is None else sorted(t for t in line if t > after)[:limit]


class NoLive:
    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: int) -> AsyncIterator[asyncio.Queue[int | None]]:
        yield asyncio.Queue()


def home(tweets: FakeTweets, timelines: FakeTimelines, following: dict[int, list[int]]) -> HomeTimeline[str]:
    return HomeTimeline(
        FakeGraph(following), tweets, timelines, NoLive(), PageTokens("s"), heartbeat_seconds=1
    )


async def read_all(timeline: HomeTimeline[str], viewer: int, size: int) -> list[str]:
    out: list[str] = []
    token = ""
    while True:
        page = await timeline.page(viewer, size, token)
        out.extend(page.items)
        token = page.next_page_token
        if not token:
            return out


async def test_missing_timeline_is_rebuilt_once_and_includes_own_tweets() -> None:
    tweets = FakeTweets({1: [5], 2: [3, 9]})
    timelines = FakeTimelines(max_entries=100)
    timeline = home(tweets, timelines, {1: [2]})
    assert await read_all(timeline, 1, 10) == ["tweet-9", "tweet-5", "tweet-3"]
    assert await read_all(timeline, 1, 10) == ["tweet-9", "tweet-5", "tweet-3"]
    assert timelines.rebuilds == 1


async def test_paging_continues_past_the_redis_window_into_the_owners() -> None:
    tweets = FakeTweets({2: list(range(1, 26))})
    timelines = FakeTimelines(max_entries=10)
    timeline = home(tweets, timelines, {1: [2]})
    assert await read_all(timeline, 1, 4) == [f"tweet-{t}" for t in range(25, 0, -1)]


async def test_deleted_tweets_are_dropped_without_breaking_pages() -> None:
    tweets = FakeTweets({2: [1, 2, 3, 4, 5]}, deleted={4})
    timeline = home(tweets, FakeTimelines(max_entries=100), {1: [2]})
    assert await read_all(timeline, 1, 2) == ["tweet-5", "tweet-3", "tweet-2", "tweet-1"]


async def test_last_page_has_no_token() -> None:
    timeline = home(FakeTweets({2: [1, 2]}), FakeTimelines(max_entries=100), {1: [2]})
    page = await timeline.page(1, 2, "")
    assert page.items == ["tweet-2", "tweet-1"]
    assert page.next_page_token == ""
