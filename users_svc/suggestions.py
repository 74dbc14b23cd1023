"""Who to follow: accounts followed by many of the accounts you follow (friends of friends, ranked
by how many), then popular accounts; never yourself, anyone you follow, block, are blocked by or
mute; and the bounds that keep the cost the same for an account following thousands.

The cost is bounded by sampling: of the accounts a user follows, the `FOLLOWING_SAMPLE` it followed
most recently are counted, and of each of those its `FAN_IN` most recent follows: at most
FOLLOWING_SAMPLE x FAN_IN index entries (20,000) are read, whoever asks (one query, index-only
scans of `follows_by_follower`). Recent follows say most about current interests; an account
that follows thousands gets its suggestions from the people it followed lately. The popular
accounts are the `POPULAR_POOL` most followed, read once per `POPULAR_SECONDS` per process (a
scan of `users`, shared by every request meanwhile) rather than indexed: an index on the follower
count would make every follow's count update write every index of `users`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

FOLLOWING_SAMPLE = 200
FAN_IN = 100
POPULAR_POOL = 200
POPULAR_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """An account to suggest, and how many of the sampled accounts the user follows follow it (0:
    suggested for being popular)."""

    user_id: int
    followed_by: int


def fill_with_popular(
    ranked: Sequence[Candidate], popular: Sequence[int], never: Collection[int], limit: int
) -> list[Candidate]:
    """The friends of friends first, then popular accounts (most followed first) that are not
    already there nor in `never`, up to `limit`."""
    chosen = list(ranked[:limit])
    taken = {c.user_id for c in chosen}
    for user_id in popular:
        if len(chosen) >= limit:
            break
        if user_id not in taken and user_id not in never:
            chosen.append(Candidate(user_id, 0))
            taken.add(user_id)
    return chosen


class PopularAccounts:
    """The most followed accounts, read again once they are `seconds` old (requests arriving
    together at that moment may each read them)."""

    def __init__(
        self,
        read: Callable[[int], Awaitable[list[int]]],
        *,
        size: int = POPULAR_POOL,
        seconds: float = POPULAR_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._size = size
        self._seconds = seconds
        self._clock = clock
        self._held: list[int] = []
        self._read_at: float | None = None

    async def get(self) -> list[int]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._seconds:
            self._held = await self._read(self._size)
            self._read_at = now
        return self._held
