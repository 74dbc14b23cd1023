"""The mail outbox in PostgreSQL: MailQueue on the `mail_outbox` table (its DDL is users_svc's
migration 0003_mail_outbox.sql, the schema of the service that sends mail).

`enqueue` runs in the caller's transaction, next to the change the mail announces; the relay's
`claim_due` takes due rows with FOR UPDATE SKIP LOCKED, so relays on several replicas never take
the same row, and pushes each one's next attempt past the lease at once (committed before sending:
no transaction stays open across an SMTP conversation). A sent or abandoned row keeps its
envelope, times and last error for operators; its message, which may hold a token, is cleared.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool

from mail.messages import OutgoingMail
from mail.outbox import QueuedMail
from meshkit.metrics import REGISTRY

MAIL_BACKLOG = Gauge(
    "tweetmesh_mail_backlog", "Mails due to be sent and not sent yet (mesh-wide).", registry=REGISTRY
)
MAIL_OLDEST_DUE = Gauge(
    "tweetmesh_mail_oldest_due_seconds",
    "How long the oldest mail due has waited to be sent (0: none waits; mesh-wide).",
    registry=REGISTRY,
)


async def enqueue(cursor: AsyncCursor[Any], mail: OutgoingMail, discard_time: datetime | None = None) -> int:
    """Queues `mail` in the caller's transaction; returns its id. Wake the relay after the commit."""
    await cursor.execute(
        "INSERT INTO mail_outbox (sender, recipient, message, discard_time)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (mail.sender, mail.recipient, mail.as_bytes(), discard_time),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


class PostgresMailQueue:
    """MailQueue on the mail_outbox table of the pool's search_path."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def claim_due(self, limit: int, lease: timedelta) -> list[QueuedMail]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE mail_outbox SET attempts = attempts + 1,"
                " next_attempt_time = now() + make_interval(secs => %s)"
                " WHERE id IN ("
                "  SELECT id FROM mail_outbox WHERE sent_time IS NULL AND failed_time IS NULL"
                "   AND next_attempt_time <= now()"
                "   ORDER BY next_attempt_time LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id, sender, recipient, message, attempts, create_time, discard_time,"
                " next_attempt_time",
                (lease.total_seconds(), limit),
            )
            rows = await cursor.fetchall()
        rows.sort(key=lambda row: (row[7], row[0]))
        return [
            QueuedMail(
                mail_id=int(row[0]),
                sender=str(row[1]),
                recipient=str(row[2]),
                message=bytes(row[3]),
                attempts=int(row[4]),
                create_time=row[5],
                discard_time=row[6],
            )
            for row in rows
        ]

    async def mark_sent(self, mail_id: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE mail_outbox SET sent_time = now(), message = NULL, last_error = NULL"
                " WHERE id = %s AND sent_time IS NULL AND failed_time IS NULL",
                (mail_id,),
            )

    async def retry_later(self, mail_id: int, delay: timedelta, error: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE mail_outbox"
                " SET next_attempt_time = now() + make_interval(secs => %s), last_error = %s"
                " WHERE id = %s AND sent_time IS NULL AND failed_time IS NULL",
                (delay.total_seconds(), error, mail_id),
            )

    async def give_up(self, mail_id: int, error: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE mail_outbox SET failed_time = now(), message = NULL, last_error = %s"
                " WHERE id = %s AND sent_time IS NULL AND failed_time IS NULL",
                (error, mail_id),
            )

    async def forget_settled(self, older_than: timedelta) -> int:
        """Deletes rows sent or given up more than `older_than` ago; returns how many."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM mail_outbox WHERE (sent_time IS NOT NULL OR failed_time IS NOT NULL)"
                " AND coalesce(sent_time, failed_time) < now() - make_interval(secs => %s)",
                (older_than.total_seconds(),),
            )
            return cursor.rowcount

    async def backlog(self) -> tuple[int, float]:
        """How many mails wait to be sent, and how long the oldest due one has waited (seconds)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(next_attempt_time)), 0)"
                " FROM mail_outbox WHERE sent_time IS NULL AND failed_time IS NULL"
                " AND next_attempt_time <= now()"
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), max(float(row[1]), 0.0)

    async def export_backlog(self) -> None:
        """Sets the backlog gauges (meshkit.metrics.refresh_every calls it)."""
        count, waited = await self.backlog()
        MAIL_BACKLOG.set(count)
        MAIL_OLDEST_DUE.set(waited)
