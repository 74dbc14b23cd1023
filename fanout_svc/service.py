"""The rules of fan-out: who gets a new tweet, and what a follow or unfollow does to a timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TweetCreated:
    tweet_id: int
    author_id: int


@dataclass(frozen=True, slots=True)
class FollowChanged:
    follower_id: int
    followee_id: int
    following: bool


class FollowGraph(Protocol):
    def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]: ...


class TweetIndex(Protocol):
    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]: ...


class Timelines(Protocol):
    max_entries: int

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int: ...
    async def exists(self, user_id: int) -> bool: ...
    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int: ...
    async def remove(self, user_id: int, tweet_ids: Iterable[int]) -> None: ...
    async def oldest(self, user_id: int) -> int | None: ...


# ListTweetIdsByAuthors answers at most this many ids per call.
_ID_BATCH = 1000


class Fanout:
    def __init__(self, graph: FollowGraph, tweets: TweetIndex, timelines: Timelines) -> None:
        self._graph = graph
        self._tweets = tweets
        self._timelines = timelines

    async def tweet_created(self, event: TweetCreated) -> int:
        """Writes the tweet into the author's own and every follower's home timeline; returns how
        many timelines took it (absent timelines are skipped: they are rebuilt when read)."""
        delivered = await self._timelines.deliver(event.tweet_id, [event.author_id])
        async for followers in self._graph.follower_pages(event.author_id):
            delivered += await self._timelines.deliver(event.tweet_id, followers)
        return delivered

    async def follow_changed(self, event: FollowChanged) -> None:
        """A follow merges the followee's recent tweets into the follower's timeline; an unfollow
        takes out every one of them that the timeline holds."""
        if not await self._timelines.exists(event.follower_id):
            return  # rebuilt from the follow graph when next read
        if event.following:
            recent = await self._tweets.ids_by_authors(
                [event.followee_id], limit=min(self._timelines.max_entries, _ID_BATCH)
            )
            await self._timelines.merge(event.follower_id, recent)
            return
        oldest = await self._timelines.oldest(event.follower_id)
        if oldest is None:
            return
        before: int | None = None
        while True:
            held = await self._tweets.ids_by_authors(
                [event.followee_id], before=before, after=oldest - 1, limit=_ID_BATCH
            )
            await self._timelines.remove(event.follower_id, held)
            if len(held) < _ID_BATCH:
                return
            before = held[-1]
