"""tweets_svc's SQL (schema `tweets`); nothing else touches these tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from meshkit.outbox import Outbox
from tweets_svc.service import NewTweet, ReplyTargetMissing, Tweet

TWEETS_STREAM = "events:tweets"
_COLUMNS = "id, author_id, text, create_time, reply_to_id, reply_count"
_NO_UPPER_BOUND = 2**63 - 1


def _tweet(row: Sequence[Any]) -> Tweet:
    return Tweet(
        int(row[0]), int(row[1]), row[2], row[3], None if row[4] is None else int(row[4]), int(row[5])
    )


class PostgresTweetStore:
    def __init__(
        self, pool: AsyncConnectionPool, outbox: Outbox, tweet_event: Callable[[Tweet], bytes]
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        # Builds the serialized TweetEvent; passed in so that only server.py imports *_pb2.
        self._tweet_event = tweet_event

    async def create(self, new: NewTweet) -> Tweet:
        try:
            return await self._create(new)
        except psycopg.errors.UniqueViolation:
            # A concurrent call with the same request_id committed first: answer with its tweet.
            return await self._create(new)

    async def _create(self, new: NewTweet) -> Tweet:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if new.request_id is not None:
                await cur.execute(
                    f"SELECT {_COLUMNS} FROM tweets WHERE author_id = %s AND request_id = %s",
                    (new.author_id, new.request_id),
                )
                if (row := await cur.fetchone()) is not None:
                    return _tweet(row)
            if new.reply_to_tweet_id is not None:
                await cur.execute(
                    "UPDATE tweets SET reply_count = reply_count + 1 WHERE id = %s RETURNING id",
                    (new.reply_to_tweet_id,),
                )
                if await cur.fetchone() is None:
                    raise ReplyTargetMissing(new.reply_to_tweet_id)
            await cur.execute(
                f"INSERT INTO tweets (author_id, text, reply_to_id, request_id) VALUES (%s, %s, %s, %s)"
                f" RETURNING {_COLUMNS}",
                (new.author_id, new.text, new.reply_to_tweet_id, new.request_id),
            )
            row = await cur.fetchone()
            assert row is not None
            tweet = _tweet(row)
            await cur.execute(
                "INSERT INTO author_stats (author_id, tweets_count) VALUES (%s, 1)"
                " ON CONFLICT (author_id) DO UPDATE SET tweets_count = author_stats.tweets_count + 1",
                (new.author_id,),
            )
            event = await self._outbox.add(cur, TWEETS_STREAM, self._tweet_event(tweet))
        await self._outbox.relay([event])
        return tweet

    async def by_ids(self, tweet_ids: Sequence[int]) -> dict[int, Tweet]:
        if not tweet_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM tweets WHERE id = ANY(%s)", (list(tweet_ids),))
            return {int(r[0]): _tweet(r) for r in await cur.fetchall()}

    async def by_author(self, author_id: int, before: int | None, limit: int) -> list[Tweet]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM tweets WHERE author_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
                (author_id, _NO_UPPER_BOUND if before is None else before, limit),
            )
            return [_tweet(r) for r in await cur.fetchall()]

    async def ids_by_authors(
        self, author_ids: Sequence[int], before: int | None, after: int | None, limit: int
    ) -> list[tuple[int, int]]:
        """The newest `limit` (tweet id, author id) pairs of any of the authors in the id window.
        Each author contributes at most `limit` rows through its own index range, so the work is
        bounded by authors x limit however long their histories are."""
        if not author_ids:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT t.id, t.author_id FROM unnest(%s::bigint[]) AS a(author_id)"
                " CROSS JOIN LATERAL (SELECT id, author_id FROM tweets"
                "   WHERE author_id = a.author_id AND id < %s AND id > %s ORDER BY id DESC LIMIT %s) t"
                " ORDER BY t.id DESC LIMIT %s",
                (
                    list(author_ids),
                    _NO_UPPER_BOUND if before is None else before,
                    -1 if after is None else after,
                    limit,
                    limit,
                ),
            )
            return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]

    async def tweet_counts(self, author_ids: Sequence[int]) -> dict[int, int]:
        if not author_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT author_id, tweets_count FROM author_stats WHERE author_id = ANY(%s)",
                (list(author_ids),),
            )
            return {int(r[0]): int(r[1]) for r in await cur.fetchall()}
