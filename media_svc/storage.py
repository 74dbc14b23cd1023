"""media_svc's SQL (schema `media`); nothing else touches these tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from media_svc.service import Inspected, MediaRecord

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
