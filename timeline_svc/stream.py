"""A live stream, as the home and global timelines serve it: the tweets it replays and then follows
live, each sent once, heartbeats on a shared clock, the celebrity channels it listens to besides its
own, and where the client resumes when the live feed breaks."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from meshkit.errors import Unavailable
from meshkit.status import is_outage
from social import CelebrityFollow, LiveMessage, TweetEdited, celebrity_channel

T = TypeVar("T")

# How many sent ids a live stream remembers to drop duplicates.
_SENT_MAX = 10_000


@dataclass(frozen=True, slots=True)
class TweetArrived(Generic[T]):
    """A tweet to send: `live` when it came from the live feed, not replayed from the timeline;
    `trace`: the traceparent of the fan-out that published it, when traced."""

    tweet: T
    live: bool = False
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class TweetRemoved:
    tweet_id: int


@dataclass(frozen=True, slots=True)
class TweetUpdated(Generic[T]):
    """A tweet the stream may show was edited: here as it is now."""

    tweet: T


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Gap:
    """The replay does not reach back to the client's `since`: the tweets after it and before
    `before` (the oldest replayed, or the newest there is) are not sent; `page_token` reads them
    from the timeline's list (newest first, down to `since`)."""

    since: int
    before: int
    page_token: str


Event = TweetArrived[T] | TweetUpdated[T] | TweetRemoved | Heartbeat | Gap


@dataclass(frozen=True, slots=True)
class FeedEnded:
    """The live feed of a stream stopped (connection lost, Redis wiped, stream too slow, server
    stopping). When events may have been lost since some moment (`intact_until`, monotonic), the
    stream resumes from the newest tweet it sent before then, not from the newest it sent."""

    reason: str
    message: str
    retry_after_seconds: float = 0.5
    intact_until: float | None = None


# The reason a stream ends with when what a live message needs (the owners, the caches) is down.
OUTAGE = "DEPENDENCY_UNAVAILABLE"

# What a stream's queue receives: a live channel's message, or the end of the feed.
Delivery = LiveMessage | FeedEnded


class ResumePoint:
    """The newest tweet a stream sent, and as of when."""

    _MEMORY_SECONDS = 60.0

    def __init__(self, since: int | None) -> None:
        self._settled = since
        self._recent: deque[tuple[float, int]] = deque()

    def sent(self, tweet_id: int) -> None:
        now = time.monotonic()
        self._recent.append((now, tweet_id))
        while self._recent[0][0] < now - self._MEMORY_SECONDS:
            _, old = self._recent.popleft()
            self._settled = max(self._settled or 0, old)

    def as_of(self, moment: float | None) -> int | None:
        """The newest tweet sent at or before `moment` (None: at any time), or None if none was."""
        ids = [t for at, t in self._recent if moment is None or at <= moment]
        if self._settled is not None:
            ids.append(self._settled)
        return max(ids, default=None)


def stream_ended(ended: FeedEnded, resume_from: int | None, field: str = "since_tweet_id") -> Unavailable:
    """UNAVAILABLE telling the client how to resume without a gap: reconnect with `field`
    (since_tweet_id; since_notification_id for notifications) set to the newest item it got before
    the feed could have lost anything (in ErrorInfo metadata under that name, empty if none)."""
    return Unavailable(
        f"{ended.message}; reconnect with {field}",
        reason=ended.reason,
        metadata={field: "" if resume_from is None else str(resume_from)},
        retry_after_seconds=ended.retry_after_seconds,
    )


def _next_tick(now: float, interval: float) -> float:
    """The first multiple of `interval` after `now`: the same moment for every stream."""
    return (math.floor(now / interval) + 1) * interval


class LiveFeed(Protocol):
    """The process's live channels (timeline_svc.live_hub.LiveHub)."""

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[asyncio.Queue[Delivery]]:
        """A queue of what is published on `channel` from now on; a FeedEnded when the feed broke."""
        ...

    async def attach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None: ...
    async def detach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None: ...


Fetch = Callable[[Sequence[int]], Awaitable[Mapping[int, T]]]
# Whether the stream's viewer may be shown a hydrated tweet (blocks and mutes).
Visible = Callable[[T], Awaitable[bool]]
# Done at every heartbeat but the first (the caller's re-check of the stream's session).
AtBeat = Callable[[], Awaitable[None]]
# Told of a change of the celebrities merged; returns the tweets the change made the stream miss.
CelebrityChanged = Callable[[CelebrityFollow], Awaitable[Sequence[int]]]


class LiveStream(Generic[T]):
    """One open stream: `open` subscribes it to its own channel; `attach` and `detach` add and
    drop celebrities' channels; `replay` sends what the client missed; `follow` sends live events
    until the feed ends. A tweet is sent once, whichever way it comes; `since`, which the client
    has seen, never."""

    def __init__(
        self,
        live: LiveFeed,
        queue: asyncio.Queue[Delivery],
        since: int | None,
        fetch: Fetch[T],
        heartbeat_seconds: float,
        visible: Visible[T] | None = None,
        resume_field: str = "since_tweet_id",
    ) -> None:
        self._live = live
        self._queue = queue
        self._fetch = fetch
        self._visible = visible
        self._resume_field = resume_field
        self._heartbeat = heartbeat_seconds
        self._sent: set[int] = set() if since is None else {since}
        self._resume = ResumePoint(since)
        self._celebrities: set[int] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        live: LiveFeed,
        channel: str,
        since: int | None,
        fetch: Fetch[T],
        heartbeat_seconds: float,
        visible: Visible[T] | None = None,
        resume_field: str = "since_tweet_id",
    ) -> AsyncIterator[LiveStream[T]]:
        """A stream listening to `channel` from now on; on leaving, it listens to nothing. Items
        arriving live that `visible` refuses are not sent (the replay is the caller's to filter);
        its end says where to resume under `resume_field`."""
        async with live.subscribe(channel) as queue:
            stream = cls(live, queue, since, fetch, heartbeat_seconds, visible, resume_field)
            try:
                yield stream
            finally:
                for author in list(stream._celebrities):
                    await stream.detach(author)

    def listens_to(self, author_id: int) -> bool:
        return author_id in self._celebrities

    async def attach(self, author_id: int) -> None:
        """Listens to a celebrity's channel too (their tweets, merged into this stream)."""
        self._celebrities.add(author_id)
        await self._live.attach(celebrity_channel(author_id), self._queue)

    async def detach(self, author_id: int) -> None:
        self._celebrities.discard(author_id)
        await self._live.detach(celebrity_channel(author_id), self._queue)

    def replay(self, tweets: Sequence[tuple[int, T]]) -> list[Event[T]]:
        """The events that send `tweets` (id and tweet, oldest first), counted as sent."""
        for tweet_id, _ in tweets:
            self._mark_sent(tweet_id)
        return [TweetArrived(tweet) for _, tweet in tweets]

    def _mark_sent(self, tweet_id: int) -> None:
        if len(self._sent) > _SENT_MAX:
            self._sent.clear()  # bounded memory; only a rare late duplicate could slip through
        self._sent.add(tweet_id)
        self._resume.sent(tweet_id)

    async def follow(
        self, on_celebrity: CelebrityChanged | None = None, at_beat: AtBeat | None = None
    ) -> AsyncGenerator[Event[T]]:
        """A heartbeat at once (the stream is listening: nothing is missed from here), then live
        events, hydrated, and a heartbeat every `heartbeat_seconds` (on a clock: a busy stream gets
        them too), each after `at_beat` (the caller's re-check of the stream's token, which ends
        the stream by raising), until the feed ends (then UNAVAILABLE saying where to resume). A
        tweet arriving twice (on a celebrity's channel and the user's own while the celebrity is
        promoted or demoted, or from `on_celebrity`) is sent once. When what a beat or a live
        message needs cannot be reached (an owner, Redis), the stream ends the same way
        (DEPENDENCY_UNAVAILABLE): what it could not show is in the timeline the resumed stream
        replays.

        Every stream of the process beats at the same moments (multiples of `heartbeat_seconds`
        on the monotonic clock, which the event loop's timers use too): what each does at a
        heartbeat (its token re-checked) is then asked for all of them in the same turn of the
        loop, and done in one go (timeline_svc.hydrate.Coalescer: one Redis read per beat). The
        clock is read afresh (a busy stream never waits, and an event loop may cache its time)."""
        yield Heartbeat()
        next_beat = _next_tick(time.monotonic(), self._heartbeat)
        while True:
            if time.monotonic() >= next_beat:
                next_beat = _next_tick(time.monotonic(), self._heartbeat)
                if at_beat is not None:
                    with self._resumable():
                        await at_beat()
                yield Heartbeat()
            try:
                async with asyncio.timeout_at(next_beat):
                    arrived = await self._queue.get()
            except TimeoutError:
                continue
            if isinstance(arrived, FeedEnded):
                raise stream_ended(arrived, self._resume.as_of(arrived.intact_until), self._resume_field)
            with self._resumable():
                async for event in self._events_of(arrived, on_celebrity):
                    yield event

    @contextlib.contextmanager
    def _resumable(self) -> Iterator[None]:
        """An outage (a dependency's or a peer's failure) inside ends the stream with where to resume."""
        try:
            yield
        except Exception as error:
            if not is_outage(error):
                raise
            lost = FeedEnded(OUTAGE, "a dependency is unavailable", retry_after_seconds=1.0)
            raise stream_ended(lost, self._resume.as_of(None), self._resume_field) from error

    async def _events_of(
        self, arrived: LiveMessage, on_celebrity: CelebrityChanged | None
    ) -> AsyncGenerator[Event[T]]:
        """What a live message sends this stream (hydrated, visible to its viewer, not sent yet)."""
        trace = None
        if isinstance(arrived, CelebrityFollow):
            fresh = await on_celebrity(arrived) if on_celebrity is not None else ()
        elif isinstance(arrived, TweetEdited):
            # Sent whether or not this stream sent the tweet: the client may show it from a page.
            # Not to a viewer who may no longer see it (blocks and mutes).
            found = await self._fetch([arrived.tweet_id])
            edited = found.get(arrived.tweet_id)
            if edited is not None and (self._visible is None or await self._visible(edited)):
                yield TweetUpdated(edited)
            return
        else:
            tweet_id, deleted, trace = arrived
            if deleted:
                yield TweetRemoved(tweet_id)
                return
            fresh = [tweet_id]
        for tweet_id in fresh:
            if (event := await self._arrived(tweet_id, trace)) is not None:
                yield event

    async def _arrived(self, tweet_id: int, trace: str | None = None) -> TweetArrived[T] | None:
        """The event of a live tweet not sent yet, hydrated; None if it was sent or is gone. It
        counts as sent once hydrated: one the owner did not return (not visible yet, or gone) is
        sent if it arrives again (a redelivery, the other channel of a promotion)."""
        if tweet_id in self._sent:
            return None
        found = await self._fetch([tweet_id])
        if tweet_id not in found or tweet_id in self._sent:
            return None
        if self._visible is not None and not await self._visible(found[tweet_id]):
            return None  # hidden from this viewer: never sent, nothing to resume from
        self._mark_sent(tweet_id)
        return TweetArrived(found[tweet_id], live=True, trace=trace)
