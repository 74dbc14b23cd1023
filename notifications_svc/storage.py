"""notifications_svc's SQL (schema `notifications`) and its live channels in Redis; nothing else
touches them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.ids import id_at
from meshkit.shards import sharded_pubsub
from notifications_svc.service import (
    SAMPLE_ACCOUNTS,
    Key,
    Kind,
    Notice,
    Notification,
    Published,
    StoredGroup,
)
from social.live import item_message, notification_channel

log = logging.getLogger(__name__)

_NOTIFICATION_COLUMNS = "id, recipient_id, kind, actor_id, subject_id, group_key"
# Late events about a deleted tweet are ignored this long; far longer than any event waits.
DELETED_KEPT = timedelta(days=7)
# Undone notifications are kept this long (so a late, older event cannot bring one back).
UNDONE_KEPT = timedelta(days=7)
TIDY_SECONDS = 3600.0


def _notification(row: Sequence[Any]) -> Notification:
    return Notification(int(row[0]), int(row[1]), Kind(row[2]), int(row[3]), int(row[4]), row[5])


class PostgresNotificationStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    # -- writes ----------------------------------------------------------------------------------

    async def apply(self, notices: Sequence[Notice], gone_tweet_id: int | None) -> list[Published]:
        changes: list[Published] = []
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for notice in sorted(notices, key=lambda n: n.key.recipient_id):  # a lock order
                changes += await self._apply(cur, notice)
            if gone_tweet_id is not None:
                changes += await self._tweet_gone(cur, gone_tweet_id)
        return changes

    async def _apply(self, cur: psycopg.AsyncCursor[Any], notice: Notice) -> list[Published]:
        """One notice, under the lock of its row: applied only if it is newer than what made the
        row (an undo of the same action counts as newer), else nothing."""
        key = notice.key
        where = (key.recipient_id, key.kind.value, key.actor_id, key.subject_id)
        if notice.on and key.subject_id and await self._is_deleted(cur, key.subject_id):
            return []
        # The row exists (undone, made by nothing yet) before it is locked: concurrent events of
        # one key queue on it instead of racing to insert it.
        await cur.execute(
            "INSERT INTO notifications"
            " (recipient_id, kind, actor_id, subject_id, id, source_id, active, group_key)"
            " VALUES (%s, %s, %s, %s, 0, 0, false, '') ON CONFLICT DO NOTHING",
            where,
        )
        await cur.execute(
            "SELECT id, source_id, active, group_key FROM notifications"
            " WHERE recipient_id = %s AND kind = %s AND actor_id = %s AND subject_id = %s FOR UPDATE",
            where,
        )
        row = await cur.fetchone()
        assert row is not None
        old_id, source, active, old_group = int(row[0]), int(row[1]), bool(row[2]), str(row[3])
        if notice.source < source or (notice.source == source and notice.on):
            return []  # older than what the row holds, or a repeat
        if not active and not notice.on:
            await cur.execute(
                "UPDATE notifications SET source_id = %s"
                " WHERE recipient_id = %s AND kind = %s AND actor_id = %s AND subject_id = %s",
                (notice.source, *where),
            )
            return []
        changes = []
        if active:
            await self._leave_group(cur, key, old_group, old_id)
            changes.append(Published(key.recipient_id, old_id, removed=True))
        if notice.on:
            await cur.execute(
                "UPDATE notifications SET id = tm_next_id('notifications_id_seq'), source_id = %s,"
                " active = true, group_key = %s"
                " WHERE recipient_id = %s AND kind = %s AND actor_id = %s AND subject_id = %s RETURNING id",
                (notice.source, notice.group_key, *where),
            )
            new_id = int((await cur.fetchone() or (0,))[0])
            await self._join_group(cur, key, notice.group_key, new_id)
            changes.append(Published(key.recipient_id, new_id, removed=False))
        else:
            await cur.execute(
                "UPDATE notifications SET source_id = %s, active = false"
                " WHERE recipient_id = %s AND kind = %s AND actor_id = %s AND subject_id = %s",
                (notice.source, *where),
            )
            await self._recount_latest(cur, key.recipient_id, old_group, old_id)
        return changes

    @staticmethod
    async def _is_deleted(cur: psycopg.AsyncCursor[Any], tweet_id: int) -> bool:
        """Whether the tweet was deleted; until this transaction ends, a deletion of it waits."""
        await cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (tweet_id,))
        await cur.execute("SELECT 1 FROM deleted_tweets WHERE tweet_id = %s", (tweet_id,))
        return await cur.fetchone() is not None

    @staticmethod
    async def _join_group(
        cur: psycopg.AsyncCursor[Any], key: Key, group_key: str, notification_id: int
    ) -> None:
        await cur.execute(
            "INSERT INTO notification_groups (recipient_id, group_key, kind, subject_id, latest_id, count)"
            " VALUES (%s, %s, %s, %s, %s, 1) ON CONFLICT (recipient_id, group_key) DO UPDATE"
            " SET count = notification_groups.count + 1,"
            " latest_id = greatest(notification_groups.latest_id, excluded.latest_id)",
            (key.recipient_id, group_key, key.kind.value, key.subject_id, notification_id),
        )

    async def _leave_group(
        self, cur: psycopg.AsyncCursor[Any], key: Key, group_key: str, notification_id: int
    ) -> None:
        """Counts one notification out of its group (its row about to change); an emptied group goes."""
        await cur.execute(
            "UPDATE notification_groups SET count = count - 1 WHERE recipient_id = %s AND group_key = %s",
            (key.recipient_id, group_key),
        )
        await cur.execute(
            "DELETE FROM notification_groups WHERE recipient_id = %s AND group_key = %s AND count <= 0",
            (key.recipient_id, group_key),
        )

    @staticmethod
    async def _recount_latest(
        cur: psycopg.AsyncCursor[Any], recipient_id: int, group_key: str, removed_id: int
    ) -> None:
        """The group's latest notification again, if the one that went was it (an index look-up)."""
        await cur.execute(
            "UPDATE notification_groups g SET latest_id = coalesce(("
            "  SELECT n.id FROM notifications n WHERE n.recipient_id = g.recipient_id"
            "   AND n.group_key = g.group_key AND n.active ORDER BY n.id DESC LIMIT 1), g.latest_id)"
            " WHERE g.recipient_id = %s AND g.group_key = %s AND g.latest_id = %s",
            (recipient_id, group_key, removed_id),
        )

    async def _tweet_gone(self, cur: psycopg.AsyncCursor[Any], tweet_id: int) -> list[Published]:
        """Every notification about a deleted tweet goes (its likes, its retweets, the mentions
        and reply in it), with their groups, and later events about it are ignored."""
        # Waits for the notices about the tweet being applied now (they hold it shared), and makes
        # those that come later wait and see it deleted.
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (tweet_id,))
        await cur.execute(
            "INSERT INTO deleted_tweets (tweet_id) VALUES (%s) ON CONFLICT DO NOTHING", (tweet_id,)
        )
        await cur.execute(
            "UPDATE notifications SET active = false WHERE subject_id = %s AND active"
            " RETURNING recipient_id, id",
            (tweet_id,),
        )
        gone = [Published(int(r[0]), int(r[1]), removed=True) for r in await cur.fetchall()]
        await cur.execute("DELETE FROM notification_groups WHERE subject_id = %s", (tweet_id,))
        return gone

    async def mark_read(self, recipient_id: int, up_to_id: int) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO read_markers (recipient_id, read_up_to) VALUES (%s, least(%s, coalesce(("
                "  SELECT id FROM notifications WHERE recipient_id = %s AND active"
                "  ORDER BY id DESC LIMIT 1), 0)))"
                " ON CONFLICT (recipient_id) DO UPDATE"
                " SET read_up_to = greatest(read_markers.read_up_to, excluded.read_up_to)"
                " RETURNING read_up_to",
                (recipient_id, up_to_id, recipient_id),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- reads -----------------------------------------------------------------------------------

    async def groups(
        self, recipient_id: int, before: int | None, limit: int, hidden: Sequence[int]
    ) -> list[StoredGroup]:
        # The hidden accounts' share of a group is counted only when there are some: counting the
        # group itself would read all of its rows (a celebrity's tweet may have millions of likes).
        hidden_share = (
            "(SELECT count(*) FROM notifications n WHERE n.recipient_id = g.recipient_id"
            "  AND n.kind = g.kind AND n.subject_id = g.subject_id AND n.actor_id = ANY(%(hidden)s)"
            "  AND n.active AND n.group_key = g.group_key)"
            if hidden
            else "0"
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT g.group_key, g.kind, g.subject_id, g.latest_id, g.count - {hidden_share},"
                "  ARRAY(SELECT n.actor_id FROM notifications n WHERE n.recipient_id = g.recipient_id"
                "   AND n.group_key = g.group_key AND n.active AND NOT n.actor_id = ANY(%(hidden)s)"
                f"   ORDER BY n.source_id DESC LIMIT {SAMPLE_ACCOUNTS})"
                " FROM notification_groups g"
                " WHERE g.recipient_id = %(recipient)s AND g.latest_id < %(before)s"
                " ORDER BY g.latest_id DESC LIMIT %(limit)s",
                {
                    "recipient": recipient_id,
                    "before": before if before is not None else 2**63 - 1,
                    "limit": limit,
                    "hidden": list(hidden),
                },
            )
            rows = await cur.fetchall()
        return [
            StoredGroup(r[0], Kind(r[1]), int(r[2]), int(r[3]), int(r[4]), tuple(int(a) for a in r[5]))
            for r in rows
        ]

    async def read_marker(self, recipient_id: int) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT read_up_to FROM read_markers WHERE recipient_id = %s", (recipient_id,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def count_after(self, recipient_id: int, after: int, hidden: Sequence[int], limit: int) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM notifications WHERE recipient_id = %s AND active"
                " AND id > %s AND NOT actor_id = ANY(%s) ORDER BY id DESC LIMIT %s) AS unread",
                (recipient_id, after, list(hidden), limit),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def by_ids(self, recipient_id: int, ids: Sequence[int]) -> list[Notification]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"
                " WHERE recipient_id = %s AND id = ANY(%s) AND active",
                (recipient_id, list(ids)),
            )
            return [_notification(r) for r in await cur.fetchall()]

    async def after(self, recipient_id: int, after: int, limit: int) -> list[Notification]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"
                " WHERE recipient_id = %s AND active AND id > %s ORDER BY id LIMIT %s",
                (recipient_id, after, limit),
            )
            return [_notification(r) for r in await cur.fetchall()]

    async def erase_recipient(self, recipient_id: int) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            for table in ("notifications", "notification_groups", "read_markers"):
                await conn.execute(f"DELETE FROM {table} WHERE recipient_id = %s", (recipient_id,))

    async def tidy(self) -> None:
        """Forgets deleted tweets and undone notifications old enough that no event about them can
        still be on its way."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM deleted_tweets WHERE delete_time < now() - make_interval(secs => %s)",
                (DELETED_KEPT.total_seconds(),),
            )
            await conn.execute(
                "DELETE FROM notifications WHERE NOT active AND source_id < %s",
                (id_at(datetime.now(UTC) - UNDONE_KEPT),),
            )


async def tidy_forever(store: PostgresNotificationStore) -> None:
    while True:
        try:
            await store.tidy()
        except DEPENDENCY_ERRORS as error:
            log.warning("tidying notifications failed; will retry", extra={"error": type(error).__name__})
        await asyncio.sleep(TIDY_SECONDS)


class RedisChannels:
    """Tells the recipients' live streams (timeline_svc's StreamNotifications) what appeared or
    went: the notification id on `notifications:<recipient>` ("-<id>" when it went)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def publish(self, changes: Sequence[Published]) -> None:
        sharded = await sharded_pubsub(self._redis)
        async with self._redis.pipeline(transaction=False) as pipe:
            for change in changes:
                (pipe.spublish if sharded else pipe.publish)(
                    notification_channel(change.recipient_id),
                    item_message(change.notification_id, removed=change.removed),
                )
            await pipe.execute()
