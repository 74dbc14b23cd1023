"""Bearer tokens: how they are made and stored, and how any service finds the user behind one.

users_svc owns sessions (PostgreSQL, hashed). It also keeps a documented Redis cache,
`session:<sha256 of token>` -> `<user_id>:<expiry epoch seconds>`, written at login and when a
lookup refills it (only where no entry is: SET NX), at most `max_seconds` (SESSION_CACHE_SECONDS,
300 s) and never past the session's expiry. Other services read that cache and, on a miss, ask
users_svc (AuthenticateTokens), which refills it.

A revocation (logout, password change or reset, account deletion) replaces the entries of the
sessions it deletes with a tombstone, `revoked`, that outlives any entry (REVOKED_SECONDS): a
reader refuses the token at once, and a refill that read PostgreSQL before the revocation cannot
bring the entry back (NX). The tombstones are written through users_svc's outbox, with the commit
of the delete: when Redis does not take them then (paused, failing over, users_svc dying after the
commit), the outbox sweeper writes them again until it does (OUTBOX_SWEEP_SECONDS).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as aioredis

from meshkit.errors import DEPENDENCY_ERRORS, Unauthenticated
from meshkit.shards import get_many

TOKEN_PREFIX = "tm_"
_TOKEN_PATTERN = re.compile(r"tm_[A-Za-z0-9_-]{43}")


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
    if scheme.lower() != "bearer" or not _TOKEN_PATTERN.fullmatch(token.strip()):
        raise Unauthenticated("authorization: expected 'Bearer <token>'", reason="TOKEN_MALFORMED")
    return token.strip()


# What a revoked session's cache entry holds, for longer than any live entry lives.
REVOKED = b"revoked"
REVOKED_SECONDS = 3600


def session_cache_entry(session: Session, max_seconds: float) -> tuple[str, int] | None:
    """The cache's value for a live session and its time to live in ms (at most `max_seconds`,
    never past its expiry); None when it has expired."""
    ttl_ms = int(min(session.expire_time.timestamp() - time.time(), max_seconds) * 1000)
    if ttl_ms <= 0:
        return None
    return f"{session.user_id}:{int(session.expire_time.timestamp())}", ttl_ms


async def cache_session(redis: aioredis.Redis, token: str, session: Session, max_seconds: float) -> None:
    """Caches a live session for at most `max_seconds` (never past its expiry), unless the cache
    holds an entry for it already (a revoked session's tombstone stays)."""
    if (entry := session_cache_entry(session, max_seconds)) is not None:
        await redis.set(cache_key(token), entry[0], px=entry[1], nx=True)


def revoke_cached(pipe: Any, digests: Iterable[bytes]) -> None:
    """Adds the tombstones of revoked sessions (by token digest) to a pipeline."""
    for digest in digests:
        pipe.setex(digest_cache_key(digest), REVOKED_SECONDS, REVOKED)


# The owner's answer for tokens the cache lacks: the sessions it knows, by token (users_svc's
# AuthenticateTokens); it refills the cache.
SessionLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, Session]]]


class CallContext(Protocol):
    """What authenticating a call reads of it: its metadata (a servicer context, or the kit's
    meshkit.interceptors.CallFacts, whose `memo` keeps what was found for the rest of the call)."""

    def invocation_metadata(self) -> Metadata: ...


def session_of(value: bytes) -> Session:
    """A session as the cache stores it (`<user_id>:<expiry epoch seconds>`); UNAUTHENTICATED for a
    revoked session's tombstone."""
    if value == REVOKED:
        raise Unauthenticated(
            "authorization: the token is unknown, expired or revoked", reason="TOKEN_INVALID"
        )
    user_id, _, expiry = value.decode().partition(":")
    return Session(int(user_id), datetime.fromtimestamp(int(expiry), tz=UTC))


def unexpired(session: Session | None) -> Session:
    """The session, or UNAUTHENTICATED when there is none or it has expired."""
    if session is None:
        raise Unauthenticated(
            "authorization: the token is unknown, expired or revoked", reason="TOKEN_INVALID"
        )
    if session.expire_time <= datetime.now(UTC):
        raise Unauthenticated("authorization: the token has expired", reason="TOKEN_EXPIRED")
    return session


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
            return unexpired(session_of(cached))
        return await self.from_owner(token)

    async def sessions(self, tokens: Sequence[str]) -> dict[str, Session | Exception]:
        """The sessions behind many tokens: one read of the cache for all, the owner asked once
        for those it lacks; a token's failure (UNAUTHENTICATED, the owner unreachable) is its answer."""
        try:
            # One MGET (one per node of a cluster).
            cached: list[bytes | None] = await get_many(self._redis, [cache_key(t) for t in tokens])
        except DEPENDENCY_ERRORS:
            cached = [None] * len(tokens)
        answers: dict[str, Session | Exception] = {}
        for token, value in zip(tokens, cached, strict=True):
            if value is not None:
                try:
                    answers[token] = unexpired(session_of(value))
                except Unauthenticated as error:
                    answers[token] = error
        missing = [t for t in tokens if t not in answers]
        if not missing:
            return answers
        try:
            known = await self._lookup(missing)
        except Exception as error:  # the owner unreachable: every token it was asked about
            return answers | dict.fromkeys(missing, error)
        for token in missing:
            try:
                answers[token] = unexpired(known.get(token))
            except Unauthenticated as error:
                answers[token] = error
        return answers

    async def from_owner(self, token: str) -> Session:
        """The session as its owner knows it (the cache missed it, or could not be read)."""
        return unexpired((await self._lookup([token])).get(token))

    async def caller(self, context: CallContext) -> Session:
        """The session of the call being served, checked once per call: the rate limits and the
        handler share the answer (kept in the call's memo when the context has one)."""
        if (known := self.known(context)) is not None:
            return known
        session = await self.session(context.invocation_metadata())
        self.remember(context, session)
        return session

    def known(self, context: CallContext) -> Session | None:
        """The session of the call found already by an earlier step of it, if any."""
        memo: dict[object, Any] | None = getattr(context, "memo", None)
        return None if memo is None else memo.get(self)

    def remember(self, context: CallContext, session: Session) -> None:
        """Keeps a valid session found for the call (by the rate limits, say) for its later steps."""
        memo: dict[object, Any] | None = getattr(context, "memo", None)
        if memo is not None:
            memo[self] = session

    async def caller_id(self, context: CallContext) -> int:
        return (await self.caller(context)).user_id

    async def user_id(self, metadata: Metadata) -> int:
        return (await self.session(metadata)).user_id

    async def viewer(self, metadata: Metadata) -> int | None:
        """The user of a call that may be made signed in or not: None without an authorization
        header; with one, its user (a bad, expired or revoked token is UNAUTHENTICATED, never
        silently anonymous)."""
        if not any(key == "authorization" for key, _ in metadata or ()):
            return None
        return await self.user_id(metadata)
