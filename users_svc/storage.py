"""users_svc's SQL (schema `users`), its Redis session cache and its cache of users
(social.caches); nothing else writes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
import redis.asyncio as aioredis
import redis.exceptions
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from mail import TokenPurpose, TokenRecord
from mail.postgres import PostgresMailQueue, enqueue
from meshkit.auth import Session, cache_key, cache_session, revoke_cached, session_cache_entry
from meshkit.errors import DEPENDENCY_ERRORS, not_found
from meshkit.outbox import Event, Outbox
from meshkit.ratelimit import RateLimiter
from meshkit.reads import Reads
from meshkit.settings import Rate
from meshkit.status import within
from social import ACCOUNTS_STREAM, FOLLOWS_STREAM, Relation
from social.caches import OwnerCache, live, stale, user_key
from users_svc.mailing import CheckToken
from users_svc.service import (
    Blocked,
    ComposeMail,
    Credentials,
    EmailTaken,
    HandleTaken,
    NewAddress,
    TokenMail,
    User,
)
from users_svc.suggestions import Candidate

log = logging.getLogger(__name__)
# Anything Redis may answer to a cache write, and its being down or slow.
_CACHE_WRITE_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, *DEPENDENCY_ERRORS)
# A fill of the session cache not answered within this is given up (the next lookup fills it).
CACHE_WRITE_SECONDS = 2.0

# Sent and given-up mails are kept this long for operators (envelope, times, last error; no body).
MAIL_KEPT = timedelta(days=7)
# Tokens are kept this long past their expiry (a late click still says "expired", not "unknown").
TOKENS_KEPT = timedelta(days=1)
TIDY_SECONDS = 3600.0
# Follows ended per transaction when a deleted account's graph is erased.
ERASE_BATCH = 500

_USER_COLUMNS = (
    "id, handle, display_name, create_time, followers_count, following_count, bio, email,"
    " email_verify_time IS NOT NULL"
)
_USER_WIDTH = 9
# A live (not deleted) account: every read of accounts has it (DeleteUser hides one at once).
_LIVE = "delete_time IS NULL"
_TOKEN_COLUMNS = "token_hash, purpose, user_id, address_key, create_time, expire_time, use_time"


def _user(row: Sequence[Any]) -> User:
    return User(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        int(row[4]),
        int(row[5]),
        bio=row[6],
        email=row[7],
        email_verified=bool(row[8]),
    )


def _token(row: Sequence[Any] | None) -> TokenRecord | None:
    if row is None:
        return None
    return TokenRecord(bytes(row[0]), TokenPurpose(row[1]), int(row[2]), row[3], row[4], row[5], row[6])


def _taken(error: psycopg.errors.UniqueViolation, handle: str) -> Exception:
    """HandleTaken or EmailTaken, by the unique index the insert or update ran into."""
    if error.diag.constraint_name == "users_email_key":
        return EmailTaken()
    return HandleTaken(handle)


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
        follow_event: Callable[[int, int, bool, int], bytes],
        cache: UserCache,
        account_event: Callable[[int], bytes],
        handle_grace: timedelta = timedelta(days=30),
        reads: Reads | None = None,
    ) -> None:
        self._pool = pool
        # The reads that may show a moment-old state go through `reads` (the replica, when there is
        # one): the user search and the most followed accounts (who-to-follow's filler, itself
        # refreshed every SUGGESTIONS_POPULAR_SECONDS). Both give ids that are then read from the
        # primary (users_by_id, followed_among), so a deleted account or a followed one never
        # shows; a change may only reach them a moment late. Everything else (sign-in, sessions,
        # the follow graph fan-out and rebuilds read, one's own profile) stays on the primary.
        self._reads = reads or Reads(pool)
        self._outbox = outbox
        # Build the serialized FollowEvent and AccountEvent (a deletion); passed in so that only
        # server.py imports *_pb2.
        self._follow_event = follow_event
        self._account_event = account_event
        self._cache = cache
        # How long a deleted account's handle stays reserved.
        self._handle_grace = handle_grace

    async def insert_user(
        self, handle: str, display_name: str, password_hash: str, address: NewAddress | None = None
    ) -> User:
        email = address.email if address is not None else None
        try:
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                # A deleted account's handle is released once its grace period is over.
                await cur.execute(
                    "UPDATE users SET handle = NULL WHERE lower(handle) = lower(%s)"
                    " AND delete_time < now() - %s",
                    (handle, self._handle_grace),
                )
                await cur.execute(
                    "INSERT INTO users (handle, display_name, password_hash, email, email_key)"
                    f" VALUES (%s, %s, %s, %s, %s) RETURNING {_USER_COLUMNS}",
                    (
                        handle,
                        display_name,
                        password_hash,
                        email.address if email else None,
                        email.key if email else None,
                    ),
                )
                row = await cur.fetchone()
                assert row is not None
                user = _user(row)
                if address is not None:
                    await self._queue_token_mail(cur, address.compose(user))
        except psycopg.errors.UniqueViolation as error:
            raise _taken(error, handle) from None
        return user

    async def _queue_token_mail(self, cur: psycopg.AsyncCursor[Any], token_mail: TokenMail) -> None:
        """Stores the token and queues its mail, in the caller's transaction; the mail is given up
        once the token has expired."""
        record = token_mail.record
        await cur.execute(
            f"INSERT INTO account_tokens ({_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                record.token_hash,
                record.purpose.value,
                record.account_id,
                record.address_key,
                record.create_time,
                record.expire_time,
                record.use_time,
            ),
        )
        await enqueue(cur, token_mail.mail, discard_time=record.expire_time)

    async def credentials(self, handle: str) -> Credentials | None:
        return await self._credentials("lower(handle) = lower(%s)", handle)

    async def credentials_by_email(self, email_key: str) -> Credentials | None:
        return await self._credentials("email_key = %s AND email_verify_time IS NOT NULL", email_key)

    async def _credentials(self, where: str, value: str) -> Credentials | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE {where} AND {_LIVE}", (value,)
            )
            row = await cur.fetchone()
        return Credentials(_user(row), row[_USER_WIDTH]) if row else None

    # -- email addresses and mailed tokens (users_svc.mailing) ----------------------------------

    async def change_email(self, user_id: int, address: NewAddress | None) -> None:
        email = address.email if address is not None else None
        try:
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    "UPDATE users SET email = %s, email_key = %s, email_verify_time = NULL"
                    f" WHERE id = %s RETURNING {_USER_COLUMNS}",
                    (email.address if email else None, email.key if email else None, user_id),
                )
                row = await cur.fetchone()
                if row is not None and address is not None:
                    await self._queue_token_mail(cur, address.compose(_user(row)))
        except psycopg.errors.UniqueViolation as error:
            raise _taken(error, "") from None

    async def mail_token(self, user_id: int, compose: ComposeMail) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s FOR UPDATE", (user_id,))
            row = await cur.fetchone()
            if row is None:
                raise not_found("user", str(user_id), "user_id")
            await self._queue_token_mail(cur, compose(_user(row)))

    async def account_with_verified_email(self, email_key: str) -> int | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM users WHERE email_key = %s AND email_verify_time IS NOT NULL", (email_key,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def _use_token(
        self, cur: psycopg.AsyncCursor[Any], digest: bytes, check: CheckToken
    ) -> TokenRecord:
        """Locks the token and its account, checks it against the account's address now, and
        marks it used (all in the caller's transaction)."""
        await cur.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM account_tokens WHERE token_hash = %s FOR UPDATE", (digest,)
        )
        record = _token(await cur.fetchone())
        address_key = None
        if record is not None:
            await cur.execute("SELECT email_key FROM users WHERE id = %s FOR UPDATE", (record.account_id,))
            found = await cur.fetchone()
            address_key = found[0] if found else None
        used = check(record, address_key)
        await cur.execute(
            "UPDATE account_tokens SET use_time = %s WHERE token_hash = %s", (used.use_time, digest)
        )
        return used

    async def verify_email(self, digest: bytes, check: CheckToken) -> int:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            used = await self._use_token(cur, digest, check)
            await cur.execute(
                "UPDATE users SET email_verify_time = coalesce(email_verify_time, now())"
                " WHERE id = %s AND email_key = %s",
                (used.account_id, used.address_key),
            )
            return used.account_id

    async def reset_password(self, digest: bytes, check: CheckToken, password_hash: str) -> list[bytes]:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            used = await self._use_token(cur, digest, check)
            await cur.execute(
                "UPDATE account_tokens SET use_time = %s"
                " WHERE user_id = %s AND purpose = %s AND use_time IS NULL",
                (used.use_time, used.account_id, TokenPurpose.RESET_PASSWORD.value),
            )
            revoked, events = await self._replace_password(cur, used.account_id, password_hash)
        await self._outbox.relay(events)
        return revoked

    async def users_by_id(self, user_ids: Sequence[int]) -> dict[int, User]:
        if not user_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS}, version FROM users WHERE id = ANY(%s) AND {_LIVE}",
                (list(user_ids),),
            )
            rows = [(_user(r), int(r[_USER_WIDTH])) for r in await cur.fetchall()]
        await self._cache.shown(rows)  # a reader's miss is rebuilt here
        return {user.user_id: user for user, _ in rows}

    async def user_by_handle(self, handle: str) -> User | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(handle) = lower(%s) AND {_LIVE}", (handle,)
            )
            row = await cur.fetchone()
        return _user(row) if row else None

    async def users_by_handles(self, handles: Sequence[str]) -> list[User]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(handle) = ANY(%s) AND {_LIVE}",
                ([h.lower() for h in handles],),
            )
            return [_user(r) for r in await cur.fetchall()]

    async def update_profile(
        self, user_id: int, display_name: str | None, bio: str | None
    ) -> tuple[str, str] | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE users SET display_name = coalesce(%s, display_name), bio = coalesce(%s, bio)"
                " WHERE id = %s RETURNING version, display_name, bio",
                (display_name, bio, user_id),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        await self._cache.changed({user_id: int(row[0])})
        return str(row[1]), str(row[2])

    async def search(
        self, prefix: str, after: tuple[bool, str, int] | None, limit: int
    ) -> list[tuple[bool, str, int]]:
        """Handle matches in handle order, then display-name matches (that are not handle matches)
        in (name, id) order: two keyset index range scans (users_handle_prefix, users_name_prefix)."""
        pattern = _like_prefix(prefix)

        async def read(conn: psycopg.AsyncConnection[Any]) -> list[tuple[bool, str, int]]:
            by_name, key, user_id = after if after is not None else (False, "", -1)
            rows: list[tuple[bool, str, int]] = []
            if not by_name:
                cur = await conn.execute(
                    'SELECT lower(handle), id FROM users WHERE lower(handle) COLLATE "C" LIKE %s'
                    f' AND lower(handle) COLLATE "C" > %s AND {_LIVE}'
                    ' ORDER BY lower(handle) COLLATE "C" LIMIT %s',
                    (pattern, key, limit),
                )
                rows = [(False, r[0], int(r[1])) for r in await cur.fetchall()]
                key, user_id = "", -1
            if len(rows) < limit:
                cur = await conn.execute(
                    "SELECT lower(display_name), id FROM users"
                    ' WHERE lower(display_name) COLLATE "C" LIKE %s'
                    ' AND lower(handle) COLLATE "C" NOT LIKE %s'
                    f" AND {_LIVE}"
                    ' AND (lower(display_name) COLLATE "C", id) > (%s, %s)'
                    ' ORDER BY lower(display_name) COLLATE "C", id LIMIT %s',
                    (pattern, pattern, key, user_id, limit - len(rows)),
                )
                rows += [(True, r[0], int(r[1])) for r in await cur.fetchall()]
            return rows

        return await self._reads.run(read)

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT follower_id FROM follows WHERE followee_id = %s AND follower_id = ANY(%s)",
                (user_id, list(candidates)),
            )
            return [int(r[0]) for r in await cur.fetchall()]

    async def friends_of_friends(
        self, user_id: int, sample: int, fan_in: int, excluded: Sequence[int], limit: int
    ) -> list[Candidate]:
        """Accounts followed by the user's `sample` most recent followees (`fan_in` most recent
        follows of each), most of them first (then more followers, then newest account); never the
        user, whom it follows, nor `excluded`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH mine AS (SELECT followee_id FROM follows WHERE follower_id = %(user)s"
                "  ORDER BY id DESC LIMIT %(sample)s),"
                " theirs AS (SELECT f.followee_id AS candidate, count(*) AS followed_by FROM mine m"
                "  CROSS JOIN LATERAL (SELECT followee_id FROM follows WHERE follower_id = m.followee_id"
                "   ORDER BY id DESC LIMIT %(fan_in)s) f"
                "  WHERE f.followee_id <> %(user)s AND NOT f.followee_id = ANY(%(excluded)s)"
                "  GROUP BY f.followee_id)"
                " SELECT t.candidate, t.followed_by FROM theirs t JOIN users u ON u.id = t.candidate"
                " WHERE u.delete_time IS NULL AND NOT EXISTS (SELECT 1 FROM follows x"
                "  WHERE x.follower_id = %(user)s AND x.followee_id = t.candidate)"
                " ORDER BY t.followed_by DESC, u.followers_count DESC, u.id DESC LIMIT %(limit)s",
                {
                    "user": user_id,
                    "sample": sample,
                    "fan_in": fan_in,
                    "excluded": list(excluded),
                    "limit": limit,
                },
            )
            return [Candidate(int(r[0]), int(r[1])) for r in await cur.fetchall()]

    async def most_followed(self, limit: int) -> list[int]:
        async def read(conn: psycopg.AsyncConnection[Any]) -> list[int]:
            cur = await conn.execute(
                f"SELECT id FROM users WHERE {_LIVE} ORDER BY followers_count DESC, id DESC LIMIT %s",
                (limit,),
            )
            return [int(r[0]) for r in await cur.fetchall()]

        return await self._reads.run(read)

    async def followed_among(self, user_id: int, candidates: Sequence[int]) -> set[int]:
        """The candidates the user follows."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT followee_id FROM follows WHERE follower_id = %s AND followee_id = ANY(%s)",
                (user_id, list(candidates)),
            )
            return {int(r[0]) for r in await cur.fetchall()}

    async def create_session(self, digest: bytes, user_id: int, expire_time: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expire_time) VALUES (%s, %s, %s)",
                (digest, user_id, expire_time),
            )

    async def sessions(self, digests: Sequence[bytes]) -> dict[bytes, Session]:
        if not digests:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT token_hash, user_id, expire_time FROM sessions WHERE token_hash = ANY(%s)",
                (list(digests),),
            )
            rows = await cur.fetchall()
        return {bytes(row[0]): Session(int(row[1]), row[2]) for row in rows}

    async def delete_session(self, digest: bytes) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("DELETE FROM sessions WHERE token_hash = %s RETURNING token_hash", (digest,))
            events = await self._revoke(cur, [bytes(row[0]) for row in await cur.fetchall()])
        await self._outbox.relay(events)

    async def replace_password(self, user_id: int, password_hash: str) -> list[bytes]:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            revoked, events = await self._replace_password(cur, user_id, password_hash)
        await self._outbox.relay(events)
        return revoked

    async def _replace_password(
        self, cur: psycopg.AsyncCursor[Any], user_id: int, password_hash: str
    ) -> tuple[list[bytes], list[Event]]:
        """The new hash, and every session of the user deleted and revoked; their digests and the
        revocation to relay after the commit."""
        await cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))
        await cur.execute("DELETE FROM sessions WHERE user_id = %s RETURNING token_hash", (user_id,))
        revoked = [bytes(row[0]) for row in await cur.fetchall()]
        return revoked, await self._revoke(cur, revoked)

    async def _revoke(self, cur: psycopg.AsyncCursor[Any], digests: Sequence[bytes]) -> list[Event]:
        """Records, in the transaction that deletes them, the revocation of sessions' cache entries
        (meshkit.auth: their tombstones), which the outbox writes until Redis takes it."""
        if not digests:
            return []
        return [await self._outbox.add(cur, SESSION_REVOCATIONS, b"".join(digests))]

    async def follow(self, follower_id: int, followee_id: int) -> None:
        """Blocked (with the relation) when either blocks the other."""
        versions: dict[int, int] = {}
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The two users' rows are locked first (in id order), so a block between them either
            # commits before this reads the blocks or waits for this follow and ends it.
            await self._lock_users(cur, follower_id, followee_id)
            relation = await self._blocks_between(cur, follower_id, followee_id)
            if relation:
                raise Blocked(relation)
            event = await self._change_edge(cur, follower_id, followee_id, following=True, versions=versions)
        await self._edges_changed([event] if event else [], versions)

    async def unfollow(self, follower_id: int, followee_id: int) -> None:
        versions: dict[int, int] = {}
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await self._lock_users(cur, follower_id, followee_id)
            event = await self._change_edge(cur, follower_id, followee_id, following=False, versions=versions)
        await self._edges_changed([event] if event else [], versions)

    async def _edges_changed(self, events: list[Event], versions: dict[int, int]) -> None:
        """After a commit that changed follows: their events relayed, the users' cache entries stale."""
        await self._outbox.relay(events)
        await self._cache.changed(versions)

    @staticmethod
    async def _lock_users(cur: psycopg.AsyncCursor[Any], *user_ids: int) -> None:
        """Locks the users' rows, always in id order, so concurrent changes between the same users
        cannot deadlock; NOT_FOUND if one is deleted. A deletion updates its row first: a change
        racing it either commits before it (and is erased after it) or sees it here."""
        await cur.execute(
            f"SELECT id FROM users WHERE id = ANY(%s) AND {_LIVE} ORDER BY id FOR NO KEY UPDATE",
            (list(user_ids),),
        )
        if missing := set(user_ids) - {int(r[0]) for r in await cur.fetchall()}:
            raise not_found("user", str(min(missing)), "user_id")

    async def _change_edge(
        self,
        cur: psycopg.AsyncCursor[Any],
        follower_id: int,
        followee_id: int,
        *,
        following: bool,
        versions: dict[int, int],
    ) -> Event | None:
        """Adds or removes the edge (the users locked); the counts and the event change only if the
        edge did. Returns the event, to relay after the commit; the users' new row versions go into
        `versions`, for their cache entries to go stale after it."""
        delta = 1 if following else -1
        change = (
            "INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id"
            if following
            else "DELETE FROM follows WHERE follower_id = %s AND followee_id = %s RETURNING id"
        )
        await cur.execute(change, (follower_id, followee_id))
        if (edge := await cur.fetchone()) is None:
            return None
        for user_id in sorted((follower_id, followee_id)):
            column = "following_count" if user_id == follower_id else "followers_count"
            await cur.execute(
                f"UPDATE users SET {column} = {column} + %s WHERE id = %s RETURNING version", (delta, user_id)
            )
            versions[user_id] = int((await cur.fetchone() or [0])[0])
        return await self._outbox.add(
            cur, FOLLOWS_STREAM, self._follow_event(follower_id, followee_id, following, int(edge[0]))
        )

    # -- account deletion ---------------------------------------------------------------------------

    async def delete_account(self, user_id: int) -> list[bytes]:
        """Marks the account deleted (hidden from every read from the commit on), erases its email
        address, password, profile and mailed tokens, deletes its sessions and records its
        AccountEvent, in one transaction; the digests of the sessions deleted. The rest of the
        account goes through the event (erase_graph here, and the other owners' erasers)."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "UPDATE users SET delete_time = now(), email = NULL, email_key = NULL,"
                " email_verify_time = NULL, password_hash = '', display_name = '', bio = ''"
                f" WHERE id = %s AND {_LIVE} RETURNING version",
                (user_id,),
            )
            if (row := await cur.fetchone()) is None:
                raise not_found("user", str(user_id), "user_id")
            await cur.execute("DELETE FROM account_tokens WHERE user_id = %s", (user_id,))
            await cur.execute("DELETE FROM sessions WHERE user_id = %s RETURNING token_hash", (user_id,))
            revoked = [bytes(r[0]) for r in await cur.fetchall()]
            events = [
                *await self._revoke(cur, revoked),
                await self._outbox.add(cur, ACCOUNTS_STREAM, self._account_event(user_id)),
            ]
        await self._outbox.relay(events)
        await self._cache.changed({user_id: int(row[0])})
        return revoked

    async def is_deleted(self, user_id: int) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT delete_time IS NOT NULL FROM users WHERE id = %s", (user_id,))
            row = await cur.fetchone()
        return bool(row and row[0])

    async def erase_graph(self, user_id: int, batch: int = ERASE_BATCH) -> set[int]:
        """Ends every follow of a deleted account, both ways, `batch` at a time (each in its own
        transaction, with the others' counts and the FollowEvents of the unfollows, as an unfollow
        does), then its blocks and mutes; the accounts whose relations changed. Idempotent: run
        again, it finds what is left."""
        while True:
            versions: dict[int, int] = {}
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    "SELECT follower_id, followee_id FROM follows WHERE follower_id = %s"
                    " UNION ALL (SELECT follower_id, followee_id FROM follows WHERE followee_id = %s)"
                    " LIMIT %s",
                    (user_id, user_id, batch),
                )
                edges = [(int(f), int(e)) for f, e in await cur.fetchall()]
                if not edges:
                    break
                # The same lock order as every change of follows (the account's own row included).
                await cur.execute(
                    "SELECT id FROM users WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                    (sorted({u for edge in edges for u in edge}),),
                )
                events = [
                    event
                    for follower, followee in edges
                    if (
                        event := await self._change_edge(
                            cur, follower, followee, following=False, versions=versions
                        )
                    )
                ]
            await self._edges_changed(events, versions)
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            others: set[int] = set()
            for table, actor, subject in (
                ("blocks", "blocker_id", "blocked_id"),
                ("mutes", "muter_id", "muted_id"),
            ):
                await cur.execute(
                    f"DELETE FROM {table} WHERE {actor} = %(user)s OR {subject} = %(user)s"
                    f" RETURNING CASE WHEN {actor} = %(user)s THEN {subject} ELSE {actor} END",
                    {"user": user_id},
                )
                others |= {int(r[0]) for r in await cur.fetchall()}
            if others:
                await cur.execute(
                    "SELECT id FROM users WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (sorted(others),)
                )
                await cur.execute(
                    "UPDATE users SET relations_version = relations_version + 1 WHERE id = ANY(%s)",
                    (sorted(others),),
                )
        return others

    # -- blocks and mutes --------------------------------------------------------------------------

    @staticmethod
    async def _blocks_between(cur: psycopg.AsyncCursor[Any], user_id: int, other_id: int) -> Relation:
        await cur.execute(
            "SELECT blocker_id FROM blocks WHERE (blocker_id, blocked_id) IN ((%s, %s), (%s, %s))",
            (user_id, other_id, other_id, user_id),
        )
        relation = Relation.NONE
        for (blocker,) in await cur.fetchall():
            relation |= Relation.BLOCKS if int(blocker) == user_id else Relation.BLOCKED_BY
        return relation

    async def block(self, blocker_id: int, blocked_id: int) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await self._lock_users(cur, blocker_id, blocked_id)
            events = []
            versions: dict[int, int] = {}
            if await self._change_relation(cur, "blocks", blocker_id, blocked_id, on=True, both=True):
                for follower, followee in ((blocker_id, blocked_id), (blocked_id, blocker_id)):
                    edge = await self._change_edge(
                        cur, follower, followee, following=False, versions=versions
                    )
                    if edge:
                        events.append(edge)
        await self._edges_changed(events, versions)

    async def unblock(self, blocker_id: int, blocked_id: int) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await self._lock_users(cur, blocker_id, blocked_id)
            await self._change_relation(cur, "blocks", blocker_id, blocked_id, on=False, both=True)

    async def mute(self, muter_id: int, muted_id: int) -> None:
        await self._mute(muter_id, muted_id, on=True)

    async def unmute(self, muter_id: int, muted_id: int) -> None:
        await self._mute(muter_id, muted_id, on=False)

    async def _mute(self, muter_id: int, muted_id: int, *, on: bool) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await self._lock_users(cur, muter_id, muted_id)
            await self._change_relation(cur, "mutes", muter_id, muted_id, on=on, both=False)

    @staticmethod
    async def _change_relation(
        cur: psycopg.AsyncCursor[Any], table: str, user_id: int, other_id: int, *, on: bool, both: bool
    ) -> bool:
        """Adds (`on`) or removes the row of `table` (blocks or mutes); when it changed, bumps the
        relations version of the user, and of the other too if the relation is theirs as well
        (`both`: a block). Whether it changed."""
        actor, subject = ("blocker_id", "blocked_id") if table == "blocks" else ("muter_id", "muted_id")
        change = (
            f"INSERT INTO {table} ({actor}, {subject}) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1"
            if on
            else f"DELETE FROM {table} WHERE {actor} = %s AND {subject} = %s RETURNING 1"
        )
        await cur.execute(change, (user_id, other_id))
        if await cur.fetchone() is None:
            return False
        await cur.execute(
            "UPDATE users SET relations_version = relations_version + 1 WHERE id = ANY(%s)",
            ([user_id, other_id] if both else [user_id],),
        )
        return True

    async def blocked(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._id_pairs(
            "SELECT id, blocked_id FROM blocks WHERE blocker_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            user_id,
            before,
            limit,
        )

    async def muted(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._id_pairs(
            "SELECT id, muted_id FROM mutes WHERE muter_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            user_id,
            before,
            limit,
        )

    async def relations_of(self, user_id: int) -> tuple[int, dict[int, Relation]]:
        """The user's relations version, then every relation it has (read in that order: a change
        committed in between makes the version look old, never the relations)."""
        version = await self.relations_version(user_id)
        found: dict[int, Relation] = {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT blocked_id, 1 FROM blocks WHERE blocker_id = %s"
                " UNION ALL SELECT blocker_id, 2 FROM blocks WHERE blocked_id = %s"
                " UNION ALL SELECT muted_id, 4 FROM mutes WHERE muter_id = %s",
                (user_id, user_id, user_id),
            )
            for other, bit in await cur.fetchall():
                found[int(other)] = found.get(int(other), Relation.NONE) | Relation(int(bit))
        return version, found

    async def relations_version(self, user_id: int) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT relations_version FROM users WHERE id = %s", (user_id,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def followers(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._edges("followee_id", "follower_id", user_id, before, limit)

    async def following(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._edges("follower_id", "followee_id", user_id, before, limit)

    async def follow_state(self, follower_id: int, followee_id: int) -> tuple[bool, int]:
        """Whether follower_id follows followee_id, and followee_id's follower count (0 if unknown)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = %s AND followee_id = %s),"
                " COALESCE((SELECT followers_count FROM users WHERE id = %s), 0)",
                (follower_id, followee_id, followee_id),
            )
            row = await cur.fetchone()
        assert row is not None
        return bool(row[0]), int(row[1])

    async def followers_count(self, user_id: int) -> int:
        return (await self.follow_state(user_id, user_id))[1]

    async def followee_ids(self, user_id: int) -> set[int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT followee_id FROM follows WHERE follower_id = %s", (user_id,))
            return {int(r[0]) for r in await cur.fetchall()}

    async def _edges(
        self, by: str, other: str, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, int]]:
        """(follow id, other user id) pairs, newest follow first, below the `before` follow id."""
        return await self._id_pairs(
            f"SELECT id, {other} FROM follows WHERE {by} = %s AND id < %s ORDER BY id DESC LIMIT %s",
            user_id,
            before,
            limit,
        )

    async def _id_pairs(
        self, sql: str, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, int]]:
        """(row id, other user id) pairs of a list of `user_id`'s, below the `before` row id."""
        async with self._pool.connection() as conn:
            cur: psycopg.AsyncCursor[TupleRow] = await conn.execute(
                sql, (user_id, before if before is not None else 2**63 - 1, limit)
            )
            return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]


# The outbox's entries that revoke cached sessions (meshkit.outbox `writes`: Redis writes, not
# events): the SHA-256 digests of the sessions' tokens, one after the other.
SESSION_REVOCATIONS = "session-revocations"
_DIGEST_BYTES = 32


async def write_revocation(pipe: Any, entry: Event) -> None:
    """An outbox entry of SESSION_REVOCATIONS, as Redis writes in the relay's pipeline."""
    data = entry.payload
    revoke_cached(pipe, (data[n : n + _DIGEST_BYTES] for n in range(0, len(data), _DIGEST_BYTES)))


class RedisSessionCache:
    """The documented session cache (see meshkit.auth) that other services read, as users_svc
    fills it (its revocations go through the outbox: SESSION_REVOCATIONS). PostgreSQL is the truth:
    a fill may fail without failing the call, as a miss asks PostgreSQL; one not answered within
    CACHE_WRITE_SECONDS is given up."""

    def __init__(self, redis: aioredis.Redis, max_seconds: float) -> None:
        self._redis = redis
        self._max_seconds = max_seconds

    async def remember(self, token: str, session: Session) -> None:
        await self._best_effort(cache_session(self._redis, token, session, self._max_seconds), "cache")

    async def refill(self, sessions: Mapping[str, Session]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for token, session in sessions.items():
                if (entry := session_cache_entry(session, self._max_seconds)) is not None:
                    pipe.set(cache_key(token), entry[0], px=entry[1], nx=True)
            await self._best_effort(pipe.execute(), "cache")

    async def _best_effort(self, write: Awaitable[object], what: str) -> None:
        try:
            await within(CACHE_WRITE_SECONDS, write)
        except _CACHE_WRITE_ERRORS as error:
            log.warning(
                "session cache write lost; the next lookup asks PostgreSQL",
                extra={"what": what, "error": error, "within_seconds": CACHE_WRITE_SECONDS},
            )


class RedisMailBudget:
    """How many mails an account may be sent (users_svc.mailing.MailBudget): a GCRA bucket per
    account in Redis, `ratelimit:mail:user:<id>`, the same mechanism as the rate limits."""

    def __init__(self, redis: aioredis.Redis, rate: Rate) -> None:
        self._limiter = RateLimiter(redis, None)
        self._rate = rate

    async def allow(self, user_id: int) -> bool:
        return await self._limiter.charge([(f"ratelimit:mail:user:{user_id}", self._rate)]) == 0


async def tidy_mail(queue: PostgresMailQueue, pool: AsyncConnectionPool) -> None:
    """For ever, every TIDY_SECONDS: settled mails older than MAIL_KEPT and tokens expired more
    than TOKENS_KEPT ago are deleted."""
    while True:
        try:
            await queue.forget_settled(MAIL_KEPT)
            async with pool.connection() as conn:
                await conn.execute(
                    "DELETE FROM account_tokens WHERE expire_time < now() - make_interval(secs => %s)",
                    (TOKENS_KEPT.total_seconds(),),
                )
        except DEPENDENCY_ERRORS as error:
            log.warning("tidying mail failed; will retry", extra={"error": type(error).__name__})
        await asyncio.sleep(TIDY_SECONDS)
