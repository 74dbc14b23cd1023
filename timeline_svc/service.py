"""The rules of the home and global timelines: read through Redis, rebuild from the owners, fall
back to them past the Redis window, hide repeated retweets, and stream live events after a
gap-free replay (timeline_svc.stream)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from meshkit.ids import id_at, ms_delta
from meshkit.pagination import Page, PageTokens, page_size
from social import (
    CelebrityFollow,
    Relation,
    Snapshot,
    is_for_everyone,
    is_hidden,
    live_channel,
    notification_channel,
)
from social.homes import ID_BATCH, FollowGraph, HomeSource, Registry, TweetRefs
from social.live import GLOBAL_CHANNEL
from timeline_svc.merge import merge_window
from timeline_svc.stream import AtBeat, Event, Gap, LiveFeed, LiveStream, Visible

log = logging.getLogger(__name__)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# The global replay reads whole pages of at most this many tweets (a gap then continues at a page
# token of GetGlobalTimeline, which pages up to 100).
_GLOBAL_PAGE = 100
# A retweet is hidden when the same original is among this many older entries (Mastodon's rule).
RETWEET_WINDOW = 40


class TweetSource(TweetRefs, Protocol[T_co]):
    """The owners' tweet references (as a home rebuild reads them), and the tweets themselves."""

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


def merged(
    home: Snapshot, lists: Sequence[Snapshot], before: int | None, limit: int
) -> tuple[list[int], bool]:
    """merge_window over stored timelines: their ids, and whether each holds all its sources'."""
    ids = [c.tweet_ids for c in lists]
    return merge_window(home.tweet_ids, ids, before, limit, [c.complete for c in lists], home.complete)


class TimelineReads(Protocol):
    """What reading a timeline takes of the store (social.timelines.TimelineStore): reads, and the
    rebuild of one that is missing."""

    max_entries: int

    async def read(self, user_id: int, *, touch: bool = True) -> Snapshot | None: ...
    async def read_many(self, user_ids: Sequence[int]) -> list[Snapshot | None]: ...
    async def begin_rebuild(self, user_id: int) -> bytes: ...
    async def finish_rebuild(
        self,
        user_id: int,
        tweet_ids: Iterable[int],
        celebrities: Iterable[int],
        begun: bytes,
        *,
        complete: bool = False,
    ) -> bool: ...


class RelationSource(Protocol):
    """A viewer's blocks and mutes (social.relations.Relations)."""

    async def among(self, viewer: int | None, others: Iterable[int]) -> dict[int, Relation]: ...


class Visibility(Generic[T]):
    """What a viewer may be shown of hydrated tweets (social.rules.is_hidden): nothing by an account
    either blocks; with `muting` (the home timeline and its stream), nothing by one it mutes."""

    def __init__(self, relations: RelationSource, authors_of: Callable[[T], Sequence[int]]) -> None:
        self._relations = relations
        self._authors_of = authors_of

    async def visible(
        self,
        viewer: int | None,
        tweets: Mapping[int, T],
        *,
        muting: bool,
        known: Mapping[int, Relation] | None = None,
    ) -> dict[int, T]:
        """The tweets of `tweets` the viewer may see (all of them for an anonymous viewer).
        `known`: every relation of the viewer, read already (else they are read here)."""
        if viewer is None or not tweets:
            return dict(tweets)
        relations = known
        if relations is None:
            relations = await self._relations.among(
                viewer, [a for t in tweets.values() for a in self._authors_of(t)]
            )
        if not relations:  # nearly every viewer's: nothing to hide
            return dict(tweets)
        return {
            tweet_id: tweet
            for tweet_id, tweet in tweets.items()
            if not is_hidden(relations, self._authors_of(tweet), muting=muting)
        }

    def predicate(self, viewer: int | None, *, muting: bool) -> Visible[T] | None:
        """One tweet at a time, for a live stream; None when everything is visible (anonymous)."""
        if viewer is None:
            return None

        async def visible(tweet: T) -> bool:
            return bool(await self.visible(viewer, {0: tweet}, muting=muting))

        return visible


class Opened(Protocol):
    """A home timeline and the lists of the celebrities it merges, read already (None: absent;
    a celebrity missing from `celebrity_lists`: not read), and every relation of the viewer (None:
    not read)."""

    @property
    def home(self) -> Snapshot | None: ...
    @property
    def celebrity_lists(self) -> Mapping[int, Snapshot | None]: ...
    @property
    def relations(self) -> Mapping[int, Relation] | None: ...


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
        live_tweets: Callable[[Sequence[int]], Awaitable[Mapping[int, T]]] | None = None,
        visibility: Visibility[T] | None = None,
    ) -> None:
        self._original_of = original_of
        # How live streams hydrate what they are sent (by default like pages).
        self._live_tweets = live_tweets or tweets.tweets
        self._visibility = visibility
        self._owners = HomeSource(graph, tweets, timelines, registry)
        self._tweets = tweets
        self._timelines = timelines
        self._lists = celebrity_lists
        self._live = live
        self._pages = page_tokens
        self._heartbeat = heartbeat_seconds
        self._overlap = ms_delta(replay_overlap_ms)
        self._rebuilds: dict[int, asyncio.Task[bool]] = {}

    async def from_owners(self, viewer: int, before: int | None, limit: int) -> list[int]:
        """The newest `limit` ids of the viewer's home below `before`, asked of the owners."""
        return await self._owners.from_owners(viewer, before, limit)

    async def rebuild(self, viewer: int) -> None:
        """Recreates the Redis timeline from the owners (social.homes.HomeSource.rebuild)."""
        await self._owners.rebuild(viewer)

    async def _rebuild_in_background(self, viewer: int) -> None:
        """Starts a rebuild whose answer nobody waits for; the timeline is marked at once."""
        if viewer in self._rebuilds:
            return
        begun = await self._timelines.begin_rebuild(viewer)
        task = asyncio.create_task(self._owners.finish(viewer, begun), name=f"rebuild home {viewer}")
        self._rebuilds[viewer] = task
        task.add_done_callback(lambda done: self._rebuilt(viewer, done))

    def _rebuilt(self, viewer: int, task: asyncio.Task[bool]) -> None:
        self._rebuilds.pop(viewer, None)
        if not task.cancelled() and task.exception() is not None:
            # The timeline stays flagged and expires soon (REBUILD_TTL_SECONDS): the next read retries.
            log.warning("home timeline rebuild failed", extra={"viewer": viewer, "error": task.exception()})

    async def _celebrity_windows(
        self, celebrities: Sequence[int], read: Mapping[int, Snapshot | None] | None = None
    ) -> list[Snapshot] | None:
        """Each celebrity's list (from `read` when it was read already), rebuilt first where it
        is missing; None while one is being rebuilt by someone else (the caller then reads from
        the owners)."""
        if not celebrities or self._lists is None:
            return []
        lists = self._lists
        if read is not None and all(c in read for c in celebrities):
            snapshots = [read[c] for c in celebrities]
        else:
            snapshots = await lists.read_many(celebrities)
        windows: list[Snapshot] = []
        for author, held in zip(celebrities, snapshots, strict=True):
            snapshot = held
            if snapshot is None:
                begun = await lists.begin_rebuild(author)
                limit = min(lists.max_entries, ID_BATCH)
                refs = await self._tweets.refs_by_authors([author], limit=limit)
                shared = [r.tweet_id for r in refs if is_for_everyone(r)]
                # Fewer than asked for: the list holds all the author's tweets, nothing lies below.
                await lists.finish_rebuild(author, shared, (), begun, complete=len(refs) < limit)
                snapshot = await lists.read(author, touch=False)
            if snapshot is None or snapshot.rebuilding:
                return None
            windows.append(snapshot)
        return windows

    async def _ids(
        self, viewer: int, before: int | None, limit: int, opened: Opened | None
    ) -> tuple[list[int], bool]:
        """`limit` ids below `before`, newest first, and whether the timeline is being rebuilt:
        from Redis merged with the celebrities followed, past its window from the owners; while
        the timeline is absent or being rebuilt, all from the owners. `opened`: the timeline and
        celebrity lists, read already (with the caller's session)."""
        snapshot = opened.home if opened is not None else await self._timelines.read(viewer)
        if snapshot is None:
            await self._rebuild_in_background(viewer)
        if snapshot is None or snapshot.rebuilding:
            return await self.from_owners(viewer, before, limit), True
        lists = opened.celebrity_lists if opened is not None else None
        windows = await self._celebrity_windows(snapshot.celebrities, lists)
        if windows is None:
            return await self.from_owners(viewer, before, limit), False
        ids, more = merged(snapshot, windows, before, limit)
        if more:
            ids.extend(await self.from_owners(viewer, ids[-1] if ids else before, limit - len(ids)))
        return ids, False

    async def page(self, viewer: int, size: int, token: str, opened: Opened | None = None) -> HomePage[T]:
        """A page of the home timeline. RETWEET_WINDOW more ids than the page are read so that each
        entry's repeated-retweet check sees its whole window (they are hydrated only when the page
        holds a retweet); hidden and deleted entries are skipped and the cursor moves past them.
        `opened`: the timeline and celebrity lists as the caller read them with the session
        (timeline_svc.fastpath), else they are read here."""
        limit = page_size(size)
        scope = f"home:{viewer}"
        cursor = self._pages.decode(token, scope)
        wanted = limit + 1 + RETWEET_WINDOW
        ids, rebuilding = await self._ids(viewer, int(cursor) if cursor else None, wanted, opened)
        complete = len(ids) < wanted  # the timeline ends here: every window is whole
        judged = ids if complete else ids[: len(ids) - RETWEET_WINDOW]
        found = dict(await self._tweets.tweets(judged))
        if any(self._original_of(tweet) is not None for tweet in found.values()):
            # Only a retweet can be hidden; only then are the entries after the page needed.
            found.update(await self._tweets.tweets([t for t in ids if t not in found]))
        # Tweets by accounts the viewer blocks, mutes or is blocked by count as gone, fanned out
        # before the block or the mute as they may have been.
        found = await self._shown_to(
            viewer, found, muting=True, known=opened.relations if opened is not None else None
        )
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

    async def _shown_to(
        self,
        viewer: int | None,
        tweets: Mapping[int, T],
        *,
        muting: bool,
        known: Mapping[int, Relation] | None = None,
    ) -> dict[int, T]:
        if self._visibility is None:
            return dict(tweets)
        return await self._visibility.visible(viewer, tweets, muting=muting, known=known)

    async def _replay(
        self, viewer: int, snapshot: Snapshot, since: int
    ) -> tuple[list[tuple[int, T]], Gap | None]:
        """What arrived after `since`, oldest first: at most `max_entries` tweets, the newest, from
        the timeline and the celebrities it merges, and from the owners below their window. When
        more arrived, the Gap says which were left out and how to page them. From
        `replay_overlap_ms` before `since`: a tweet whose id is slightly older than one the client
        saw may have been delivered after it (ids are taken at insert, commit order can differ), so
        a reconnecting client may see a tweet again and dedupes by tweet_id."""
        budget = self._timelines.max_entries
        start = max(since - self._overlap, 0)
        ids = await self._window(snapshot, budget + 1)
        if len(ids) < budget + 1 and not (ids and ids[-1] <= start):
            # The window ends above `start`: the owners know what lies below it.
            ids += await self.from_owners(viewer, ids[-1] if ids else None, budget + 1 - len(ids))
        after = [t for t in ids if t > start and t != since]
        gap = None
        if len(after) > budget:
            after = after[:budget]
            cursor = str(after[-1])
            gap = Gap(since, after[-1], self._pages.encode(cursor, f"home:{viewer}"))
        found = await self._shown_to(viewer, await self._tweets.tweets(after), muting=True)
        return [(t, found[t]) for t in reversed(after) if t in found], gap

    async def _window(self, snapshot: Snapshot, limit: int) -> list[int]:
        """The newest `limit` ids the Redis window holds (merged with the celebrities' lists), newest
        first: every id above the last of them (nothing while it is being rebuilt)."""
        if snapshot.rebuilding:
            return []
        windows = await self._celebrity_windows(snapshot.celebrities)
        if windows is None:
            return []
        ids, _ = merged(snapshot, windows, None, limit)
        return ids

    async def stream(
        self, viewer: int, since: int | None, at_beat: AtBeat | None = None
    ) -> AsyncGenerator[Event[T]]:
        """Replays what arrived after `since` (oldest first), then live tweets, deletions and
        heartbeats (each after `at_beat`: LiveStream.follow). The stream listens before the replay
        is read, so nothing falls between the two; so it does to the celebrities the timeline
        merges (and a celebrity followed or promoted later is announced on the user's channel,
        which it already listens to)."""
        # Tweets from (a little before) now on are this stream's to send live.
        opened = id_at(datetime.now(UTC)) - self._overlap
        visible = self._visibility.predicate(viewer, muting=True) if self._visibility else None
        async with LiveStream.open(
            self._live, live_channel(viewer), since, self._live_tweets, self._heartbeat, visible
        ) as stream:
            snapshot = await self._timelines.read(viewer)
            if snapshot is None or snapshot.rebuilding:
                await self.rebuild(viewer)  # a stream is a return too: the timeline comes back now
                snapshot = await self._timelines.read(viewer)
            # Merged already when the stream opened: nothing missed.
            await asyncio.gather(
                *(stream.attach(author) for author in (snapshot.celebrities if snapshot else []))
            )
            if since is not None and snapshot is not None:
                replayed, gap = await self._replay(viewer, snapshot, since)
                if gap is not None:
                    yield gap
                for event in stream.replay(replayed):
                    yield event
            async for event in stream.follow(
                functools.partial(self._celebrity_changed, stream, opened), at_beat
            ):
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


class NotificationSource(Protocol[T_co]):
    """notifications_svc: a recipient's notifications by id, and after one (social.peers)."""

    async def notifications(self, recipient_id: int, ids: Sequence[int]) -> Mapping[int, T_co]: ...
    async def after(self, recipient_id: int, after: int, limit: int) -> Sequence[T_co]: ...


class NotificationFeed(Generic[T]):
    """A viewer's notifications live, as the home timeline's stream is (LiveStream): those after
    `since` replayed (a few seconds before it too, for the reason HomeTimeline._replay gives), then
    each as it appears on the viewer's notification channel, or goes. Nothing by an account the
    viewer blocks, mutes or is blocked by."""

    def __init__(
        self,
        source: NotificationSource[T],
        live: LiveFeed,
        *,
        id_of: Callable[[T], int],
        heartbeat_seconds: float,
        replay_max: int,
        replay_overlap_ms: int = 1000,
        visibility: Visibility[T] | None = None,
    ) -> None:
        self._source = source
        self._live = live
        self._id_of = id_of
        self._heartbeat = heartbeat_seconds
        self._replay_max = replay_max
        self._overlap = ms_delta(replay_overlap_ms)
        self._visibility = visibility

    async def _replay(self, viewer: int, since: int) -> AsyncGenerator[list[tuple[int, T]]]:
        """Everything after `since`, oldest first, in pages of `replay_max` (all of it: a
        notification left out here would never come live)."""
        after = max(since - self._overlap, 0)
        while True:
            found = await self._source.after(viewer, after, self._replay_max)
            items = {self._id_of(n): n for n in found if self._id_of(n) != since}
            if self._visibility is not None:
                items = await self._visibility.visible(viewer, items, muting=True)
            yield sorted(items.items(), key=lambda item: item[0])
            if len(found) < self._replay_max:
                return
            after = self._id_of(found[-1])

    async def stream(
        self, viewer: int, since: int | None, at_beat: AtBeat | None = None
    ) -> AsyncGenerator[Event[T]]:
        visible = self._visibility.predicate(viewer, muting=True) if self._visibility else None
        async with LiveStream.open(
            self._live,
            notification_channel(viewer),
            since,
            functools.partial(self._source.notifications, viewer),
            self._heartbeat,
            visible,
            resume_field="since_notification_id",
        ) as stream:
            if since is not None:
                async for page in self._replay(viewer, since):
                    for event in stream.replay(page):
                        yield event
            async for event in stream.follow(at_beat=at_beat):
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
        live_tweets: Callable[[Sequence[int]], Awaitable[Mapping[int, T]]] | None = None,
        visibility: Visibility[T] | None = None,
    ) -> None:
        self._visibility = visibility
        self._overlap = ms_delta(replay_overlap_ms)
        self._tweets = tweets
        self._live_tweets = live_tweets or tweets.tweets
        self._live = live
        self._id_of = id_of
        self._heartbeat = heartbeat_seconds
        self._replay_max = replay_max

    async def _replay(self, since: int) -> tuple[list[tuple[int, T]], Gap | None]:
        """Public tweets after `since`, oldest first: the newest pages of the global timeline, up to
        replay_max tweets (in whole pages); when more came, the Gap gives the token of the page that
        follows (from
        `replay_overlap_ms` before `since`, for the reason HomeTimeline._replay gives)."""
        newest_first: list[T] = []
        token = ""
        start = since - self._overlap
        page = min(_GLOBAL_PAGE, self._replay_max)
        while True:
            tweets, token = await self._tweets.global_page(token, page)
            fresh = [t for t in tweets if self._id_of(t) > start and self._id_of(t) != since]
            newest_first.extend(fresh)
            if len(fresh) < len(tweets) or not token:
                return [(self._id_of(t), t) for t in reversed(newest_first)], None
            if len(newest_first) >= self._replay_max:
                break
        # Whole pages were replayed: `token` continues exactly below the oldest of them.
        following, _ = await self._tweets.global_page(token, 1)
        replayed = [(self._id_of(t), t) for t in reversed(newest_first)]
        if following and self._id_of(following[0]) > start:
            return replayed, Gap(since, replayed[0][0], token)
        return replayed, None

    async def stream(self, since: int | None, viewer: int | None = None) -> AsyncGenerator[Event[T]]:
        """Public tweets as they come; to a signed-in viewer, none by an account either blocks."""
        visibility = self._visibility if viewer is not None else None
        visible = visibility.predicate(viewer, muting=False) if visibility else None
        async with LiveStream.open(
            self._live, GLOBAL_CHANNEL, since, self._live_tweets, self._heartbeat, visible
        ) as stream:
            if since is not None:
                replayed, gap = await self._replay(since)
                if gap is not None:
                    yield gap
                if visibility is not None:
                    shown = await visibility.visible(viewer, dict(replayed), muting=False)
                    replayed = [(t, tweet) for t, tweet in replayed if t in shown]
                for event in stream.replay(replayed):
                    yield event
            async for event in stream.follow():
                yield event
