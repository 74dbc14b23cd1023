"""users_svc's SQL (schema `users`), its Redis session cache and its cache of users
(social.caches); nothing else writes them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from meshkit.auth import Session, cache_session, digest_cache_key, forget_session
from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.outbox import Outbox
from social import FOLLOWS_STREAM
from social.caches import OwnerCache, live, stale, user_key
from users_svc.service import Credentials, HandleTaken, User

_USER_COLUMNS = "id, handle, display_name, create_time, followers_count, following_count, bio"


def _user(row: Sequence[Any]) -> User:
    return User(int(row[0]), row[1], row[2], row[3], int(row[4]), int(row[5]), bio=row[6])


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with `prefix` literally."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class UserCache:
    """users_svc's cache (social.caches): `user:<id>` entries. Every read of users by id fills it;
    every commit that changes a user marks the entry stale at the row's new version."""

    def __init__(self, cache: OwnerCache, payload: Callable[[User], bytes]) -> None:
        self._cache = cache
        # Serializes a user without tweets_count (server.py: only it imports *_pb2).
        self._payload = payload

    async def shown(self, users: Iterable[tuple[User, int]]) -> None:
        """Users as read, each with its row's version."""
        await self._cache.put({user_key(u.user_id): live(v, self._payload(u)) for u, v in users})

    async def changed(self, versions: Mapping[int, int]) -> None:
        await self._cache.put({user_key(u): stale(v) for u, v in versions.items()})


class PostgresUserStore:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        outbox: Outbox,
        follow_event: Callable[[int, int, bool], bytes],
        cache: UserCache,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        # Builds the serialized FollowEvent; passed in so that only server.py imports *_pb2.
        self._follow_event = follow_event
        self._cache = cache

    async def insert_user(self, handle: str, display_name: str, password_hash: str) -> User:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    f"INSERT INTO users (handle, display_name, password_hash) VALUES (%s, %s, %s)"
                    f" RETURNING {_USER_COLUMNS}",
                    (handle, display_name, password_hash),
                )
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise HandleTaken(handle) from None
        assert row is not None
        return _user(row)

    async def credentials(self, handle: str) -> Credentials | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE lower(handle) = lower(%s)", (handle,)
            )
            row = await cur.fetchone()
        return Credentials(_user(row), row[7]) if row else None

    async def users_by_id(self, user_ids: Sequence[int]) -> dict[int, User]:
        if not user_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS}, version FROM users WHERE id = ANY(%s)", (list(user_ids),)
            )
            rows = [(_user(r), int(r[7])) for r in await cur.fetchall()]
        await self._cache.shown(rows)  # a reader's miss is rebuilt here
        return {user.user_id: user for user, _ in rows}

    async def user_by_handle(self, handle: str) -> User | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(handle) = lower(%s)", (handle,)
            )
            row = await cur.fetchone()
        return _user(row) if row else None

    async def users_by_handles(self, handles: Sequence[str]) -> list[User]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(handle) = ANY(%s)",
                ([h.lower() for h in handles],),
            )
            return [_user(r) for r in await cur.fetchall()]

    async def update_profile(self, user_id: int, display_name: str | None, bio: str | None) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE users SET display_name = coalesce(%s, display_name), bio = coalesce(%s, bio)"
                " WHERE id = %s RETURNING version",
                (display_name, bio, user_id),
            )
            row = await cur.fetchone()
        if row is not None:
            await self._cache.changed({user_id: int(row[0])})

    async def search(
        self, prefix: str, after: tuple[bool, str, int] | None, limit: int
    ) -> list[tuple[bool, str, int]]:
        """Handle matches in handle order, then display-name matches (that are not handle matches)
        in (name, id) order: two keyset index range scans (users_handle_prefix, users_name_prefix)."""
        pattern = _like_prefix(prefix)
        by_name, key, user_id = after if after is not None else (False, "", -1)
        rows: list[tuple[bool, str, int]] = []
        async with self._pool.connection() as conn:
            if not by_name:
                cur = await conn.execute(
                    'SELECT lower(handle), id FROM users WHERE lower(handle) COLLATE "C" LIKE %s'
                    ' AND lower(handle) COLLATE "C" > %s ORDER BY lower(handle) COLLATE "C" LIMIT %s',
                    (pattern, key, limit),
                )
                rows = [(False, r[0], int(r[1])) for r in await cur.fetchall()]
                key, user_id = "", -1
            if len(rows) < limit:
                cur = await conn.execute(
                    "SELECT lower(display_name), id FROM users"
                    ' WHERE lower(display_name) COLLATE "C" LIKE %s'
                    ' AND lower(handle) COLLATE "C" NOT LIKE %s'
                    ' AND (lower(display_name) COLLATE "C", id) > (%s, %s)'
                    ' ORDER BY lower(display_name) COLLATE "C", id LIMIT %s',
                    (pattern, pattern, key, user_id, limit - len(rows)),
                )
                rows += [(True, r[0], int(r[1])) for r in await cur.fetchall()]
        return rows

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT follower_id FROM follows WHERE followee_id = %s AND follower_id = ANY(%s)",
                (user_id, list(candidates)),
            )
            return [int(r[0]) for r in await cur.fetchall()]

    async def create_session(self, digest: bytes, user_id: int, expire_time: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expire_time) VALUES (%s, %s, %s)",
                (digest, user_id, expire_time),
            )

    async def session(self, digest: bytes) -> Session | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, expire_time FROM sessions WHERE token_hash = %s", (digest,)
            )
            row = await cur.fetchone()
        return Session(int(row[0]), row[1]) if row else None

    async def delete_session(self, digest: bytes) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (digest,))

    async def replace_password(self, user_id: int, password_hash: str) -> list[bytes]:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))
            cur = await conn.execute(
                "DELETE FROM sessions WHERE user_id = %s RETURNING token_hash", (user_id,)
            )
            return [bytes(row[0]) for row in await cur.fetchall()]

    async def follow(self, follower_id: int, followee_id: int) -> None:
        await self._change_follow(follower_id, followee_id, following=True)

    async def unfollow(self, follower_id: int, followee_id: int) -> None:
        await self._change_follow(follower_id, followee_id, following=False)

    async def _change_follow(self, follower_id: int, followee_id: int, *, following: bool) -> None:
        """Adds or removes the edge; counts and the event change only if the edge did, in one transaction."""
        delta = 1 if following else -1
        change = (
            "INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1"
            if following
            else "DELETE FROM follows WHERE follower_id = %s AND followee_id = %s RETURNING 1"
        )
        versions = {}
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(change, (follower_id, followee_id))
            if await cur.fetchone() is None:
                return
            # Always lock in id order so concurrent follows between the same users cannot deadlock.
            for user_id in sorted((follower_id, followee_id)):
                column = "following_count" if user_id == follower_id else "followers_count"
                await cur.execute(
                    f"UPDATE users SET {column} = {column} + %s WHERE id = %s RETURNING version",
                    (delta, user_id),
                )
                versions[user_id] = int((await cur.fetchone() or [0])[0])
            event = await self._outbox.add(
                cur, FOLLOWS_STREAM, self._follow_event(follower_id, followee_id, following)
            )
        await self._outbox.relay([event])
        await self._cache.changed(versions)

    async def followers(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._edges("followee_id", "follower_id", user_id, before, limit)

    async def following(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._edges("follower_id", "followee_id", user_id, before, limit)

    async def _edges(
        self, by: str, other: str, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, int]]:
        """(follow id, other user id) pairs, newest follow first, below the `before` follow id."""
        async with self._pool.connection() as conn:
            cur: psycopg.AsyncCursor[TupleRow] = await conn.execute(
                f"SELECT id, {other} FROM follows WHERE {by} = %s AND id < %s ORDER BY id DESC LIMIT %s",
                (user_id, before if before is not None else 2**63 - 1, limit),
            )
            return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]


class RedisSessionCache:
    """The documented session cache (see meshkit.auth) that other services read."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def remember(self, token: str, session: Session) -> None:
        await cache_session(self._redis, token, session)

    async def refill(self, token: str, session: Session) -> None:
        # A cache: PostgreSQL answered, and a later lookup refills it if Redis is down now.
        with contextlib.suppress(*DEPENDENCY_ERRORS):
            await cache_session(self._redis, token, session)

    async def forget(self, token: str) -> None:
        await forget_session(self._redis, token)

    async def forget_digests(self, digests: Sequence[bytes]) -> None:
        if digests:
            await self._redis.delete(*(digest_cache_key(d) for d in digests))
