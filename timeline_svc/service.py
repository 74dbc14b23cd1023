"""The rules of the home and global timelines: read through Redis, rebuild from the owners, fall
back to them past the Redis window, hide repeated retweets, and stream live events after a
gap-free replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from meshkit.errors import Unavailable
from meshkit.home_timelines import GLOBAL_CHANNEL, belongs_in_home, live_channel
from meshkit.ids import ms_delta
from meshkit.pagination import Page, PageTokens, page_size
from meshkit.peers import TweetRef

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# ListTweetIdsByAuthors and ListMentionIds answer at most this many ids per call.
_ID_BATCH = 1000
# A retweet is hidden when the same original is among this many older entries (Mastodon's rule).
RETWEET_WINDOW = 40


class FollowGraph(Protocol):
    async def following(self, user_id: int) -> list[int]: ...


class TweetSource(Protocol[T_co]):
    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]: ...
    async def mention_ids(
        self, user_id: int, *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]: ...
    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, T_co]: ...


def visible_entries(ids: Sequence[int], original_of: Mapping[int, int | None]) -> list[bool]:
    """For each id (newest first): False when it is a retweet whose original is already shown by
    one of the RETWEET_WINDOW entries after it (older), or when it is gone (absent from the map).
    `original_of` maps each live id to the original it retweets, or None for a plain tweet."""
    # The original each entry shows: itself for a plain tweet; None when it is gone.
    keys = [(original_of[t] or t) if t in original_of else None for t in ids]
    shown = []
    for i, tweet_id in enumerate(ids):
        if keys[i] is None:
            shown.append(False)
        elif original_of[tweet_id] is None:
            shown.append(True)
        else:
            shown.append(keys[i] not in keys[i + 1 : i + 1 + RETWEET_WINDOW])
    return shown


class Timelines(Protocol):
    max_entries: int

    async def begin_rebuild(self, user_id: int) -> None: ...
    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int: ...
    async def page(self, user_id: int, before: int | None, limit: int) -> list[int] | None: ...
    async def after(self, user_id: int, after: int, limit: int) -> list[int] | None: ...


class LiveFeed(Protocol):
    def subscribe(self, channel: str) -> AbstractAsyncContextManager[asyncio.Queue[LiveEvent | None]]:
        """(tweet id, deleted) published on the channel from now on; None means the feed broke."""
        ...


@dataclass(frozen=True, slots=True)
class TweetArrived(Generic[T]):
    tweet: T


@dataclass(frozen=True, slots=True)
class TweetRemoved:
    tweet_id: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


LiveEvent = tuple[int, bool]  # (tweet id, deleted)
Event = TweetArrived[T] | TweetRemoved | Heartbeat


async def follow_live(
    queue: asyncio.Queue[LiveEvent | None],
    already_sent: set[int],
    fetch: Callable[[Sequence[int]], Awaitable[Mapping[int, T]]],
    heartbeat_seconds: float,
) -> AsyncIterator[Event[T]]:
    """Live events from a subscription queue, hydrated, with a heartbeat when it is quiet."""
    next_beat = time.monotonic() + heartbeat_seconds
    while True:
        try:
            async with asyncio.timeout(max(next_beat - time.monotonic(), 0)):
                arrived = await queue.get()
        except TimeoutError:
            next_beat = time.monotonic() + heartbeat_seconds
            yield Heartbeat()
            continue
        if arrived is None:
            raise Unavailable(
                "the live feed was interrupted; reconnect with since_tweet_id", reason="FEED_LOST"
            )
        tweet_id, deleted = arrived
        if deleted:
            yield TweetRemoved(tweet_id)
            continue
        if tweet_id in already_sent:
            continue
        found = await fetch([tweet_id])
        if tweet_id in found:
            yield TweetArrived(found[tweet_id])


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
        original_of: Callable[[T], int | None],
        heartbeat_seconds: float,
        replay_overlap_ms: int = 1000,
    ) -> None:
        self._original_of = original_of
        self._graph = graph
        self._tweets = tweets
        self._timelines = timelines
        self._live = live
        self._pages = page_tokens
        self._heartbeat = heartbeat_seconds
        self._overlap = ms_delta(replay_overlap_ms)

    async def from_owners(self, viewer: int, before: int | None, limit: int) -> list[int]:
        """The newest `limit` ids of the viewer's home below `before`, asked of tweets_svc: the
        tweets of whom they follow and their own that belong (belongs_in_home), and mentions."""
        following = await self._graph.following(viewer)
        followed = set(following)
        kept: list[int] = []
        cursor = before
        batch = min(max(limit, 100), _ID_BATCH)
        while len(kept) < limit:
            refs = await self._tweets.refs_by_authors([*following, viewer], before=cursor, limit=batch)
            kept.extend(r.tweet_id for r in refs if belongs_in_home(r, viewer, followed))
            if len(refs) < batch:
                break
            cursor = refs[-1].tweet_id
        mentions = await self._tweets.mention_ids(viewer, before=before, limit=min(limit, _ID_BATCH))
        return sorted({*kept[:limit], *mentions}, reverse=True)[:limit]

    async def rebuild(self, viewer: int) -> None:
        """Recreates the Redis timeline from the owners. The empty timeline exists before the
        owners are asked, so fan-out writes landing meanwhile are kept."""
        await self._timelines.begin_rebuild(viewer)
        recent = await self.from_owners(viewer, None, min(self._timelines.max_entries, _ID_BATCH))
        await self._timelines.merge(viewer, recent)

    async def _ids(self, viewer: int, before: int | None, limit: int) -> list[int]:
        """`limit` ids below `before`, newest first: from Redis, then past its window from the owners."""
        ids = await self._timelines.page(viewer, before, limit)
        if ids is None:
            await self.rebuild(viewer)
            ids = await self._timelines.page(viewer, before, limit) or []
        if len(ids) < limit:
            ids.extend(await self.from_owners(viewer, ids[-1] if ids else before, limit - len(ids)))
        return ids

    async def page(self, viewer: int, size: int, token: str) -> Page[T]:
        """A page of the home timeline. RETWEET_WINDOW more ids than the page are read so that each
        entry's repeated-retweet check sees its whole window (they are hydrated only when the page
        holds a retweet); hidden and deleted entries are skipped and the cursor moves past them."""
        limit = page_size(size)
        scope = f"home:{viewer}"
        cursor = self._pages.decode(token, scope)
        wanted = limit + 1 + RETWEET_WINDOW
        ids = await self._ids(viewer, int(cursor) if cursor else None, wanted)
        complete = len(ids) < wanted  # the timeline ends here: every window is whole
        judged = ids if complete else ids[: len(ids) - RETWEET_WINDOW]
        found = dict(await self._tweets.tweets(judged))
        if any(self._original_of(tweet) is not None for tweet in found.values()):
            # Only a retweet can be hidden; only then are the entries after the page needed.
            found.update(await self._tweets.tweets([t for t in ids if t not in found]))
        shown = visible_entries(ids, {t: self._original_of(found[t]) for t in ids if t in found})
        visible = [t for i, t in enumerate(judged) if shown[i]]
        items = visible[:limit]
        if len(visible) > limit:
            token = self._pages.encode(str(items[-1]), scope)
        elif not complete and judged:
            token = self._pages.encode(str(judged[-1]), scope)
        else:
            token = ""
        return Page([found[t] for t in items], token)

    async def stream(self, viewer: int, since: int | None) -> AsyncIterator[Event[T]]:
        """Replays what arrived after `since` (oldest first), then live tweets, deletions and
        heartbeats.

        The live subscription starts before the replay is read, so nothing falls between the two.
        The replay starts `replay_overlap_ms` before `since`: a tweet whose id is slightly older
        than one the client saw may have been delivered after it (ids are taken at insert, commit
        order can differ), so a reconnecting client may see a tweet again and dedupes by tweet_id.
        """
        async with self._live.subscribe(live_channel(viewer)) as queue:
            # The client has seen `since`: never send it again, even if fan-out publishes it late.
            sent: set[int] = set() if since is None else {since}
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
            async for event in follow_live(queue, sent, self._tweets.tweets, self._heartbeat):
                yield event


class GlobalSource(Protocol[T]):
    async def global_page(self, page_token: str, page_size: int) -> tuple[list[T], str]: ...
    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, T]: ...


class GlobalTimeline(Generic[T]):
    """The global timeline's live stream; its pages are served by tweets_svc."""

    def __init__(
        self,
        tweets: GlobalSource[T],
        live: LiveFeed,
        *,
        id_of: Callable[[T], int],
        heartbeat_seconds: float,
        replay_max: int,
        replay_overlap_ms: int = 1000,
    ) -> None:
        self._overlap = ms_delta(replay_overlap_ms)
        self._tweets = tweets
        self._live = live
        self._id_of = id_of
        self._heartbeat = heartbeat_seconds
        self._replay_max = replay_max

    async def _replay(self, since: int) -> list[T]:
        """Public tweets after `since`, oldest first, at most replay_max of them; from
        `replay_overlap_ms` before it, for the reason HomeTimeline.stream gives."""
        newest_first: list[T] = []
        token = ""
        start = since - self._overlap
        while len(newest_first) < self._replay_max:
            tweets, token = await self._tweets.global_page(token, 100)
            fresh = [t for t in tweets if self._id_of(t) > start and self._id_of(t) != since]
            newest_first.extend(fresh)
            if len(fresh) < len(tweets) or not token:
                break
        return list(reversed(newest_first[: self._replay_max]))

    async def stream(self, since: int | None) -> AsyncIterator[Event[T]]:
        async with self._live.subscribe(GLOBAL_CHANNEL) as queue:
            # The client has seen `since`: never send it again, even if fan-out publishes it late.
            sent: set[int] = set() if since is None else {since}
            for tweet in await self._replay(since) if since is not None else []:
                sent.add(self._id_of(tweet))
                yield TweetArrived(tweet)
            async for event in follow_live(queue, sent, self._tweets.tweets, self._heartbeat):
                yield event
