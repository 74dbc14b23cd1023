"""timeline_svc's Redis use beyond home timelines: the per-process live feed over pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from meshkit.home_timelines import parse_live_message
from meshkit.status import DEPENDENCY_ERRORS
from timeline_svc.service import LiveEvent

log = logging.getLogger(__name__)
_QUEUE_MAX = 1000


class LiveHub:
    """One Redis pub/sub connection per process, one subscription per channel with open streams
    (a user's home, or the global timeline), fanned out in memory to each of those streams. When
    the connection breaks, every open stream gets None (and ends; clients reconnect and replay)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._queues: dict[str, set[asyncio.Queue[LiveEvent | None]]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[LiveEvent | None]]:
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(maxsize=_QUEUE_MAX)
        await self.attach(channel, queue)
        try:
            yield queue
        finally:
            await self.detach(channel, queue)

    async def attach(self, channel: str, queue: asyncio.Queue[LiveEvent | None]) -> None:
        """Delivers `channel` into `queue` too (a celebrity's channel into a follower's stream);
        the process subscribes to a channel once, however many streams want it."""
        async with self._lock:
            if channel not in self._queues:
                await self._pubsub.subscribe(channel)
                self._queues[channel] = set()
            self._queues[channel].add(queue)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="live-hub-reader")

    async def detach(self, channel: str, queue: asyncio.Queue[LiveEvent | None]) -> None:
        async with self._lock:
            queues = self._queues.get(channel)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[channel]
                    with contextlib.suppress(*DEPENDENCY_ERRORS):
                        await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while self._queues:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except DEPENDENCY_ERRORS as error:
                log.warning(
                    "live feed connection lost; ending open streams", extra={"error": type(error).__name__}
                )
                await self._break_all()
                return
            if message is None or message.get("type") != "message":
                continue
            event = parse_live_message(message["data"])
            for queue in list(self._queues.get(message["channel"].decode(), ())):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:  # a stream too slow to keep up: end it, it will replay
                    queue.get_nowait()
                    queue.put_nowait(None)

    async def _break_all(self) -> None:
        async with self._lock:
            for queues in self._queues.values():
                for queue in queues:
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(None)
            self._queues.clear()
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
