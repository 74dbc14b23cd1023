"""Reads that tolerate replication lag: answered by a PostgreSQL streaming replica while it
answers, by the primary otherwise.

A service opens one `Reads` per schema (`Runtime.reads`, from `DATABASE_READ_URL`) and its store
sends through it exactly the queries that may show a moment-old state; everything else stays on
the primary pool. Which queries those are is each store's decision, listed in the README ("Read
replica: which reads go where").

A replica that fails (cannot be reached, a statement that fails or does not answer within
`limit_seconds`, a query cancelled by a recovery conflict) is set aside: that read and every one
after it run on the primary, until a probe every `retry_seconds` finds the replica answering
again. So a replica's failure never fails a read that the primary can answer. The same probe
bounds the lag: a replica that has not replayed what the primary had written `max_lag_seconds`
ago is set aside too, until it has. Each read is counted by the server that answered it
(`tweetmesh_db_reads_total{served_by}`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.metrics import REGISTRY

log = logging.getLogger(__name__)
T = TypeVar("T")
Read = Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]

READS = Counter(
    "tweetmesh_db_reads",
    "Reads that tolerate replica lag (meshkit.reads), by schema and the server that answered:"
    " replica, or primary (no replica configured, or it failed).",
    ["schema", "served_by"],
    registry=REGISTRY,
)

# What makes a replica's answer unusable where the primary's would do: the failures of a
# dependency (a lost connection, a statement timeout, no free connection), no answer within the
# limit (a replica that hangs), and a query cancelled because replay removed rows it was reading
# (a recovery conflict: SQLSTATE 40001).
REPLICA_FAILURES: tuple[type[BaseException], ...] = (
    *DEPENDENCY_ERRORS,
    TimeoutError,
    psycopg.errors.SerializationFailure,
)
# What the probe (`watch`) may get instead of an answer: any of those, or any other error of the
# server (the service goes on without the replica either way, and the probe keeps asking).
_PROBE_FAILURES: tuple[type[BaseException], ...] = (*REPLICA_FAILURES, psycopg.Error)


class Reads:
    """Runs lag-tolerant reads on `replica` while it answers and lags at most `max_lag_seconds`
    (checked every `retry_seconds` by `watch`), on `primary` otherwise (and always when there is no
    replica). `wait_seconds` bounds the wait for a replica connection, and `limit_seconds` the
    whole read on the replica, before the read goes to the primary instead."""

    def __init__(
        self,
        primary: AsyncConnectionPool,
        replica: AsyncConnectionPool | None = None,
        *,
        schema: str = "",
        wait_seconds: float = 1.0,
        limit_seconds: float = 2.5,
        retry_seconds: float = 1.0,
        max_lag_seconds: float = 5.0,
    ) -> None:
        self._primary = primary
        self._replica = replica
        self._wait = wait_seconds
        self._limit = limit_seconds
        self._retry = retry_seconds
        self._max_lag = max_lag_seconds
        # The primary's WAL position as the probe found it, oldest first: (monotonic time, LSN).
        self._positions: deque[tuple[float, str]] = deque()
        self._set_aside = False
        self._by_replica = READS.labels(schema, "replica")
        self._by_primary = READS.labels(schema, "primary")

    async def run(self, read: Read[T]) -> T:
        """`read` on a connection of the replica, or of the primary if the replica is set aside or
        fails now. A failure of the primary is the caller's, as any query's is."""
        if self._replica is not None and not self._set_aside:
            try:
                async with asyncio.timeout(self._limit), self._replica.connection(timeout=self._wait) as conn:
                    result = await read(conn)
            except REPLICA_FAILURES as error:
                self._put_aside(error)
            else:
                self._by_replica.inc()
                return result
        async with self._primary.connection() as conn:
            result = await read(conn)
        self._by_primary.inc()
        return result

    def _put_aside(self, reason: object) -> None:
        if not self._set_aside:
            log.warning(
                "read replica set aside; its reads go to the primary until it answers and is caught up",
                extra={"pool": self._replica.name if self._replica else "", "reason": str(reason)},
            )
        self._set_aside = True

    async def watch(self) -> None:
        """Forever, every `retry_seconds`: sets the replica aside while it does not answer or lags
        more than `max_lag_seconds`, takes it back once it answers and has caught up (a background
        task of the service)."""
        replica = self._replica
        if replica is None:
            return
        while True:
            await asyncio.sleep(self._retry)
            problem = await self._problem(replica, time.monotonic())
            if problem is not None:
                self._put_aside(problem)
            elif self._set_aside:
                self._set_aside = False
                log.info("read replica back; its reads go to it", extra={"pool": replica.name})

    async def _problem(self, replica: AsyncConnectionPool, now: float) -> str | None:
        """Why the replica may not serve now, or None: it must answer and have replayed the WAL
        position the primary had `max_lag_seconds` ago (known once the probe has run that long)."""
        try:
            async with asyncio.timeout(self._limit), self._primary.connection(timeout=self._wait) as conn:
                cur = await conn.execute("SELECT pg_current_wal_lsn()::text")
                row = await cur.fetchone()
            if row is not None:
                self._positions.append((now, str(row[0])))
        except _PROBE_FAILURES:
            pass  # the primary's trouble, not the replica's: judge it by the positions known
        while len(self._positions) > 1 and now - self._positions[1][0] >= self._max_lag:
            self._positions.popleft()
        due = "0/0"
        if self._positions and now - self._positions[0][0] >= self._max_lag:
            due = self._positions[0][1]
        try:
            async with asyncio.timeout(self._limit), replica.connection(timeout=self._wait) as conn:
                # No replay position: not (or no longer) a standby, so nothing to wait for.
                caught_up = "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, true)"
                cur = await conn.execute(caught_up, (due,))
                row = await cur.fetchone()
        except _PROBE_FAILURES as error:
            return f"does not answer: {error}"
        if row is None or not row[0]:
            return f"more than {self._max_lag:g} s behind the primary (it has not replayed {due})"
        return None
