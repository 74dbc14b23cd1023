"""users_svc's session rules on in-memory fakes: a revocation racing a cache refill still wins."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher

from meshkit.auth import Session, new_token
from meshkit.pagination import PageTokens
from tests.fakes import FakeSessionCache
from users_svc.passwords import PasswordHashing
from users_svc.service import Users


class RevokedDuringLookup:
    """A session store whose row is revoked right after the first read answers it: the row is
    deleted and the cache entry forgotten before the refill writes the cache, as a logout or a
    password change running between the two steps would."""

    def __init__(self, cache: dict[str, Session]) -> None:
        self._cache = cache
        self._revoked = False

    async def sessions(self, digests: Sequence[bytes]) -> dict[bytes, Session]:
        if self._revoked:
            return {}
        self._revoked = True
        self._cache.clear()
        return {d: Session(7, datetime.now(UTC) + timedelta(hours=1)) for d in digests}


async def test_a_revocation_during_a_cache_refill_leaves_no_live_entry() -> None:
    entries: dict[str, Session] = {}
    users = Users(
        store=RevokedDuringLookup(entries),  # type: ignore[arg-type]
        sessions=FakeSessionCache(entries),
        tweet_counts=None,  # type: ignore[arg-type]
        hashing=PasswordHashing(
            PasswordHasher(memory_cost=8, time_cost=1, parallelism=1), limit=1, max_wait_seconds=1
        ),
        page_tokens=PageTokens("test"),
        token_ttl=timedelta(hours=1),
        mailer=None,  # type: ignore[arg-type]
        relations_cache=None,  # type: ignore[arg-type]
    )
    token = new_token()
    assert token not in await users.authenticate_many([token])
    assert token not in entries
