"""Hydration: tweets as they show, from the owners' caches first (CacheFirst), and coalesced:
concurrent requests for tweets become one batch read (Coalescer).

When a tweet is published, every open stream of every follower in this process wakes at the same
moment and asks for that same tweet; one call per stream overloaded tweets_svc (a thousand streams,
a thousand identical BatchGetTweets, deadlines exceeded). Requests made in the same event-loop
iteration are merged, each id asked once, and every caller gets its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from social.caches import CachedTweet, TweetCacheReader

K = TypeVar("K")
T = TypeVar("T")
Fetch = Callable[[Sequence[K]], Awaitable[Mapping[K, T]]]


class Coalescer(Generic[K, T]):
    """Merges the calls made in one event-loop iteration into one `fetch` of every key asked."""

    def __init__(self, fetch: Fetch[K, T], max_batch: int = 1000) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: dict[K, list[asyncio.Future[T | None]]] = {}
        self._flush_scheduled = False
        self._calls: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[K]) -> dict[K, T]:
        """What `fetch` finds for `keys` (keys it does not answer are absent)."""
        if not keys:
            return {}
        loop = asyncio.get_running_loop()
        mine: dict[K, asyncio.Future[T | None]] = {}
        for key in dict.fromkeys(keys):
            future: asyncio.Future[T | None] = loop.create_future()
            self._waiting.setdefault(key, []).append(future)
            mine[key] = future
        if not self._flush_scheduled:
            # Runs after the callbacks already scheduled: the other woken streams add theirs first.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        found = await asyncio.gather(*mine.values(), return_exceptions=True)
        for outcome in found:
            if isinstance(outcome, BaseException):
                raise outcome
        return {k: value for k, value in zip(mine, found, strict=True) if value is not None}  # type: ignore[misc]

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, {}
        ids = list(waiting)
        for start in range(0, len(ids), self._max_batch):
            batch = {t: waiting[t] for t in ids[start : start + self._max_batch]}
            task = asyncio.create_task(self._answer(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _answer(self, batch: dict[K, list[asyncio.Future[T | None]]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except Exception as error:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        for key, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))


class OwnerTweets(Protocol):
    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, Any]:
        """Hydrated tweets (tweetmesh.tweets.v1.Tweet) by id; unknown or deleted ids are absent."""
        ...


class CacheFirst:
    """Tweets as they show, from the owners' caches (social.caches), the owner asked only for
    those the caches miss (its answer fills them for the next read)."""

    def __init__(self, cache: TweetCacheReader, owner: OwnerTweets) -> None:
        self._cache = cache
        self._owner = owner

    async def tweets(self, tweet_ids: Sequence[int]) -> dict[int, CachedTweet]:
        read = await self._cache.read(tweet_ids)
        if read.missing:
            for tweet_id, tweet in (await self._owner.tweets(read.missing)).items():
                read.found[tweet_id] = CachedTweet.of(tweet)
        return read.found
