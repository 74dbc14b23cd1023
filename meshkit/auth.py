"""Bearer tokens: how they are made and stored, and how any service finds the user behind one.

users_svc owns sessions (PostgreSQL, hashed). It also keeps a documented Redis cache,
`session:<sha256 of token>` -> `<user_id>:<expiry epoch seconds>`, with the session's TTL, written at
login and deleted at logout. Other services read that cache and, on a miss, ask users_svc
(AuthenticateToken), which refills it. Revocation is therefore immediate everywhere.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from meshkit.errors import DEPENDENCY_ERRORS, Unauthenticated

TOKEN_PREFIX = "tm_"
_TOKEN_PATTERN = re.compile(r"^tm_[A-Za-z0-9_-]{43}$")


# What grpc.aio's invocation_metadata() returns: (key, value) pairs, or None.
Metadata = Iterable[tuple[str, str | bytes]] | None


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    expire_time: datetime


def new_token() -> str:
    """256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What is stored instead of the token. A token has 256 bits of entropy, so a fast hash is
    enough (unlike passwords, it cannot be guessed from a dictionary)."""
    return hashlib.sha256(token.encode()).digest()


def digest_cache_key(digest: bytes) -> str:
    return "session:" + digest.hex()


def cache_key(token: str) -> str:
    return digest_cache_key(token_digest(token))


def bearer_token(metadata: Metadata) -> str:
    """The token in `authorization: Bearer <token>`, or UNAUTHENTICATED saying what is wrong."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if not values:
        raise Unauthenticated("authorization: a bearer token is required", reason="TOKEN_MISSING")
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not _TOKEN_PATTERN.match(token.strip()):
        raise Unauthenticated("authorization: expected 'Bearer <token>'", reason="TOKEN_MALFORMED")
    return token.strip()


async def cache_session(redis: aioredis.Redis, token: str, session: Session) -> None:
    ttl = int(session.expire_time.timestamp() - time.time())
    if ttl > 0:
        value = f"{session.user_id}:{int(session.expire_time.timestamp())}"
        await redis.set(cache_key(token), value, ex=ttl)


async def forget_session(redis: aioredis.Redis, token: str) -> None:
    await redis.delete(cache_key(token))


SessionLookup = Callable[[str], Awaitable[Session | None]]


class Authenticator:
    """Finds the user behind a bearer token: the Redis session cache first, then `lookup` (the
    owner's answer), which is expected to refill the cache."""

    def __init__(self, redis: aioredis.Redis, lookup: SessionLookup) -> None:
        self._redis = redis
        self._lookup = lookup

    async def session(self, metadata: Metadata) -> Session:
        token = bearer_token(metadata)
        try:
            cached: bytes | None = await self._redis.get(cache_key(token))  # type: ignore[assignment]
        except DEPENDENCY_ERRORS:
            cached = None  # the cache is down; the owner (users_svc, PostgreSQL) still knows
        if cached is not None:
            user_id, _, expiry = cached.decode().partition(":")
            session = Session(int(user_id), datetime.fromtimestamp(int(expiry), tz=UTC))
        else:
            found = await self._lookup(token)
            if found is None:
                raise Unauthenticated(
                    "authorization: the token is unknown, expired or revoked", reason="TOKEN_INVALID"
                )
            session = found
        if session.expire_time <= datetime.now(UTC):
            raise Unauthenticated("authorization: the token has expired", reason="TOKEN_EXPIRED")
        return session

    async def user_id(self, metadata: Metadata) -> int:
        return (await self.session(metadata)).user_id

    async def viewer(self, metadata: Metadata) -> int | None:
        """The user of a call that may be made signed in or not: None without an authorization
        header; with one, its user (a bad, expired or revoked token is UNAUTHENTICATED, never
        silently anonymous)."""
        if not any(key == "authorization" for key, _ in metadata or ()):
            return None
        return await self.user_id(metadata)
