"""The benchmark's bulk setup against real PostgreSQL and Redis: the load leaves the schema the
migrations made (its indexes and keys are dropped for the COPY and made again), with every row in
and all-visible; the home timelines it writes in bulk are, byte for byte, what a rebuild leaves."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import numpy as np
import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg import sql

from bench import dataset
from devstack.mesh import Mesh
from meshkit.migrate import migrate
from social.timelines import TimelineStore

SIZE = dataset.SIZES["tiny"]


@pytest.fixture
def empty_database(mesh: Mesh) -> Iterator[str]:
    """A database of its own on the test mesh's PostgreSQL, migrated and empty."""
    name = f"bench_load_{secrets.token_hex(4)}"
    admin = psycopg.conninfo.make_conninfo(mesh.database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = psycopg.conninfo.make_conninfo(mesh.database_url, dbname=name)
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def schema_of(url: str) -> set[tuple[str, ...]]:
    """Every index and constraint of the services' tables, as the catalog defines them."""
    with psycopg.connect(url) as conn:
        indexes = conn.execute(
            "SELECT 'index', schemaname, tablename, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname IN ('users', 'tweets')"
        ).fetchall()
        constraints = conn.execute(
            "SELECT 'constraint', n.nspname, c.conrelid::regclass::text, c.conname,"
            " pg_get_constraintdef(c.oid) || ' valid: ' || c.convalidated"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname IN ('users', 'tweets')"
        ).fetchall()
    return {tuple(str(v) for v in row) for row in [*indexes, *constraints]}


def test_the_load_keeps_the_migrations_schema_and_leaves_the_rows_all_visible(empty_database: str) -> None:
    data = dataset.generate(SIZE)
    migrated = schema_of(empty_database)
    assert any("follows_by_followee" in row[3] for row in migrated)
    phases = dataset.Phases()
    dataset.load_postgres(data, empty_database, phases)
    assert schema_of(empty_database) == migrated
    assert {"COPY users", "COPY follows", "COPY tweets", "ANALYZE"} <= phases.seconds.keys()
    assert any(name.startswith("users.follows: index") for name in phases.seconds)
    with psycopg.connect(empty_database) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM users.users), (SELECT count(*) FROM users.follows),"
            " (SELECT count(*) FROM tweets.tweets)"
        ).fetchone()
        assert counts == (SIZE.users, len(data.follower), len(data.tweet_ids))
        # The binary COPY wrote each follow between the right two users.
        user = int(np.argmax(data.following_count))
        followees = conn.execute(
            "SELECT followee_id FROM users.follows WHERE follower_id = %s ORDER BY followee_id",
            (int(data.user_ids[user]),),
        ).fetchall()
        expected = sorted(int(data.user_ids[f]) for f in data.followee[data.follower == user])
        assert [f for (f,) in followees] == expected
        # COPY FREEZE: every page all-visible at once (index-only scans need no VACUUM first).
        for table in ("users.follows", "tweets.tweets", "users.users"):
            pages, visible = conn.execute(
                "SELECT relpages, relallvisible FROM pg_class WHERE oid = %s::regclass", (table,)
            ).fetchone() or (0, -1)
            assert pages > 0
            assert visible == pages, table
    sizes = dataset.postgres_bytes(empty_database)
    assert sizes["users.follows"]["table"] > 0
    assert sizes["users.follows"]["indexes"] > 0


@pytest.fixture
async def redis(mesh: Mesh) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(mesh.redis_url)
    yield client
    await client.aclose()


@pytest.mark.parametrize(("max_entries", "trims"), [(4, True), (40, True), (800, False)])
async def test_timelines_written_in_bulk_equal_the_rebuilt_ones(
    redis: aioredis.Redis, max_entries: int, trims: bool
) -> None:
    """Against the rebuild's own script, fed as the benchmark fed it per user before: their tweets
    and those of the non-celebrities they follow, the newest max_entries, and the markers of the
    celebrities they follow (which, past max_entries, make the rebuild trim)."""
    data = dataset.generate(SIZE)
    celebrity = data.followers_count >= 100
    assert 0 < celebrity.sum() < SIZE.users
    prefix = f"benchtest{secrets.token_hex(4)}"
    bulk, rebuilt = (
        TimelineStore(
            redis, max_entries, 3600, key_prefix=f"{prefix}{kind}", channel_prefix=f"{prefix}{kind}:"
        )
        for kind in ("bulk", "rebuilt")
    )
    try:
        entries = await dataset.warm_home_timelines(data, bulk, np.arange(SIZE.users), celebrity)
        trimmed = 0
        for user in range(SIZE.users):
            followed = data.followee[data.follower == user].tolist()
            sources = [user, *(f for f in followed if not celebrity[f])]
            newest = sorted(data.tweet_ids[np.isin(data.tweet_authors, sources)].tolist())[-max_entries:]
            marked = [int(data.user_ids[f]) for f in followed if celebrity[f]]
            trimmed += len(newest) + len(marked) > max_entries
            begun = await rebuilt.begin_rebuild(int(data.user_ids[user]))
            assert await rebuilt.finish_rebuild(int(data.user_ids[user]), newest, marked, begun)
        held = 0
        for user_id in data.user_ids.tolist():
            assert await redis.get(bulk.key(user_id)) == await redis.get(rebuilt.key(user_id)), user_id
            assert 0 < await redis.ttl(bulk.key(user_id)) <= 3600
            snapshot = await bulk.read(user_id, touch=False)
            assert snapshot is not None and not snapshot.rebuilding and not snapshot.complete
            held += len(snapshot.tweet_ids)
        assert entries == held > 0
        assert (trimmed > 0) == trims  # the case went through the trim, or did not
    finally:
        for store in (bulk, rebuilt):
            await redis.delete(*(store.key(u) for u in data.user_ids.tolist()))
