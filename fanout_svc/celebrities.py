"""Hybrid fan-out: authors with at least `threshold` followers are celebrities, not fanned out on
write; how an author crosses the threshold in either direction with every timeline staying exact.

Readers (timeline_svc) merge in, at read time, the tweets of each celebrity whose marker a home
timeline holds, from the celebrity's own list `celeb:<author>`; open streams subscribe once per
process to `celebrity:<author>`. A celebrity's tweets that are not for everyone
(social.rules.is_for_everyone) and the users it mentions are still written directly.

The invariant: at any moment, for every tweet T of author A and follower F with a timeline, T is in
F's timeline, or F's timeline holds A's marker and T is in A's list (or both). So:

- Promotion: registry PROMOTING (fan-out continues), then the marker into every follower's
  timeline, then CELEBRITY (fan-out stops). A follow racing with it either committed before the
  follower pages were read (and is marked by the promotion) or is handled after PROMOTING was set
  (and follow_changed marks it).
- Demotion: registry DEMOTING (fan-out resumes; readers still merge), then per follower the
  celebrity's recent tweets merged in before the marker is taken out, then the author leaves the
  registry. An interrupted step is redone by the author's next tweet.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol

from social import MERGED_AT_READ, State, TweetRef, is_for_everyone


class Registry(Protocol):
    async def state(self, author_id: int) -> State | None: ...
    async def states(self, author_ids: Sequence[int]) -> dict[int, State]: ...
    async def set(self, author_id: int, state: State) -> None: ...
    async def remove(self, author_id: int) -> None: ...


class Followers(Protocol):
    def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]: ...
    async def followers_count(self, user_id: int) -> int: ...


class Markers(Protocol):
    max_entries: int

    async def mark_celebrity(self, author_id: int, user_ids: Sequence[int], following: bool) -> int: ...
    async def merge_into(self, user_ids: Sequence[int], tweet_ids: Iterable[int]) -> int: ...


class OwnTweets(Protocol):
    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]: ...


class Celebrities:
    def __init__(
        self,
        registry: Registry,
        followers: Followers,
        timelines: Markers,
        tweets: OwnTweets,
        threshold: int,
        *,
        count_ttl_seconds: float = 30.0,
    ) -> None:
        self._registry = registry
        self._followers = followers
        self._timelines = timelines
        self._tweets = tweets
        self.threshold = threshold
        self._count_ttl = count_ttl_seconds
        self._counts: dict[int, tuple[float, int]] = {}
        # One promotion or demotion of an author at a time in this process (its tweets are handled
        # concurrently); across processes a repeat is harmless, every step being idempotent.
        self._changing: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def _followers_count(self, author_id: int) -> int:
        """users_svc's count, remembered briefly: a celebrity's tweets should not each cost a call."""
        cached = self._counts.get(author_id)
        if cached is not None and time.monotonic() - cached[0] < self._count_ttl:
            return cached[1]
        count = await self._followers.followers_count(author_id)
        self._counts[author_id] = (time.monotonic(), count)
        return count

    async def settle(self, author_id: int) -> State | None:
        """Brings the author's state up to date before a new tweet of theirs fans out, and returns
        it: finishes a promotion or demotion left half done, and demotes a celebrity that has
        fallen below the threshold. Only a CELEBRITY's tweet is left out of followers' timelines
        (merged at read time instead); after a demotion it is fanned out as usual."""
        state = await self._registry.state(author_id)
        if state is State.CELEBRITY:
            if await self._followers_count(author_id) >= self.threshold:
                return State.CELEBRITY
            await self.demote(author_id)
        elif state is State.DEMOTING:
            await self.demote(author_id)
        elif state is State.PROMOTING:
            await self.promote(author_id)
            return State.CELEBRITY
        return None

    async def settle_all(self, author_ids: Sequence[int]) -> dict[int, State | Exception | None]:
        """settle() for many authors: one read of the registry for all; only those in it (a
        celebrity, or a change half done) are settled one by one. An author whose settling failed
        has the error."""
        in_registry = await self._registry.states(list(dict.fromkeys(author_ids)))
        settled: dict[int, State | Exception | None] = dict.fromkeys(author_ids)
        for author_id in in_registry:
            try:
                settled[author_id] = await self.settle(author_id)
            except Exception as error:
                settled[author_id] = error
        return settled

    async def after_fanout(self, author_id: int, followers_seen: int) -> None:
        """Called after a tweet was fanned out to the author's `followers_seen` followers: at the
        threshold the author becomes a celebrity (this tweet is already everywhere)."""
        if followers_seen >= self.threshold:
            self._counts[author_id] = (time.monotonic(), followers_seen)
            await self.promote(author_id)

    async def promote(self, author_id: int) -> None:
        async with self._changing[author_id]:
            if await self._registry.state(author_id) is State.CELEBRITY:
                return
            await self._registry.set(author_id, State.PROMOTING)
            async for page in self._followers.follower_pages(author_id):
                await self._timelines.mark_celebrity(author_id, page, following=True)
            await self._registry.set(author_id, State.CELEBRITY)

    async def demote(self, author_id: int) -> None:
        async with self._changing[author_id]:
            if await self._registry.state(author_id) is None:
                return
            await self._registry.set(author_id, State.DEMOTING)
            recent = await self._tweets.refs_by_authors(
                [author_id], limit=min(self._timelines.max_entries, 1000)
            )
            shared = [r.tweet_id for r in recent if is_for_everyone(r)]
            async for page in self._followers.follower_pages(author_id):
                await self._timelines.merge_into(page, shared)
                await self._timelines.mark_celebrity(author_id, page, following=False)
            await self._registry.remove(author_id)
            self._counts.pop(author_id, None)

    async def follow_changed(self, follower_id: int, followee_id: int, following: bool) -> None:
        """A follower's marker follows their follow of a celebrity (an unfollow always takes it out:
        a marker left behind would merge in tweets they no longer follow)."""
        self._counts.pop(followee_id, None)  # the count changed: a demotion is judged afresh
        if not following:
            await self._timelines.mark_celebrity(followee_id, [follower_id], following=False)
        elif await self._registry.state(followee_id) in MERGED_AT_READ:
            await self._timelines.mark_celebrity(followee_id, [follower_id], following=True)
