"""A Redis Streams consumer-group worker: at-least-once, reclaims dead consumers' entries,
moves entries that keep failing to a dead-letter stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.metrics import STREAM_ENTRIES

log = logging.getLogger(__name__)


class PoisonEvent(Exception):
    """The handler can never process this entry (malformed): dead-letter it at once."""


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: bytes
    fields: dict[bytes, bytes]


Handler = Callable[[Entry], Awaitable[None]]
# Handles a batch at once: each entry's outcome, in order (None when it is done, else its error).
BatchHandler = Callable[[list[Entry]], Awaitable[Sequence[BaseException | None]]]


def dead_letter_stream(stream: str) -> str:
    return f"{stream}:dead"


async def _outcome(call: Awaitable[None]) -> BaseException | None:
    try:
        await call
    except Exception as error:
        return error
    return None


class StreamConsumer:
    """Consumes `stream` as `consumer` in `group`, calling `handler` per entry and acknowledging
    only entries whose handler returned. Failed entries stay pending; after `claim_idle_ms` any
    consumer of the group (this one included) claims and retries them, and after `max_deliveries`
    attempts they go to `<stream>:dead`. A wiped Redis (NOGROUP) recreates the group. Entries of
    a batch are handled concurrently unless `ordered`; or, with `batch_handler`, all at once by
    one call that answers for each."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        claim_idle_ms: int,
        max_deliveries: int,
        batch: int = 100,
        ordered: bool = False,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._group = group
        self._consumer = consumer
        if (handler is None) == (batch_handler is None):
            raise ValueError("give one of handler and batch_handler")
        self._handler = handler
        self._batch_handler = batch_handler
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._batch = batch
        self._ordered = ordered
        self._block_ms = block_ms
        self._next_claim = 0.0

    async def ensure_group(self) -> None:
        try:
            # From the start of the stream: events relayed before the group existed are not skipped.
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self) -> None:
        await self._wait_for_redis()
        # Entries this consumer name read before a restart and never acknowledged come first.
        await self._consume("0")
        while True:
            try:
                if time.monotonic() >= self._next_claim:
                    await self.reclaim()
                    self._next_claim = time.monotonic() + self._claim_idle_ms / 2000
                await self._consume(">")
            except redis.exceptions.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                log.warning(
                    "consumer group missing (Redis wiped?); recreating", extra={"stream": self._stream}
                )
                await self.ensure_group()
            except DEPENDENCY_ERRORS as error:
                log.warning("redis unavailable; consumer waits", extra={"error": type(error).__name__})
                await asyncio.sleep(1)

    async def _wait_for_redis(self) -> None:
        while True:
            try:
                await self.ensure_group()
                return
            except DEPENDENCY_ERRORS:
                await asyncio.sleep(1)

    async def _consume(self, start: str) -> None:
        reply: Any = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: start},
            count=self._batch,
            block=None if start == "0" else self._block_ms,
        )
        for _stream, messages in reply or []:
            await self._process([Entry(i, f) for i, f in messages if f])

    async def reclaim(self) -> None:
        """Claims entries that another (dead or stuck) consumer held longer than claim_idle_ms."""
        pending: Any = await self._redis.xpending_range(
            self._stream, self._group, min="-", max="+", count=self._batch, idle=self._claim_idle_ms
        )
        if not pending:
            return
        exhausted = [p["message_id"] for p in pending if p["times_delivered"] >= self._max_deliveries]
        retry = [p["message_id"] for p in pending if p["times_delivered"] < self._max_deliveries]
        if exhausted:
            claimed: Any = await self._redis.xclaim(
                self._stream, self._group, self._consumer, self._claim_idle_ms, exhausted
            )
            await self._dead_letter([Entry(i, f) for i, f in claimed if f], reason="too many deliveries")
        if retry:
            claimed = await self._redis.xclaim(
                self._stream, self._group, self._consumer, self._claim_idle_ms, retry
            )
            log.info("reclaimed pending entries", extra={"stream": self._stream, "count": len(claimed)})
            await self._process([Entry(i, f) for i, f in claimed if f])

    async def _process(self, entries: list[Entry]) -> None:
        if not entries:
            return
        results: list[BaseException | None]
        if self._batch_handler is not None:
            try:
                results = list(await self._batch_handler(entries))
            except Exception as error:
                results = [error] * len(entries)
        elif self._ordered:  # one at a time, in stream order: later entries may depend on earlier ones
            results = [await _outcome(self._one(e)) for e in entries]
        else:
            results = await asyncio.gather(*(self._one(e) for e in entries), return_exceptions=True)
        done: list[bytes] = []
        poison: list[Entry] = []
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, PoisonEvent):
                poison.append(entry)
            elif isinstance(result, BaseException):
                log.warning(
                    "handler failed; entry stays pending for a retry",
                    extra={"stream": self._stream, "entry": entry.entry_id.decode(), "error": repr(result)},
                )
            else:
                done.append(entry.entry_id)
        if done:
            await self._redis.xack(self._stream, self._group, *done)
        await self._dead_letter(poison, reason="poison")
        STREAM_ENTRIES.labels(self._stream, "acked").inc(len(done))
        STREAM_ENTRIES.labels(self._stream, "failed").inc(len(entries) - len(done) - len(poison))

    async def _one(self, entry: Entry) -> None:
        assert self._handler is not None
        await self._handler(entry)

    async def _dead_letter(self, entries: list[Entry], reason: str) -> None:
        if not entries:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                pipe.xadd(
                    dead_letter_stream(self._stream),
                    {**entry.fields, b"entry_id": entry.entry_id, b"reason": reason.encode()},  # type: ignore[dict-item]
                    maxlen=10_000,
                    approximate=True,
                )
            pipe.xack(self._stream, self._group, *[e.entry_id for e in entries])
            await pipe.execute()
        STREAM_ENTRIES.labels(self._stream, "dead_lettered").inc(len(entries))
        log.error(
            "dead-lettered entries", extra={"stream": self._stream, "count": len(entries), "reason": reason}
        )
