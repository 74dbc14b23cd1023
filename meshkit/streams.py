"""A Redis Streams consumer-group worker: at-least-once, reclaims dead consumers' entries and
then forgets those consumers, moves entries that keep failing to a dead-letter stream (kept until
an operator replays them), and trims its stream of what every group has read and acknowledged,
never more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from google.protobuf.message import DecodeError

from meshkit import tracing
from meshkit.errors import DEPENDENCY_ERRORS, InvalidArgument
from meshkit.metrics import STREAM_CONSUMERS_FORGOTTEN, STREAM_ENTRIES
from meshkit.outbox import TRACE_FIELD

log = logging.getLogger(__name__)
_WAIT_SECONDS = 1.0
_WAIT_MAX_SECONDS = 10.0
# Entries read and acknowledged by every group are trimmed once older than this.
KEEP_SECONDS = 300.0


class PoisonEvent(Exception):
    """The handler can never process this entry (malformed): dead-letter it at once."""


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: bytes
    fields: dict[bytes, bytes]
    # Handled in a batch with tracing on: the W3C traceparent of its span (meshkit.tracing
    # consuming_batch), for what its handling sends on. (A handler of one entry runs in its span.)
    trace: str | None = None


@contextlib.contextmanager
def poison_unless_valid(entry: Entry) -> Iterator[bytes]:
    """The entry's payload (field `data`), for decoding in the block; an entry without one, or
    whose message fails to decode or holds an invalid value (InvalidArgument), can never be
    handled: PoisonEvent (it is dead-lettered at once)."""
    try:
        yield entry.fields[b"data"]
    except (KeyError, DecodeError) as error:
        raise PoisonEvent(f"undecodable entry: {error}") from error
    except InvalidArgument as error:
        raise PoisonEvent(str(error)) from error


Handler = Callable[[Entry], Awaitable[None]]
# Handles a batch at once: each entry's outcome, in order (None when it is done, else its error).
BatchHandler = Callable[[list[Entry]], Awaitable[Sequence[BaseException | None]]]


def dead_letter_stream(stream: str) -> str:
    """The dead letters of `stream`, in its cluster slot (the stream's whole name as the hash tag):
    dead-lettering acknowledges in the same transaction, and a replay moves entries between the two."""
    return f"{{{stream}}}:dead"


# The fields a dead letter adds to the entry it keeps: where it was in its stream, and why.
ENTRY_ID_FIELD = b"entry_id"
_TRACE_FIELD = TRACE_FIELD.encode()
REASON_FIELD = b"reason"
_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def is_entry_id(text: str) -> bool:
    """Whether `text` is a Redis Stream entry id (`<ms>-<seq>`)."""
    return _ENTRY_ID.fullmatch(text) is not None


async def trim_floor(client: aioredis.Redis, stream: str) -> tuple[int, int] | None:
    """The oldest entry of `stream` that some consumer group may still need: its oldest pending
    entry (delivered, not acknowledged), else the last it was delivered (kept: XTRIM MINID keeps the
    floor itself), as (ms, seq). None when the stream has no group yet: then nothing may go."""
    try:
        groups: Any = await client.xinfo_groups(stream)
    except redis.exceptions.ResponseError as error:
        if isinstance(error, DEPENDENCY_ERRORS):
            raise
        return None  # no such stream yet
    if not groups:
        return None
    floors: list[tuple[int, int]] = []
    for group in groups:
        name = group["name"]
        floor = group["last-delivered-id"]
        if int(group["pending"]):
            summary: Any = await client.xpending(stream, name)
            floor = summary["min"] or floor
        text = floor.decode() if isinstance(floor, bytes) else str(floor)
        ms, seq = text.split("-")
        floors.append((int(ms), int(seq)))
    return min(floors)


# KEYS[1]: the stream. ARGV[1]: the group, ARGV[2]: the consumer running this (never deleted),
# ARGV[3]: the idle time in ms. Deletes each other consumer that holds no pending entry and has not
# read for longer, and returns their names. Checked and deleted in one step: a consumer that has
# just read entries holds them pending and is never deleted with them (DELCONSUMER drops what a
# consumer holds). A living consumer reads at least every block_ms; one deleted while it was
# stopped (paused, cut off from Redis) is created again by its next read, with nothing lost.
_FORGET = """
local forgotten = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local info = {}
    for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
    if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
            and tonumber(info['idle']) > tonumber(ARGV[3]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
        table.insert(forgotten, info['name'])
    end
end
return forgotten
"""


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
    attempts they go to `{<stream>}:dead`. A consumer of the group that died (a replica killed, or
    restarted under another name) holds its entries until they are claimed so; once it holds none
    and has not read for `forget_idle_ms`, a living one deletes it from the group
    (forget_dead_consumers). A wiped Redis (NOGROUP) recreates the group. Entries of a batch are
    handled concurrently unless `ordered`; or, with `batch_handler`, all at once by one call that
    answers for each. A consumer whose events may wait a moment gives `read_every_ms`: after a
    read that emptied its backlog it reads again only that much later, so that the entries of a
    steady flow come a batch per read (one XREADGROUP and one XACK for many) instead of a read per
    relay; the first entry after a quiet spell is read at once. On the reclaim clock it also trims
    the stream of what every group has read and acknowledged (trim). With tracing on, each entry
    is handled in a span that continues the trace its producer stored with it
    (meshkit.outbox.TRACE_FIELD); an entry of a batch carries its span's context (Entry.trace) for
    what its handling sends on."""

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
        forget_idle_ms: int,
        batch: int = 100,
        ordered: bool = False,
        block_ms: int = 1000,
        read_every_ms: int = 0,
        keep_seconds: float = KEEP_SECONDS,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._group = group
        self._consumer = consumer
        if (handler is None) == (batch_handler is None):
            raise ValueError("give one of handler and batch_handler")
        self._handler = self._traced(handler) if handler is not None and tracing.enabled() else handler
        self._batch_handler = batch_handler
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._batch = batch
        self._ordered = ordered
        self._block_ms = block_ms
        self._read_every_seconds = read_every_ms / 1000
        self._next_read = 0.0
        self._keep_seconds = keep_seconds
        self._forget_idle_ms = forget_idle_ms
        self._forget = redis.register_script(_FORGET)
        self._next_claim = 0.0

    def _traced(self, handler: Handler) -> Handler:
        async def traced(entry: Entry) -> None:
            with tracing.consuming(self._stream, entry.fields.get(_TRACE_FIELD)):
                await handler(entry)

        return traced

    async def ensure_group(self) -> None:
        try:
            # From the start of the stream: events relayed before the group existed are not skipped.
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self) -> None:
        """Consumes until cancelled. Redis down, out of memory, read-only during a failover or
        wiped: the consumer waits (1 s, doubling to 10 s) and goes on; it never gives up."""
        pending_first = True  # entries this consumer name read before a restart, never acknowledged
        group_missing = True
        wait = _WAIT_SECONDS
        while True:
            try:
                if group_missing:
                    await self.ensure_group()
                    group_missing = False
                if pending_first:
                    await self._consume("0")
                    pending_first = False
                if time.monotonic() >= self._next_claim:
                    await self.reclaim()
                    await self.forget_dead_consumers()
                    await self.trim()
                    self._next_claim = time.monotonic() + self._claim_idle_ms / 2000
                await self._read_new()
                wait = _WAIT_SECONDS
            except DEPENDENCY_ERRORS as error:
                log.warning(
                    "redis unavailable; consumer waits",
                    extra={"stream": self._stream, "error": error, "wait_seconds": wait},
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, _WAIT_MAX_SECONDS)
            except redis.exceptions.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                log.warning(
                    "consumer group missing (Redis wiped?); recreating", extra={"stream": self._stream}
                )
                group_missing = True

    async def _read_new(self) -> None:
        """Reads and handles new entries, no sooner than `read_every_ms` after a read that found
        some but fewer than a batch (after a full one more may wait: the next read is at once; after
        an empty one the next read blocks, and so returns the first entry as soon as it comes)."""
        if (wait := self._next_read - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        if 0 < await self._consume(">") < self._batch:
            self._next_read = time.monotonic() + self._read_every_seconds

    async def _consume(self, start: str) -> int:
        """Reads and handles entries from `start`; returns how many it read."""
        reply: Any = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: start},
            count=self._batch,
            block=None if start == "0" else self._block_ms,
        )
        read = 0
        for _stream, messages in reply or []:
            read += len(messages)
            await self._process([Entry(i, f) for i, f in messages if f])
        return read

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

    async def forget_dead_consumers(self) -> list[str]:
        """Deletes from the group the other consumers that hold no pending entry and have not read
        for `forget_idle_ms` (dead ones, their entries claimed by reclaim()); returns their names."""
        names: Any = await self._forget(
            keys=[self._stream], args=[self._group, self._consumer, self._forget_idle_ms]
        )
        forgotten = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names or []]
        if forgotten:
            STREAM_CONSUMERS_FORGOTTEN.labels(self._stream, self._group).inc(len(forgotten))
            log.info(
                "forgot dead consumers",
                extra={"stream": self._stream, "group": self._group, "consumers": forgotten},
            )
        return forgotten

    async def trim(self) -> int:
        """Drops the entries every consumer group of the stream has read and acknowledged, once
        older than `keep_seconds` (recent history for an operator to read). Its producers never
        trim it: events no one has read stay, however far behind the consumers are. Returns how
        many went."""
        floor = await trim_floor(self._redis, self._stream)
        if floor is None:
            return 0
        # Entry ids start with their time in ms: the last keep_seconds stay whatever was read.
        ms, seq = min(floor, (max(int((time.time() - self._keep_seconds) * 1000), 0), 0))
        # Approximate: Redis drops whole nodes only, never an entry at or above the floor.
        return int(await self._redis.xtrim(self._stream, minid=f"{ms}-{seq}", approximate=True))

    async def _process(self, entries: list[Entry]) -> None:
        if not entries:
            return
        results: list[BaseException | None]
        if self._batch_handler is not None:
            results = await self._handle_batch(self._batch_handler, entries)
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
                    extra={"stream": self._stream, "entry": entry.entry_id.decode(), "error": result},
                )
            else:
                done.append(entry.entry_id)
        if done:
            await self._redis.xack(self._stream, self._group, *done)
        await self._dead_letter(poison, reason="poison")
        STREAM_ENTRIES.labels(self._stream, "acked").inc(len(done))
        STREAM_ENTRIES.labels(self._stream, "failed").inc(len(entries) - len(done) - len(poison))

    async def _handle_batch(self, handler: BatchHandler, entries: list[Entry]) -> list[BaseException | None]:
        with tracing.consuming_batch(self._stream, [e.fields.get(_TRACE_FIELD) for e in entries]) as spans:
            if any(spans.traceparents):
                entries = [replace(e, trace=t) for e, t in zip(entries, spans.traceparents, strict=True)]
            try:
                results = list(await handler(entries))
            except Exception as error:
                results = [error] * len(entries)
            for n, result in enumerate(results):
                if result is not None:
                    spans.failed(n, result)
        return results

    async def _one(self, entry: Entry) -> None:
        assert self._handler is not None
        await self._handler(entry)

    async def _dead_letter(self, entries: list[Entry], reason: str) -> None:
        if not entries:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                # Never trimmed: a dead letter stays until an operator replays it (DeadLetters).
                pipe.xadd(
                    dead_letter_stream(self._stream),
                    {**entry.fields, ENTRY_ID_FIELD: entry.entry_id, REASON_FIELD: reason.encode()},  # type: ignore[dict-item]
                )
            pipe.xack(self._stream, self._group, *[e.entry_id for e in entries])
            await pipe.execute()
        STREAM_ENTRIES.labels(self._stream, "dead_lettered").inc(len(entries))
        log.error(
            "dead-lettered entries", extra={"stream": self._stream, "count": len(entries), "reason": reason}
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stream: str  # the event stream it came from
    dead_letter_id: str  # its entry in the dead-letter stream
    entry_id: str  # its entry in the event stream when it was given up on
    reason: str
    fields: dict[bytes, bytes]  # the event's own fields, as they were in the event stream


# KEYS[1]: the dead-letter stream, KEYS[2]: its event stream. ARGV: dead-letter ids. Each one still
# there goes back on the event stream (its own fields, without the dead letter's) and leaves the
# dead-letter stream, in one step: an event is never in neither, nor replayed twice by one call.
_REPLAY = """
local replayed = 0
for _, id in ipairs(ARGV) do
    local found = redis.call('XRANGE', KEYS[1], id, id)
    if #found == 1 then
        local fields, event = found[1][2], {}
        for i = 1, #fields, 2 do
            if fields[i] ~= 'entry_id' and fields[i] ~= 'reason' then
                table.insert(event, fields[i])
                table.insert(event, fields[i + 1])
            end
        end
        if #event > 0 then redis.call('XADD', KEYS[2], '*', unpack(event)) end
        redis.call('XDEL', KEYS[1], id)
        replayed = replayed + 1
    end
end
return replayed
"""


class DeadLetters:
    """The dead letters of some event streams, for an operator: listed oldest first, and replayed
    (put back on their stream, where the consumers handle them again; they are idempotent, and one
    that fails again comes back here)."""

    def __init__(self, redis: aioredis.Redis, streams: list[str]) -> None:
        self._redis = redis
        self.streams = streams
        self._replay = redis.register_script(_REPLAY)

    async def count(self) -> int:
        return sum([int(await self._redis.xlen(dead_letter_stream(s))) for s in self.streams])

    async def read(self, stream: str, after: str | None, limit: int) -> list[DeadLetter]:
        """At most `limit` dead letters of `stream`, oldest first, after the dead letter `after`."""
        start = f"({after}" if after else "-"
        found: Any = await self._redis.xrange(dead_letter_stream(stream), min=start, max="+", count=limit)
        letters: list[DeadLetter] = []
        for dead_id, fields in found:
            own = {k: v for k, v in fields.items() if k not in (ENTRY_ID_FIELD, REASON_FIELD)}
            letters.append(
                DeadLetter(
                    stream,
                    dead_id.decode(),
                    fields.get(ENTRY_ID_FIELD, b"").decode(errors="replace"),
                    fields.get(REASON_FIELD, b"").decode(errors="replace"),
                    own,
                )
            )
        return letters

    async def replay(self, stream: str, dead_letter_ids: list[str]) -> int:
        """Puts these dead letters of `stream` back on it; returns how many (ids no longer there are
        skipped: another replay took them)."""
        if not dead_letter_ids:
            return 0
        replayed = await self._replay(keys=[dead_letter_stream(stream), stream], args=dead_letter_ids)
        log.warning("replayed dead letters", extra={"stream": stream, "count": int(replayed)})
        return int(replayed)

    async def replay_all(self, stream: str, batch: int = 500) -> int:
        """Puts every dead letter of `stream` back on it (those there when it started); returns how many."""
        total = 0
        last: Any = await self._redis.xrevrange(dead_letter_stream(stream), count=1)
        if not last:
            return 0
        end = last[0][0].decode()
        while True:
            found: Any = await self._redis.xrange(dead_letter_stream(stream), min="-", max=end, count=batch)
            if not found:
                return total
            total += await self.replay(stream, [i.decode() for i, _ in found])
