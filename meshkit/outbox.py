"""The transactional outbox: events written with the change they announce, then relayed to Redis.

A service calls `add` inside the transaction that makes the change, so the event exists if and
only if the change committed. After the commit it calls `relay` with what `add` returned, which
XADDs the events at once and deletes their rows once the events are safe. Whatever that misses
(Redis down, a crash between commit and relay, events not yet safe) the sweeper finds and relays
later. Consumers may therefore see an event twice and must be idempotent; they never miss one.
With tracing on, an event carries the trace context of the change (field `traceparent`), so
that what its consumers do belongs to the change's trace (meshkit.tracing).

Safe means: Redis acknowledged the XADD, and, with `replicas` > 0, that many replicas have it too
(WAIT), so a failover to one of them keeps it. With one Redis an event is as durable as that
Redis's own persistence; a Redis that lost it lost the home timelines too, which are rebuilt from
PostgreSQL.

A service may have Redis writes ride along in the relay's pipeline: `on_relay` for what each event
implies wherever it is relayed (by the request or by the sweeper), `relay(..., also=)` for what only
the request knows (an owner's cache entries: social.caches).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool
from redis.typing import EncodableT, FieldT

from meshkit import tracing
from meshkit.errors import DEPENDENCY_ERRORS, RedisOutage

log = logging.getLogger(__name__)
# How long a relay waits for the replicas to have its events before leaving them to the sweeper.
REPLICA_WAIT_MS = 1000
SWEEP_BACKOFF_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
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


class Outbox:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        redis: aioredis.Redis,
        replicas: int = 0,
        on_relay: OnRelay | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._replicas = replicas
        self._on_relay = on_relay

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

    async def _xadd(self, events: list[Event], also: Also | None = None) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            # The writes that ride along go first: whoever reads an event finds them done.
            if also is not None:
                await also(pipe)
            for event in events:
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
        caller's own writes to the same pipeline (lost with it if Redis fails: caches only)."""
        if not events:
            return
        try:
            with tracing.span("outbox relay"):
                await self._xadd(events, also)
                async with self._pool.connection() as conn:
                    ids = [e.outbox_id for e in events]
                    await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
        except Exception as error:
            # Committed already: whatever went wrong here, the caller's write stands and the
            # sweeper relays the events later. Only the log says it happened.
            log.warning("outbox relay deferred to the sweeper", extra={"error": error})

    async def sweep_once(self, older_than_seconds: float, batch: int = 500) -> int:
        """Relays events left behind; returns how many."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "SELECT id, stream, payload, trace_context FROM outbox"
                " WHERE create_time < now() - make_interval(secs => %s)"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (older_than_seconds, batch),
            )
            events = [Event(int(i), str(s), bytes(p), t and str(t)) for i, s, p, t in await cur.fetchall()]
            if events:
                await self._xadd(events)
                await cur.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([e.outbox_id for e in events],))
        if events:
            log.info("outbox sweeper relayed events", extra={"count": len(events)})
        return len(events)

    async def sweep_forever(self, interval_seconds: float) -> None:
        """Sweeps every `interval_seconds`; after a failure (a dependency down, replicas missing)
        the wait doubles up to SWEEP_BACKOFF_MAX_SECONDS."""
        wait = interval_seconds
        while True:
            try:
                while await self.sweep_once(older_than_seconds=interval_seconds) > 0:
                    pass
                wait = interval_seconds
            except DEPENDENCY_ERRORS as error:
                log.warning("outbox sweep failed; will retry", extra={"error": type(error).__name__})
                wait = min(wait * 2, max(SWEEP_BACKOFF_MAX_SECONDS, interval_seconds))
            await asyncio.sleep(wait)
