"""The transactional outbox: events written with the change they announce, then relayed to Redis.

A service calls `add` inside the transaction that makes the change, so the event exists if and
only if the change committed. After the commit it calls `relay` with what `add` returned, which
XADDs the events at once; their rows are deleted in the background once the events are safe
(`sweep_forever` deletes every row relayed in the last FORGET_EVERY_SECONDS with one statement, off
the request path). Whatever the relay misses (Redis down, a crash between commit and relay, events
not yet safe) the sweeper finds and relays later, and so is a row whose delete a crash lost.
Consumers may therefore see an event twice and must be idempotent; they never miss one.
With tracing on, an event carries the trace context of the change (field `traceparent`), so
that what its consumers do belongs to the change's trace (meshkit.tracing).

Safe means: Redis acknowledged the XADD, and, with `replicas` > 0, that many replicas have it too
(WAIT), so a failover to one of them keeps it. With one Redis an event is as durable as that
Redis's own persistence; a Redis that lost it lost the home timelines too, which are rebuilt from
PostgreSQL.

A service may have Redis writes ride along in the relay's pipeline: `on_relay` for what each event
implies wherever it is relayed (by the request or by the sweeper), `relay(..., also=)` for what only
the request knows (an owner's cache entries: social.caches). An entry of a `writes` stream is no
event at all but a Redis write that must not be lost (users_svc's revocations of cached sessions):
its writer adds it to the pipeline in place of an XADD, and the sweeper does it again until Redis
takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool
from redis.typing import EncodableT, FieldT

from meshkit import tracing
from meshkit.errors import DEPENDENCY_ERRORS, RedisOutage

log = logging.getLogger(__name__)

# How often the rows of relayed events are deleted (in one statement and one transaction for all
# of them: under load, many relays' rows; well within a sweep's interval, so that no sweeper takes
# a relayed row for one left behind).
FORGET_EVERY_SECONDS = 0.25
# How long a relay waits for the replicas to have its events before leaving them to the sweeper.
REPLICA_WAIT_MS = 1000
SWEEP_BACKOFF_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True, order=True)
class Event:
    outbox_id: int
    stream: str
    payload: bytes
    trace: str | None = None  # the W3C traceparent of the change, when it was traced

    def fields(self) -> dict[FieldT, EncodableT]:
        """The event's fields in its stream."""
        fields: dict[FieldT, EncodableT] = {"data": self.payload, "outbox_id": self.outbox_id}
        if self.trace is not None:
            fields[TRACE_FIELD] = self.trace
        return fields


# The field of a stream entry holding its change's trace context (read by meshkit.streams).
TRACE_FIELD = "traceparent"
# Adds Redis commands to the relay's pipeline (the pipeline, then the event it relays).
OnRelay = Callable[[Any, Event], Awaitable[None]]
# Adds the caller's own Redis commands to the relay's pipeline.
Also = Callable[[Any], Awaitable[None]]


def _event(row: Sequence[Any]) -> Event:
    """An event from its outbox row (id, stream, payload, trace_context)."""
    outbox_id, stream, payload, trace = row
    return Event(int(outbox_id), str(stream), bytes(payload), None if trace is None else str(trace))


class Outbox:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        redis: aioredis.Redis,
        replicas: int = 0,
        on_relay: OnRelay | None = None,
        writes: Mapping[str, OnRelay] | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._replicas = replicas
        self._on_relay = on_relay
        # Stream name -> the writer of its entries, which are Redis writes, not stream entries.
        self._writes = dict(writes or {})
        # Outbox ids of events relayed whose rows are not deleted yet.
        self._relayed: list[int] = []

    @staticmethod
    async def add(cursor: AsyncCursor[tuple[object, ...]], stream: str, payload: bytes) -> Event:
        """Records an event in the caller's transaction, with the current trace context."""
        trace = tracing.traceparent()
        await cursor.execute(
            "INSERT INTO outbox (stream, payload, trace_context) VALUES (%s, %s, %s) RETURNING id",
            (stream, payload, trace),
        )
        row = await cursor.fetchone()
        assert row is not None
        return Event(int(row[0]), stream, payload, trace)  # type: ignore[call-overload]

    @staticmethod
    async def add_all(
        cursor: AsyncCursor[tuple[object, ...]],
        stream: str,
        payloads: Sequence[bytes],
        traces: Sequence[str | None],
    ) -> None:
        """Records many events in the caller's transaction with one statement, each with the trace
        context of the call that made it (`traces`, in the same order); `added(cursor)` returns
        them once it has run (in a pipeline, once the pipeline has synced)."""
        await cursor.execute(
            "INSERT INTO outbox (stream, payload, trace_context)"
            " SELECT %s, p, t FROM unnest(%s::bytea[], %s::text[]) AS e(p, t)"
            " RETURNING id, stream, payload, trace_context",
            (stream, list(payloads), list(traces)),
        )

    @staticmethod
    async def added(cursor: AsyncCursor[tuple[object, ...]]) -> list[Event]:
        """The events `add_all` recorded with `cursor`, in id order."""
        rows = await cursor.fetchall()
        return sorted(_event(row) for row in rows)

    async def _xadd(self, events: list[Event], also: Also | None = None) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            # The writes that ride along go first: whoever reads an event finds them done.
            if also is not None:
                await also(pipe)
            for event in events:
                if (write := self._writes.get(event.stream)) is not None:
                    await write(pipe, event)
                    continue
                if self._on_relay is not None:
                    await self._on_relay(pipe, event)
                # Untrimmed here: the stream's consumers trim what they have all read
                # (meshkit.streams), so a backlog is never cut short.
                pipe.xadd(event.stream, event.fields())
            if self._replicas:  # on the same connection: WAIT counts the replicas that have its writes
                pipe.wait(self._replicas, REPLICA_WAIT_MS)
            replies = await pipe.execute()
        if self._replicas:
            acked = int(replies[-1])
            if acked < self._replicas:
                # Not safe yet: the rows stay, and the sweeper relays the events again (a repeat
                # the consumers ignore) until enough replicas have them.
                raise RedisOutage(f"NOREPLICAS {acked} of {self._replicas} replicas acknowledged the events")

    async def relay(self, events: list[Event], also: Also | None = None) -> None:
        """Publishes freshly committed events now; on failure the sweeper will. `also` adds the
        caller's own writes to the same pipeline (lost with it if Redis fails: caches only). Their
        rows are deleted later, in the background (`forget_relayed`)."""
        if not events:
            return
        try:
            with tracing.span("outbox relay"):
                await self._xadd(events, also)
        except Exception as error:
            # Committed already: whatever went wrong here, the caller's write stands and the
            # sweeper relays the events later. Only the log says it happened.
            log.warning("outbox relay deferred to the sweeper", extra={"error": error})
            return
        self._relayed.extend(e.outbox_id for e in events)

    async def forget_relayed(self) -> None:
        """Deletes the rows of the events relayed since the last call, in one statement. The delete
        need not be durable (a row a crash brings back is relayed again by the sweeper, which
        consumers shrug off), so it does not wait for a disk flush."""
        if not self._relayed:
            return
        ids, self._relayed = self._relayed, []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
        except BaseException:
            self._relayed[:0] = ids  # deleted next time
            raise

    async def sweep_once(self, older_than_seconds: float, batch: int = 500) -> int:
        """Relays events left behind; returns how many."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Not the rows of events this process relayed and is about to delete.
            await cur.execute(
                "SELECT id, stream, payload, trace_context FROM outbox"
                " WHERE create_time < now() - make_interval(secs => %s) AND id <> ALL(%s)"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (older_than_seconds, list(self._relayed), batch),
            )
            events = [_event(row) for row in await cur.fetchall()]
            if events:
                await self._xadd(events)
                await cur.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([e.outbox_id for e in events],))
        if events:
            log.info("outbox sweeper relayed events", extra={"count": len(events)})
        return len(events)

    async def sweep_forever(self, interval_seconds: float) -> None:
        """Deletes the rows of relayed events every FORGET_EVERY_SECONDS and relays what was left
        behind every `interval_seconds`, until cancelled (then the last relayed rows are deleted).
        After a failure (a dependency down, replicas missing) the wait for the next sweep doubles
        up to SWEEP_BACKOFF_MAX_SECONDS; whatever failed is tried again then."""
        wait = interval_seconds
        next_sweep = time.monotonic()
        try:
            while True:
                try:
                    await self.forget_relayed()
                    if time.monotonic() >= next_sweep:
                        while await self.sweep_once(older_than_seconds=interval_seconds) > 0:
                            pass
                        wait = interval_seconds
                        next_sweep = time.monotonic() + wait
                except Exception as error:  # the sweeper never stops: what it relays must be relayed
                    if isinstance(error, DEPENDENCY_ERRORS):
                        log.warning("outbox sweep failed; will retry", extra={"error": type(error).__name__})
                    else:  # a refusal by Redis (an ACL, a script error): said loudly, retried all the same
                        log.exception("outbox sweep failed; will retry")
                    wait = min(wait * 2, max(SWEEP_BACKOFF_MAX_SECONDS, interval_seconds))
                    next_sweep = time.monotonic() + wait
                await asyncio.sleep(min(FORGET_EVERY_SECONDS, interval_seconds))
        finally:
            # Stopping: what is left would only be relayed again by the next sweeper.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.forget_relayed(), timeout=1.0)
