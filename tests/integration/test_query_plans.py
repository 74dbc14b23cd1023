"""EXPLAIN of the queries the stores really run, on 100,000 tweets: index scans, no sequential
scans, no OFFSET. The rows are added in a transaction that is rolled back, so the shared test
database is left as it was."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from devstack.mesh import Mesh
from meshkit.outbox import Outbox
from tweets_svc.storage import PostgresTweetStore
from users_svc.storage import PostgresUserStore

TWEETS = 100_000
USERS = 20_000


class _NoRows:
    async def fetchall(self) -> list[Any]:
        return []

    async def fetchone(self) -> None:
        return None


class ExplainingConnection:
    """Stands in for a pooled connection: runs EXPLAIN of each query instead of the query."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self.plans: list[tuple[str, str]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> _NoRows:
        cur = await self._conn.execute(f"EXPLAIN {sql}", params)
        self.plans.append((sql, "\n".join(row[0] for row in await cur.fetchall())))
        return _NoRows()


class ExplainingPool:
    def __init__(self, conn: ExplainingConnection) -> None:
        self._conn = conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[ExplainingConnection]:
        yield self._conn


async def _fill(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SET LOCAL search_path TO tweets")
    await conn.execute(
        "INSERT INTO tweets (author_id, text, create_time)"
        " SELECT i %% 5000 + 1,"
        "        'word' || (i %% 7919) || ' about thing' || (i %% 101) || ' #tag' || (i %% 500),"
        "        now() FROM generate_series(1, %s) AS i",
        (TWEETS,),
    )
    await conn.execute(
        "INSERT INTO tweets (author_id, text, reply_to_id, reply_to_author_id)"
        " SELECT author_id % 5000 + 2, 'a reply', id, author_id FROM tweets ORDER BY id LIMIT 10000"
    )
    await conn.execute(
        "INSERT INTO hashtags (tweet_id, tag, position) SELECT id, 'tag' || (id % 500), 0 FROM tweets"
    )
    await conn.execute(
        "INSERT INTO mentions (tweet_id, user_id, handle, position)"
        " SELECT id, id % 5000 + 1, 'someone', 0 FROM tweets WHERE id % 3 = 0"
    )
    await conn.execute(
        "INSERT INTO likes (tweet_id, user_id) SELECT id, id % 5000 + 1 FROM tweets WHERE id % 2 = 0"
    )
    await conn.execute(
        "INSERT INTO bookmarks (tweet_id, user_id) SELECT id, id % 5000 + 1 FROM tweets WHERE id % 2 = 1"
    )
    await conn.execute(
        "INSERT INTO tweets (author_id, text, quote_of_id)"
        " SELECT author_id % 5000 + 3, 'a quote', id FROM tweets ORDER BY id DESC LIMIT 5000"
    )
    await conn.execute(
        "INSERT INTO tweet_versions (tweet_id, version_no, text, write_time)"
        " SELECT id, 0, 'before an edit', now() FROM tweets WHERE id % 10 = 0"
        # A tweet another test of the session edited has its version 0 already.
        " ON CONFLICT DO NOTHING"
    )
    await conn.execute(
        "INSERT INTO tweet_media (media_id, tweet_id, content_type, width, height, duration_ms, url,"
        " thumbnail_url) SELECT id, id, 'image/png', 1, 1, 0, '/v1/media/' || id, '' FROM tweets"
        " WHERE id % 5 = 0"
    )
    # Counts for those authors too: with only the suite's few rows, whether author_stats has
    # statistics (autovacuum's timing) decided between an index and a sequential scan.
    await conn.execute(
        "INSERT INTO author_stats (author_id, tweets_count)"
        " SELECT author_id, count(*) FROM tweets GROUP BY author_id ON CONFLICT (author_id) DO NOTHING"
    )
    for table in (
        "tweets",
        "hashtags",
        "mentions",
        "likes",
        "bookmarks",
        "author_stats",
        "tweet_versions",
        "tweet_media",
    ):
        await conn.execute(f"ANALYZE {table}")
    await conn.execute("SET LOCAL search_path TO users")
    await conn.execute(
        "INSERT INTO users (handle, display_name, password_hash)"
        " SELECT 'plan' || i, 'Plan User ' || i, 'x' FROM generate_series(1, %s) AS i",
        (USERS,),
    )
    await conn.execute(
        "INSERT INTO follows (follower_id, followee_id)"
        " SELECT a.id, b.id FROM users a JOIN users b ON b.id = a.id + 1 WHERE a.handle LIKE 'plan%%'"
    )
    for table in ("blocks", "mutes"):
        actor, subject = ("blocker_id", "blocked_id") if table == "blocks" else ("muter_id", "muted_id")
        await conn.execute(
            f"INSERT INTO {table} ({actor}, {subject})"
            " SELECT a.id, b.id FROM users a JOIN users b ON b.id = a.id + 2 WHERE a.handle LIKE 'plan%%'"
        )
    for table in ("users", "follows", "blocks", "mutes"):
        await conn.execute(f"ANALYZE {table}")


async def test_list_and_search_queries_use_indexes_on_100k_tweets(mesh: Mesh) -> None:
    conn = await psycopg.AsyncConnection.connect(mesh.database_url)
    async with conn, conn.transaction(force_rollback=True):
        await _fill(conn)
        explaining = ExplainingConnection(conn)
        pool: Any = ExplainingPool(explaining)

        await conn.execute("SET LOCAL search_path TO tweets")
        tweets = PostgresTweetStore(
            pool,
            Outbox(pool, None),  # type: ignore[arg-type]
            lambda change: b"",
            lambda change: b"",
            None,  # type: ignore[arg-type]
        )
        await tweets.by_author(42, None, 21)
        await tweets.replies(10, None, 21)
        await tweets.quotes(10, None, 21)
        await tweets.thread_up(10, 101)
        await tweets.thread_down(10, 42, 8, (), 21)
        await tweets.thread_down(10, 42, 8, (1, 12, 0, 15), 21)
        await tweets.bookmarked(42, None, 21)
        await tweets.liking_users(10, None, 21)
        await tweets.liked_tweets(42, None, 21)
        await tweets.mentioning(42, None, None, 21)
        await tweets.tagged("tag7", None, 21)
        await tweets.public(None, None, 21)
        await tweets.search("thing7 word12", None, 21)
        await tweets.search('"about thing7"', (0.1, 2**62), 21)
        await tweets.ids_by_authors([1, 2, 3, 4, 5], None, None, 100)
        await tweets.tweet_counts([1, 2, 3])
        await tweets.history(10)

        await conn.execute("SET LOCAL search_path TO users")
        users = PostgresUserStore(pool, Outbox(pool, None), lambda *args: b"", None, lambda user_id: b"")  # type: ignore[arg-type]
        await users.search("plan12", None, 21)
        await users.search("plan user 12", (True, "plan user 12", 0), 21)
        await users.followers(42, None, 21)
        await users.following(42, None, 21)
        await users.followers_among(42, list(range(1, 1000)))
        await users.blocked(42, None, 21)
        await users.muted(42, None, 21)
        await users.relations_of(42)  # its version, then its blocks both ways and its mutes

    assert len(explaining.plans) == 27
    for sql, plan in explaining.plans:
        assert "Seq Scan" not in plan, f"{sql}\n{plan}"
        assert "Index" in plan, f"{sql}\n{plan}"
        assert "OFFSET" not in sql.upper(), sql
