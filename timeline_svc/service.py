"""The rules of the home and global timelines: read through Redis, rebuild from the owners, fall
back to them past the Redis window, hide repeated retweets, and stream live events after a
gap-free replay (timeline_svc.stream)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from meshkit.ids import id_at, ms_delta
from meshkit.pagination import Page, PageTokens, page_size
from social import (
    MERGED_AT_READ,
    CelebrityFollow,
    Snapshot,
    State,
    TweetRef,
    belongs_in_home,
    is_for_everyone,
    live_channel,
)
from social.live import GLOBAL_CHANNEL
from timeline_svc.merge import merge_after, merge_window
from timeline_svc.stream import Event, LiveFeed, LiveStream

log = logging.getLogger(__name__)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# ListTweetIdsByAuthors and ListMentionIds answer at most this many ids per call.
_ID_BATCH = 1000
# A retweet is hidden when the same original is among this many older entries (Mastodon's rule).
RETWEET_WINDOW = 40


class FollowGraph(Protocol):
    async def following(self, user_id: int) -> list[int]: ...
    async def join_follower_lists(self, user_id: int) -> None:
        """The user's home timeline exists now: fan-out is to find them in the follower lists of
        whom they follow (users_svc; social.follower_lists)."""
        ...


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


class TimelineReads(Protocol):
    """What reading a timeline takes of the store (social.timelines.TimelineStore): reads, and the
    rebuild of one that is missing."""

    max_entries: int

    async def read(self, user_id: int, *, touch: bool = True) -> Snapshot | None: ...
    async def read_many(self, user_ids: Sequence[int]) -> list[Snapshot | None]: ...
    async def begin_rebuild(self, user_id: int) -> None: ...
    async def finish_rebuild(
        self, user_id: int, tweet_ids: Iterable[int], celebrities: Iterable[int] = ()
    ) -> None: ...


class Registry(Protocol):
    async def states(self, author_ids: Sequence[int]) -> dict[int, State]: ...


@dataclass(frozen=True, slots=True)
class HomePage(Generic[T]):
    page: Page[T]
    # The viewer's timeline is being rebuilt (they were away): this page was read from the owners.
    rebuilding: bool


class HomeTimeline(Generic[T]):
    """`T` is the hydrated tweet as the tweet source returns it; this module never looks inside.

    Hybrid fan-out: the Redis timeline holds what was fanned out on write and a marker for each
    celebrity followed, whose tweets come from `celebrity_lists` at read time (timeline_svc.merge)
    and, live, from the celebrity's channel, which an open stream listens to (LiveStream.attach;
    the live hub subscribes once per celebrity per process)."""

    def __init__(
        self,
        graph: FollowGraph,
        tweets: TweetSource[T],
        timelines: TimelineReads,
        live: LiveFeed,
        page_tokens: PageTokens,
        *,
        original_of: Callable[[T], int | None],
        heartbeat_seconds: float,
        celebrity_lists: TimelineReads | None = None,
        registry: Registry | None = None,
        replay_overlap_ms: int = 1000,
    ) -> None:
        self._original_of = original_of
        self._graph = graph
        self._tweets = tweets
        self._timelines = timelines
        self._lists = celebrity_lists
        self._registry = registry
        self._live = live
        self._pages = page_tokens
        self._heartbeat = heartbeat_seconds
        self._overlap = ms_delta(replay_overlap_ms)
        self._rebuilds: dict[int, asyncio.Task[None]] = {}

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
        await self._finish_rebuild(viewer)

    async def _finish_rebuild(self, viewer: int) -> None:
        # The viewer joins the follower lists once the timeline exists and before the owners are
        # asked: a tweet fanned out from then on reaches it, one committed before is read below.
        await self._graph.join_follower_lists(viewer)
        # The registry is read after the timeline exists: a promotion from then on marks it itself.
        celebrities: list[int] = []
        if self._registry is not None:
            states = await self._registry.states(await self._graph.following(viewer))
            celebrities = [a for a, state in states.items() if state in MERGED_AT_READ]
        recent = await self.from_owners(viewer, None, min(self._timelines.max_entries, _ID_BATCH))
        await self._timelines.finish_rebuild(viewer, recent, celebrities)

    async def _rebuild_in_background(self, viewer: int) -> None:
        """Starts a rebuild whose answer nobody waits for; the timeline is marked at once."""
        if viewer in self._rebuilds:
            return
        await self._timelines.begin_rebuild(viewer)
        task = asyncio.create_task(self._finish_rebuild(viewer), name=f"rebuild home {viewer}")
        self._rebuilds[viewer] = task
        task.add_done_callback(lambda done: self._rebuilt(viewer, done))

    def _rebuilt(self, viewer: int, task: asyncio.Task[None]) -> None:
        self._rebuilds.pop(viewer, None)
        if not task.cancelled() and task.exception() is not None:
            # The timeline stays flagged and expires soon (REBUILD_TTL_SECONDS): the next read retries.
            log.warning(
                "home timeline rebuild failed", extra={"viewer": viewer, "error": repr(task.exception())}
            )

    async def _celebrity_windows(self, celebrities: Sequence[int]) -> list[list[int]] | None:
        """Each celebrity's list, rebuilt first where it is missing; None while one is being
        rebuilt by someone else (the caller then reads from the owners)."""
        if not celebrities or self._lists is None:
            return []
        lists = self._lists
        snapshots = await lists.read_many(celebrities)
        windows: list[list[int]] = []
        for author, held in zip(celebrities, snapshots, strict=True):
            snapshot = held
            if snapshot is None:
                await lists.begin_rebuild(author)
                refs = await self._tweets.refs_by_authors([author], limit=min(lists.max_entries, _ID_BATCH))
                await lists.finish_rebuild(author, [r.tweet_id for r in refs if is_for_everyone(r)])
                snapshot = await lists.read(author, touch=False)
            if snapshot is None or snapshot.rebuilding:
                return None
            windows.append(snapshot.tweet_ids)
        return windows

    async def _ids(self, viewer: int, before: int | None, limit: int) -> tuple[list[int], bool]:
        """`limit` ids below `before`, newest first, and whether the timeline is being rebuilt:
        from Redis merged with the celebrities followed, past its window from the owners; while
        the timeline is absent or being rebuilt, all from the owners."""
        snapshot = await self._timelines.read(viewer)
        if snapshot is None:
            await self._rebuild_in_background(viewer)
        if snapshot is None or snapshot.rebuilding:
            return await self.from_owners(viewer, before, limit), True
        windows = await self._celebrity_windows(snapshot.celebrities)
        if windows is None:
            return await self.from_owners(viewer, before, limit), False
        ids, more = merge_window(snapshot.tweet_ids, windows, before, limit)
        if more:
            ids.extend(await self.from_owners(viewer, ids[-1] if ids else before, limit - len(ids)))
        return ids, False

    async def page(self, viewer: int, size: int, token: str) -> HomePage[T]:
        """A page of the home timeline. RETWEET_WINDOW more ids than the page are read so that each
        entry's repeated-retweet check sees its whole window (they are hydrated only when the page
        holds a retweet); hidden and deleted entries are skipped and the cursor moves past them."""
        limit = page_size(size)
        scope = f"home:{viewer}"
        cursor = self._pages.decode(token, scope)
        wanted = limit + 1 + RETWEET_WINDOW
        ids, rebuilding = await self._ids(viewer, int(cursor) if cursor else None, wanted)
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
        return HomePage(Page([found[t] for t in items], token), rebuilding)

    async def _replay(self, snapshot: Snapshot, since: int) -> list[tuple[int, T]]:
        """What arrived after `since`, oldest first, from the timeline and the celebrities it merges;
        from `replay_overlap_ms` before it: a tweet whose id is slightly older than one the client
        saw may have been delivered after it (ids are taken at insert, commit order can differ), so
        a reconnecting client may see a tweet again and dedupes by tweet_id."""
        windows = await self._celebrity_windows(snapshot.celebrities) or []
        start = max(since - self._overlap, 0)
        ids = [
            t
            for t in merge_after([snapshot.tweet_ids, *windows], start, self._timelines.max_entries)
            if t != since
        ]
        found = await self._tweets.tweets(ids)
        return [(t, found[t]) for t in ids if t in found]

    async def stream(self, viewer: int, since: int | None) -> AsyncGenerator[Event[T]]:
        """Replays what arrived after `since` (oldest first), then live tweets, deletions and
        heartbeats. The stream listens before the replay is read, so nothing falls between the two;
        so it does to the celebrities the timeline merges (and a celebrity followed or promoted
        later is announced on the user's channel, which it already listens to)."""
        # Tweets from (a little before) now on are this stream's to send live.
        opened = id_at(datetime.now(UTC)) - self._overlap
        async with LiveStream.open(
            self._live, live_channel(viewer), since, self._tweets.tweets, self._heartbeat
        ) as stream:
            snapshot = await self._timelines.read(viewer)
            if snapshot is None or snapshot.rebuilding:
                await self.rebuild(viewer)  # a stream is a return too: the timeline comes back now
                snapshot = await self._timelines.read(viewer)
            for author in snapshot.celebrities if snapshot else []:
                await stream.attach(author)  # merged already when the stream opened: nothing missed
            if since is not None and snapshot is not None:
                for event in stream.replay(await self._replay(snapshot, since)):
                    yield event
            async for event in stream.follow(functools.partial(self._celebrity_changed, stream, opened)):
                yield event

    async def _celebrity_changed(
        self, stream: LiveStream[T], opened: int, change: CelebrityFollow
    ) -> list[int]:
        """Listens to a celebrity the timeline now merges, or stops; returns what the celebrity
        posted since the stream `opened` when it starts. Promoted (or followed) while the stream
        was open: fan-out stopped writing the author's tweets to the user's channel before the
        stream listened to theirs (it learns of it on its own channel, maybe late), so what they
        published meanwhile is asked of the owners (LiveStream.follow drops what was sent)."""
        if not change.following:
            if stream.listens_to(change.author_id):
                await stream.detach(change.author_id)
            return []
        if stream.listens_to(change.author_id):
            return []
        await stream.attach(change.author_id)
        missed = await self._tweets.refs_by_authors(
            [change.author_id], after=opened, limit=self._timelines.max_entries
        )
        return sorted(r.tweet_id for r in missed if is_for_everyone(r))


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

    async def _replay(self, since: int) -> list[tuple[int, T]]:
        """Public tweets after `since`, oldest first, at most replay_max of them; from
        `replay_overlap_ms` before it, for the reason HomeTimeline._replay gives."""
        newest_first: list[T] = []
        token = ""
        start = since - self._overlap
        while len(newest_first) < self._replay_max:
            tweets, token = await self._tweets.global_page(token, 100)
            fresh = [t for t in tweets if self._id_of(t) > start and self._id_of(t) != since]
            newest_first.extend(fresh)
            if len(fresh) < len(tweets) or not token:
                break
        return [(self._id_of(t), t) for t in reversed(newest_first[: self._replay_max])]

    async def stream(self, since: int | None) -> AsyncGenerator[Event[T]]:
        async with LiveStream.open(
            self._live, GLOBAL_CHANNEL, since, self._tweets.tweets, self._heartbeat
        ) as stream:
            if since is not None:
                for event in stream.replay(await self._replay(since)):
                    yield event
            async for event in stream.follow():
                yield event
