"""media_svc's SQL (schema `media`); nothing else touches these tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from media_svc.service import ClaimStatus, Inspected, MediaRecord, claim_status

_COLUMNS = (
    "id, owner_id, content_type, width, height, duration_ms, frames, size_bytes, sha256,"
    " thumbnail_sha256, create_time"
)


def _record(row: Sequence[Any]) -> MediaRecord:
    return MediaRecord(
        media_id=int(row[0]),
        owner_id=int(row[1]),
        content_type=row[2],
        width=int(row[3]),
        height=int(row[4]),
        duration_ms=int(row[5]),
        frames=int(row[6]),
        size_bytes=int(row[7]),
        sha256=row[8],
        thumbnail_sha256=row[9],
        create_time=row[10],
    )


class PostgresMediaStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def begin(self, owner_id: int, inspected: Inspected) -> MediaRecord:
        media = inspected.media
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO media (owner_id, state, content_type, width, height, duration_ms, frames,"
                " size_bytes, sha256, thumbnail_sha256)"
                " VALUES (%s, 'uploading', %s, %s, %s, %s, %s, %s, %s, %s)"
                f" RETURNING {_COLUMNS}",
                (
                    owner_id,
                    media.content_type,
                    media.width,
                    media.height,
                    round(media.duration * 1000),
                    media.frames,
                    len(media.sanitized),
                    inspected.sha256,
                    inspected.thumbnail_sha256,
                ),
            )
            row = await cur.fetchone()
        assert row is not None
        return _record(row)

    async def ready(self, media_id: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("UPDATE media SET state = 'ready' WHERE id = %s", (media_id,))

    async def forget(self, media_id: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM media WHERE id = %s", (media_id,))

    async def get(self, media_id: int) -> MediaRecord | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM media WHERE id = %s AND state = 'ready'", (media_id,)
            )
            row = await cur.fetchone()
        return None if row is None else _record(row)

    async def claim(
        self, owner_id: int, media_ids: Sequence[int], seconds: float
    ) -> dict[int, tuple[MediaRecord | None, ClaimStatus]]:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Locked in id order (as every writer of these rows locks them), so that a concurrent
            # sweep or claim waits for this one.
            await cur.execute(
                f"SELECT {_COLUMNS}, state, tweet_id FROM media WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                (list(media_ids),),
            )
            rows = {int(row[0]): row for row in await cur.fetchall()}
            found: dict[int, tuple[MediaRecord | None, ClaimStatus]] = {
                media_id: (None, ClaimStatus.MISSING) for media_id in media_ids
            }
            for media_id, row in rows.items():
                status = claim_status(owner_id, int(row[1]), row[11], row[12])
                found[media_id] = (_record(row), status)
            if all(status is ClaimStatus.CLAIMABLE for _, status in found.values()):
                await cur.execute(
                    "UPDATE media SET claim_expire_time = now() + make_interval(secs => %s)"
                    " WHERE id = ANY(%s)",
                    (seconds, list(media_ids)),
                )
        return found

    async def attach(self, tweet_id: int, owner_id: int, media_ids: Sequence[int]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE media SET tweet_id = %s, claim_expire_time = NULL"
                " WHERE id = ANY(%s) AND owner_id = %s AND tweet_id IS NULL",
                (tweet_id, list(media_ids), owner_id),
            )

    async def owned(self, owner_id: int, media_ids: Sequence[int]) -> list[int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM media WHERE id = ANY(%s) AND owner_id = %s ORDER BY id",
                (list(media_ids), owner_id),
            )
            return [int(row[0]) for row in await cur.fetchall()]

    async def unfinished(self, older_than_seconds: float, limit: int) -> list[int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM media WHERE state = 'uploading'"
                " AND create_time < now() - make_interval(secs => %s) ORDER BY create_time LIMIT %s",
                (older_than_seconds, limit),
            )
            return [int(row[0]) for row in await cur.fetchall()]

    async def collectable(self, older_than_seconds: float, limit: int) -> list[int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE media SET state = 'collecting' WHERE id IN ("
                "  SELECT id FROM media WHERE tweet_id IS NULL AND state IN ('ready', 'collecting')"
                "   AND create_time < now() - make_interval(secs => %s)"
                "   AND (claim_expire_time IS NULL OR claim_expire_time < now())"
                "  ORDER BY create_time LIMIT %s FOR UPDATE SKIP LOCKED"
                ") RETURNING id",
                (older_than_seconds, limit),
            )
            return sorted(int(row[0]) for row in await cur.fetchall())

    async def keep(self, attached: Mapping[int, int]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE media SET state = 'ready', tweet_id = a.tweet_id, claim_expire_time = NULL"
                " FROM unnest(%s::bigint[], %s::bigint[]) AS a(media_id, tweet_id)"
                " WHERE media.id = a.media_id AND media.state = 'collecting'",
                (list(attached), list(attached.values())),
            )
