"""The rules of the home timeline: read through Redis, rebuild from the owners, fall back to them
past the Redis window, and stream live events after a gap-free replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from meshkit.errors import Unavailable
from meshkit.ids import ms_delta
from meshkit.pagination import Page, PageTokens, page_size

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# ListTweetIdsByAuthors answers at most this many ids per call.
_ID_BATCH = 1000


class FollowGraph(Protocol):
    async def following(self, user_id: int) -> list[int]: ...


class TweetSource(Protocol[T_co]):
    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]: ...
    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, T_co]: ...


class Timelines(Protocol):
    max_entries: int

    async def begin_rebuild(self, user_id: int) -> None: ...
    async def finish_rebuild(self, user_id: int, tweet_ids: Iterable[int]) -> None: ...
    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int: ...
    async def page(self, user_id: int, before: int | None, limit: int) -> list[int] | None: ...
    async def after(self, user_id: int, after: int, limit: int) -> list[int] | None: ...


class LiveFeed(Protocol):
    def subscribe(self, user_id: int) -> AbstractAsyncContextManager[asyncio.Queue[int | None]]:
        """Tweet ids delivered to user_id from now on; None means the feed broke."""
        ...


@dataclass(frozen=True, slots=True)
class TweetArrived(Generic[T]):
    tweet: T


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


class HomeTimeline(Generic[T]):
    """`T` is the hydrated tweet as the tweet source returns it; this module never looks inside."""

    def __init__(
        self,
        graph: FollowGraph,
        tweets: TweetSource[T],
        timelines: Timelines,
        live: LiveFeed,
        page_tokens: PageTokens,
        *,
        heartbeat_seconds: float,
        replay_overlap_ms: int = 1000,
    ) -> None:
        self._graph = graph
        self._tweets = tweets
        self._timelines = timelines
        self._live = live
        self._pages = page_tokens
        self._heartbeat = heartbeat_seconds
        self._overlap = ms_delta(replay_overlap_ms)

    async def _sources(self, viewer: int) -> list[int]:
        """Whose tweets a home timeline holds: everyone the viewer follows, and the viewer."""
        return [*await self._graph.following(viewer), viewer]

    async def rebuild(self, viewer: int) -> None:
        """Recreates the Redis timeline from the owners. The empty timeline exists before the
        owners are asked, so fan-out writes landing meanwhile are kept."""
        await self._timelines.begin_rebuild(viewer)
        recent = await self._tweets.ids_by_authors(
            await self._sources(viewer), limit=min(self._timelines.max_entries, _ID_BATCH)
        )
        await self._timelines.finish_rebuild(viewer, recent)

    async def _ids(self, viewer: int, before: int | None, limit: int) -> list[int]:
        """`limit` ids below `before`, newest first: from Redis, then past its window from the owners."""
        ids = await self._timelines.page(viewer, before, limit)
        if ids is None:
            await self.rebuild(viewer)
            ids = await self._timelines.page(viewer, before, limit) or []
        if len(ids) < limit:
            older = await self._tweets.ids_by_authors(
                await self._sources(viewer), before=ids[-1] if ids else before, limit=limit - len(ids)
            )
            ids.extend(older)
        return ids

    async def page(self, viewer: int, size: int, token: str) -> Page[T]:
        limit = page_size(size)
        scope = f"home:{viewer}"
        cursor = self._pages.decode(token, scope)
        ids = self._pages.page(
            await self._ids(viewer, int(cursor) if cursor else None, limit + 1), limit, scope, str
        )
        found = await self._tweets.tweets(ids.items)
        # Tweets gone from their owner (deleted) are dropped; the cursor still moves past them.
        return Page([found[t] for t in ids.items if t in found], ids.next_page_token)

    async def stream(self, viewer: int, since: int | None) -> AsyncIterator[TweetArrived[T] | Heartbeat]:
        """Replays what arrived after `since` (oldest first), then live tweets and heartbeats.

        The live subscription starts before the replay is read, so nothing falls between the two.
        The replay starts `replay_overlap_ms` before `since`: a tweet whose id is slightly older
        than one the client saw may have been delivered after it (ids are taken at insert, commit
        order can differ), so a reconnecting client may see a tweet again and dedupes by tweet_id.
        """
        async with self._live.subscribe(viewer) as queue:
            sent: set[int] = set()
            if since is not None:
                replay = await self._timelines.after(
                    viewer, max(since - self._overlap, 0), self._timelines.max_entries
                )
                if replay is None:
                    await self.rebuild(viewer)
                    replay = await self._timelines.after(
                        viewer, max(since - self._overlap, 0), self._timelines.max_entries
                    )
                replay = [t for t in replay or [] if t != since]
                found = await self._tweets.tweets(replay)
                for tweet_id in replay:
                    if tweet_id in found:
                        sent.add(tweet_id)
                        yield TweetArrived(found[tweet_id])
            next_beat = time.monotonic() + self._heartbeat
            while True:
                try:
                    async with asyncio.timeout(max(next_beat - time.monotonic(), 0)):
                        arrived = await queue.get()
                except TimeoutError:
                    next_beat = time.monotonic() + self._heartbeat
                    yield Heartbeat()
                    continue
                if arrived is None:
                    raise Unavailable(
                        "the live feed was interrupted; reconnect with since_tweet_id", reason="FEED_LOST"
                    )
                if arrived in sent:
                    continue
                found = await self._tweets.tweets([arrived])
                if arrived in found:
                    yield TweetArrived(found[arrived])
