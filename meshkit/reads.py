"""Reads that tolerate replication lag: answered by a PostgreSQL streaming replica while it
answers, by the primary otherwise.

A service opens one `Reads` per schema (`Runtime.reads`, from `DATABASE_READ_URL`) and its store
sends through it exactly the queries that may show a moment-old state; everything else stays on
the primary pool. Which queries those are is each store's decision, listed in the README ("Read
replica: which reads go where").

A replica that fails (cannot be reached, a statement that fails or does not answer within
`limit_seconds`, a query cancelled by a recovery conflict) is set aside: that read and every one
after it run on the primary, until a probe every `retry_seconds` finds the replica answering
again. So a replica's failure never fails a read that the primary can answer. Each read is counted
by the server that answered it (`tweetmesh_db_reads_total{served_by}`).
"""

from __future__ import annotations

import asyncio
import logging
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
# What the probe of a replica set aside may get instead of an answer: any of those, or any other
# error of the server (the service goes on without it either way).
_PROBE_FAILURES: tuple[type[BaseException], ...] = (*REPLICA_FAILURES, psycopg.Error)


class Reads:
    """Runs lag-tolerant reads on `replica` while it answers, on `primary` otherwise (and always
    when there is no replica). `wait_seconds` bounds the wait for a replica connection, and
    `limit_seconds` the whole read on the replica, before the read goes to the primary instead."""

    def __init__(
        self,
        primary: AsyncConnectionPool,
        replica: AsyncConnectionPool | None = None,
        *,
        schema: str = "",
        wait_seconds: float = 1.0,
        limit_seconds: float = 2.5,
        retry_seconds: float = 1.0,
    ) -> None:
        self._primary = primary
        self._replica = replica
        self._wait = wait_seconds
        self._limit = limit_seconds
        self._retry = retry_seconds
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

    def _put_aside(self, error: BaseException) -> None:
        if not self._set_aside:
            log.warning(
                "read replica failed; its reads go to the primary until it answers again",
                extra={"pool": self._replica.name if self._replica else "", "error": str(error)},
            )
        self._set_aside = True

    async def watch(self) -> None:
        """Forever: while the replica is set aside, asks it every `retry_seconds` whether it
        answers, and takes it back when it does (a background task of the service)."""
        if self._replica is None:
            return
        while True:
            await asyncio.sleep(self._retry)
            if not self._set_aside:
                continue
            try:
                async with asyncio.timeout(self._limit), self._replica.connection(timeout=self._wait) as conn:
                    await conn.execute("SELECT 1")
            except _PROBE_FAILURES:
                continue
            self._set_aside = False
            log.info("read replica answers again; its reads go to it", extra={"pool": self._replica.name})
