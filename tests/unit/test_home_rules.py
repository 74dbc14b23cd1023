"""Home timeline reads and streams on in-memory fakes: rebuild, the Redis window, paging, dropped
tweets, and a celebrity promoted while a stream is open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from meshkit.home_timelines import CelebrityFollow, Snapshot
from meshkit.ids import id_at
from meshkit.pagination import PageTokens
from meshkit.peers import TweetRef
from timeline_svc.service import (
    RETWEET_WINDOW,
    Heartbeat,
    HomeTimeline,
    LiveEvent,
    TweetArrived,
    visible_entries,
)


class FakeGraph:
    def __init__(self, following: dict[int, list[int]]) -> None:
        self.following_of = following

    async def following(self, user_id: int) -> list[int]:
        return self.following_of.get(user_id, [])


class FakeTweets:
    """Tweets by author; `replies_to` gives a reply's replied-to author, `retweets` a retweet's
    original, `mentions` who a tweet mentions. Hydrated tweets are strings "tweet-<id>"."""

    def __init__(
        self,
        by_author: dict[int, list[int]],
        deleted: set[int] = frozenset(),  # type: ignore[assignment]
        replies_to: dict[int, int] | None = None,
        retweets: dict[int, int] | None = None,
        mentions: dict[int, list[int]] | None = None,
    ) -> None:
        self.by_author = by_author
        self.deleted = deleted
        self.replies_to = replies_to or {}
        self.retweets = retweets or {}
        self.mentions = mentions or {}
        self.hydrated: list[int] = []  # how many ids each hydration asked for

    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]:
        ids = sorted((t for a in author_ids for t in self.by_author.get(a, [])), reverse=True)
        ids = [t for t in ids if (before is None or t < before) and (after is None or t > after)][:limit]
        author = {t: a for a, ts in self.by_author.items() for t in ts}
        return [TweetRef(t, author[t], self.replies_to.get(t)) for t in ids]

    async def mention_ids(
        self, user_id: int, *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        ids = sorted(self.mentions.get(user_id, []), reverse=True)
        return [t for t in ids if (before is None or t < before) and (after is None or t > after)][:limit]

    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, str]:
        self.hydrated.append(len(tweet_ids))
        return {t: f"tweet-{t}" for t in tweet_ids if t not in self.deleted}

    def original_of(self, tweet: str) -> int | None:
        return self.retweets.get(int(tweet.removeprefix("tweet-")))


class FakeTimelines:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.lines: dict[int, set[int]] = {}
        self.markers: dict[int, set[int]] = {}
        self.rebuilding: set[int] = set()
        self.rebuilds = 0

    async def begin_rebuild(self, user_id: int) -> None:
        self.rebuilds += 1
        self.lines[user_id] = set()
        self.markers[user_id] = set()
        self.rebuilding.add(user_id)

    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int:
        line = self.lines.get(user_id)
        if line is None:
            return 0
        line.update(tweet_ids)
        for extra in sorted(line)[: max(len(line) - self.max_entries, 0)]:
            line.discard(extra)
        return len(line)

    async def finish_rebuild(
        self, user_id: int, tweet_ids: Iterable[int], celebrities: Iterable[int] = ()
    ) -> None:
        await self.merge(user_id, tweet_ids)
        self.markers.setdefault(user_id, set()).update(celebrities)
        self.rebuilding.discard(user_id)

    async def read(self, user_id: int, *, touch: bool = True) -> Snapshot | None:
        line = self.lines.get(user_id)
        if line is None:
            return None
        return Snapshot(
            sorted(line, reverse=True), sorted(self.markers.get(user_id, ())), user_id in self.rebuilding
        )

    async def read_many(self, user_ids: Sequence[int]) -> list[Snapshot | None]:
        return [await self.read(u, touch=False) for u in user_ids]

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
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[LiveEvent | None]]:
        yield asyncio.Queue()

    async def attach(self, channel: str, queue: asyncio.Queue[LiveEvent | None]) -> None:
        pass

    async def detach(self, channel: str, queue: asyncio.Queue[LiveEvent | None]) -> None:
        pass


def home(tweets: FakeTweets, timelines: FakeTimelines, following: dict[int, list[int]]) -> HomeTimeline[str]:
    return HomeTimeline(
        FakeGraph(following),
        tweets,
        timelines,
        NoLive(),
        PageTokens("s"),
        original_of=tweets.original_of,
        heartbeat_seconds=1,
    )


async def read_all(timeline: HomeTimeline[str], viewer: int, size: int) -> list[str]:
    out: list[str] = []
    token = ""
    while True:
        page = (await timeline.page(viewer, size, token)).page
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
    page = (await timeline.page(1, 2, "")).page
    assert page.items == ["tweet-2", "tweet-1"]
    assert page.next_page_token == ""


async def test_rebuild_keeps_replies_only_between_followed_users_and_adds_mentions() -> None:
    # 1 follows 2 and 3. 2's tweets: 10 plain, 11 replies to 3, 12 replies to 9 (not followed),
    # 13 replies to 1. 9 mentions 1 in 14. Only 12 stays out.
    tweets = FakeTweets(
        {2: [10, 11, 12, 13], 9: [14]}, replies_to={11: 3, 12: 9, 13: 1}, mentions={1: [13, 14]}
    )
    timeline = home(tweets, FakeTimelines(max_entries=100), {1: [2, 3]})
    assert await read_all(timeline, 1, 2) == ["tweet-14", "tweet-13", "tweet-11", "tweet-10"]


async def test_a_retweet_of_an_original_already_among_the_older_window_is_hidden_across_pages() -> None:
    # 100 is the original (by 2); 120 and 130 retweet it (by 3) within the window of 40 older
    # entries; 500 retweets it far above the window, so it is shown again.
    filler = [t for t in range(101, 500) if t not in (120, 130)]
    retweets = {120: 100, 130: 100, 500: 100}
    tweets = FakeTweets({2: [100, *filler], 3: [120, 130, 500]}, retweets=retweets)
    timeline = home(tweets, FakeTimelines(max_entries=1000), {1: [2, 3]})
    shown = await read_all(timeline, 1, 7)
    assert "tweet-120" not in shown and "tweet-130" not in shown
    assert "tweet-100" in shown and "tweet-500" in shown
    assert len(shown) == 1 + len(filler) + 1


def test_visible_entries_window() -> None:
    ids = [9, 8, 7, *range(6, 6 - RETWEET_WINDOW, -1)]
    originals: dict[int, int | None] = {t: None for t in ids}
    originals[9] = 5  # retweet of 5, which is within the window: hidden
    originals[8] = 1000  # retweet of something not in the window: shown
    del originals[7]  # deleted: hidden
    shown = visible_entries(ids, originals)
    assert shown[:3] == [False, True, False]
    assert all(shown[3:])


async def test_a_page_without_retweets_hydrates_only_the_page() -> None:
    tweets = FakeTweets({2: list(range(1, 200))})
    timeline = home(tweets, FakeTimelines(max_entries=300), {1: [2]})
    page = (await timeline.page(1, 10, "")).page
    assert len(page.items) == 10
    assert tweets.hydrated == [11]


class ScriptedLive(NoLive):
    """A live feed whose user channel carries `events`, and which records the channels attached."""

    def __init__(self, events: list[LiveEvent]) -> None:
        self.events = events
        self.attached: list[str] = []

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[LiveEvent | None]]:
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue()
        for event in self.events:
            queue.put_nowait(event)
        yield queue

    async def attach(self, channel: str, queue: asyncio.Queue[LiveEvent | None]) -> None:
        self.attached.append(channel)


async def test_a_stream_gets_what_a_celebrity_posted_before_it_listened_to_their_channel() -> None:
    # Author 7 is promoted while viewer 1's stream is open: their tweet `missed` was published on
    # the celebrity channel before the stream attached to it (it learnt of the promotion late).
    now = id_at(datetime.now(UTC))
    missed, later, before_stream = now + 1, now + 2, id_at(datetime(2025, 1, 1, tzinfo=UTC))
    tweets = FakeTweets({7: [before_stream, missed, later]})
    live = ScriptedLive([CelebrityFollow(7, following=True), (later, False), (missed, False)])
    timeline = HomeTimeline(
        FakeGraph({1: [7]}),
        tweets,
        FakeTimelines(max_entries=100),
        live,
        PageTokens("s"),
        original_of=tweets.original_of,
        heartbeat_seconds=0.2,
    )
    stream = timeline.stream(1, None)
    assert [await anext(stream) for _ in range(2)] == [
        TweetArrived(f"tweet-{missed}"),
        TweetArrived(f"tweet-{later}"),
    ]
    assert live.attached == ["celebrity:7"]
    # `later` and `missed` arriving live as well are not sent again, nor is the older tweet.
    assert isinstance(await anext(stream), Heartbeat)
    await stream.aclose()
