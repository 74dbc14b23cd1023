"""The celebrity registry: which authors are not fanned out on write, shared by fanout_svc (which
decides) and timeline_svc (which merges their tweets into home timelines at read time).

A Redis hash `celebrities`: author id -> state. An author moves none -> PROMOTING -> CELEBRITY ->
DEMOTING -> none, and only fanout_svc moves it (fanout_svc/celebrities.py says how each step keeps
every timeline exact). While PROMOTING or DEMOTING the author's tweets are still fanned out on
write; only a CELEBRITY's are not. Wiped with the rest of Redis, the registry starts empty, which
is safe: every author is fanned out until its next tweet finds it above the threshold again.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import redis.asyncio as aioredis

REGISTRY_KEY = "celebrities"


class State(enum.Enum):
    PROMOTING = "promoting"
    CELEBRITY = "celebrity"
    DEMOTING = "demoting"


# The states in which readers merge an author's tweets in (and timelines carry its marker).
MERGED_AT_READ = frozenset({State.PROMOTING, State.CELEBRITY})


class CelebrityRegistry:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def state(self, author_id: int) -> State | None:
        return (await self.states([author_id])).get(author_id)

    async def states(self, author_ids: Sequence[int]) -> dict[int, State]:
        """The states of those of `author_ids` that are in the registry."""
        if not author_ids:
            return {}
        values = await self._redis.hmget(REGISTRY_KEY, [str(a) for a in author_ids])
        return {
            a: State(v.decode() if isinstance(v, bytes) else v)
            for a, v in zip(author_ids, values, strict=True)
            if v
        }

    async def set(self, author_id: int, state: State) -> None:
        await self._redis.hset(REGISTRY_KEY, str(author_id), state.value)

    async def remove(self, author_id: int) -> None:
        await self._redis.hdel(REGISTRY_KEY, str(author_id))
