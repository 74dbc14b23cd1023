"""The live hub: one Redis pub/sub connection per timeline_svc process, whose channels (social.live)
are fanned out in memory to the open streams that listen to them, and one heartbeat for all of
them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from meshkit.errors import DEPENDENCY_ERRORS
from social.live import LiveMessage, parse_message
from timeline_svc.stream import Delivery, FeedEnded, Heartbeat

log = logging.getLogger(__name__)
_QUEUE_MAX = 1000
_CANARY_CHECK_SECONDS = 1.0
_CANARY_TTL_SECONDS = 3600
# Messages decoded lately: a tweet published on many users' channels is decoded once.
_DECODED_MAX = 4096


class LiveHub:
    """One Redis pub/sub connection per process, one subscription per channel with open streams
    (a user's home, or the global timeline), fanned out in memory to each of those streams. When
    the connection breaks, Redis loses its data or the service stops, every open stream gets a
    FeedEnded (and ends; clients reconnect and replay).

    A wipe (FLUSHALL, a restart without persistence) drops events that fan-out had not read yet:
    their tweets are in PostgreSQL and in rebuilt timelines, but never published. A canary key,
    checked every second while streams are open, tells: once it is gone, open streams end and
    resume from what they got before the last check that found it.

    Every `heartbeat_seconds` each open stream gets a Heartbeat in its queue, all at the same
    moment: what a stream does at a heartbeat (its session re-checked) is then asked for all of
    them at once (timeline_svc.server.SessionChecks: one Redis read per beat).
    """

    def __init__(self, redis: aioredis.Redis, heartbeat_seconds: float) -> None:
        self._redis = redis
        self._heartbeat = heartbeat_seconds
        self._decoded: dict[bytes, LiveMessage] = {}
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._queues: dict[str, set[asyncio.Queue[Delivery]]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._stopped: FeedEnded | None = None
        self._canary = f"live:canary:{uuid.uuid4().hex}"
        self._intact_at: float | None = None  # when the canary was last seen; None: not planted

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[Delivery]]:
        queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=_QUEUE_MAX)
        if self._stopped is not None:
            queue.put_nowait(self._stopped)
            yield queue
            return
        await self.attach(channel, queue)
        try:
            yield queue
        finally:
            await self.detach(channel, queue)

    async def attach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None:
        """Delivers `channel` into `queue` too (a celebrity's channel into a follower's stream);
        the process subscribes to a channel once, however many streams want it."""
        if self._stopped is not None:
            return  # the stream has its end in its queue already
        async with self._lock:
            if channel not in self._queues:
                await self._pubsub.subscribe(channel)
                self._queues[channel] = set()
            self._queues[channel].add(queue)
            if self._reader is None or self._reader.done():
                # A wipe while no stream listened harms none: the new reader plants a new canary.
                self._intact_at = None
                self._reader = asyncio.create_task(self._read(), name="live-hub-reader")

    async def detach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None:
        async with self._lock:
            queues = self._queues.get(channel)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[channel]
                    with contextlib.suppress(*DEPENDENCY_ERRORS):
                        await self._pubsub.unsubscribe(channel)

    async def _redis_kept_its_data(self) -> bool:
        """Whether the canary is still there (planting it when it is not); false once per wipe."""
        checked_at = time.monotonic()
        if await self._redis.expire(self._canary, _CANARY_TTL_SECONDS):
            self._intact_at = checked_at
            return True
        await self._redis.set(self._canary, b"1", ex=_CANARY_TTL_SECONDS)
        planted_before = self._intact_at is not None
        if not planted_before:
            self._intact_at = checked_at
        return not planted_before

    async def _read(self) -> None:
        next_check = 0.0
        next_beat = time.monotonic() + self._heartbeat
        while self._queues:
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + _CANARY_CHECK_SECONDS
                    if not await self._redis_kept_its_data():
                        log.warning("Redis lost its data; ending open streams so they replay")
                        await self._feed_lost("Redis lost its data")
                        return
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self._heartbeat
                    self._beat()
                wait = min(next_check, next_beat) - time.monotonic()
                message = await self._pubsub.get_message(timeout=max(wait, 0.0))
            except DEPENDENCY_ERRORS as error:
                log.warning(
                    "live feed connection lost; ending open streams", extra={"error": type(error).__name__}
                )
                await self._feed_lost()
                return
            if message is None or message.get("type") != "message":
                continue
            for queue in list(self._queues.get(message["channel"].decode(), ())):
                self._deliver(queue, self._decode(message["data"]))

    def _decode(self, data: bytes) -> LiveMessage:
        """The message, decoded once however many channels carry it."""
        event = self._decoded.get(data)
        if event is None:
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            event = self._decoded[data] = parse_message(data)
        return event

    @staticmethod
    def _deliver(queue: asyncio.Queue[Delivery], event: Delivery) -> None:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:  # a stream too slow to keep up: end it, it will replay
            queue.get_nowait()
            queue.put_nowait(FeedEnded("TOO_SLOW", "the stream fell too far behind"))

    def _beat(self) -> None:
        """One heartbeat to every open stream (a stream listening to several channels gets one)."""
        beat = Heartbeat()
        for queue in {q for queues in self._queues.values() for q in queues}:
            self._deliver(queue, beat)

    def _end_each(self, ended: FeedEnded) -> None:
        for queues in self._queues.values():
            for queue in queues:
                if queue.full():  # the stream ends anyway, and the end must be in its queue
                    queue.get_nowait()
                queue.put_nowait(ended)

    async def _feed_lost(self, why: str = "the live feed was interrupted") -> None:
        async with self._lock:
            self._end_each(FeedEnded("FEED_LOST", why, intact_until=self._intact_at))
            self._intact_at = None  # planted again with the next streams
            self._queues.clear()
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)

    async def stopping(self) -> None:
        """Ends every open stream, and any opened from now on, with SERVER_STOPPING."""
        async with self._lock:
            self._stopped = FeedEnded("SERVER_STOPPING", "the server is stopping", retry_after_seconds=0.2)
            self._end_each(self._stopped)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
