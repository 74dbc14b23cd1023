"""Blocks and mutes as every service reads them: a viewer's relations with other accounts, from
users_svc's documented Redis cache, else from users_svc itself.

The cache (written by users_svc only; README "Block and mute"): `relations:{<user_id>}`, a hash
with a field per account the user has a relation with, `<other id>` -> the Relation bits as a
decimal integer, and the field `_` (the user's relations version) which marks it present even when
it holds nothing else. It lives RELATIONS_TTL_SECONDS and is deleted by users_svc after every
change of either side's relations; a reader that finds it missing asks users_svc (ListRelations),
which reads PostgreSQL and writes it again. When Redis cannot be read, users_svc is asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from meshkit.errors import DEPENDENCY_ERRORS
from social.rules import Relation

# The longest a lost invalidation (Redis down just after a change) can leave a reader wrong.
RELATIONS_TTL_SECONDS = 300
_PRESENT = "_"


# A hash tag: the key stays whole in one slot of a Redis Cluster.
RELATIONS_KEY_PARTS = ("relations:{", "}")


def relations_key(user_id: int) -> str:
    return f"{RELATIONS_KEY_PARTS[0]}{user_id}{RELATIONS_KEY_PARTS[1]}"


def relations_of(held: Mapping[bytes, bytes]) -> dict[int, Relation] | None:
    """Every relation in a viewer's entry as HGETALL reads it; None when the entry is not cached."""
    if _PRESENT.encode() not in held:
        return None
    return {int(o): Relation(int(v)) for o, v in held.items() if o != _PRESENT.encode()}


class RelationsCache:
    """The Redis side: read a viewer's relations with some accounts, write or forget them whole."""

    def __init__(self, redis: aioredis.Redis, ttl_seconds: int = RELATIONS_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def read(self, viewer: int, others: Sequence[int]) -> dict[int, Relation] | None:
        """The viewer's relations with `others` (those with none are left out); None when the
        viewer's entry is not cached."""
        values: list[Any] = await self._redis.hmget(
            relations_key(viewer), [_PRESENT, *(str(o) for o in others)]
        )
        if values[0] is None:
            return None
        return {o: Relation(int(v)) for o, v in zip(others, values[1:], strict=True) if v is not None}

    async def read_all(self, viewer: int) -> dict[int, Relation] | None:
        """Every relation of the viewer; None when its entry is not cached."""
        held: dict[Any, Any] = await self._redis.hgetall(relations_key(viewer))
        return relations_of(held)

    async def write(self, viewer: int, version: int, relations: Mapping[int, Relation]) -> None:
        """Replaces the viewer's entry with `relations` (all of them) as of `version`."""
        key = relations_key(viewer)
        fields: dict[FieldT, EncodableT] = {_PRESENT: version}
        fields.update({str(o): int(r) for o, r in relations.items() if r})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def forget(self, user_ids: Iterable[int]) -> None:
        keys = [relations_key(u) for u in user_ids]
        if keys:
            await self._redis.delete(*keys)


class RelationsReader(Protocol):
    async def read(self, viewer: int, others: Sequence[int]) -> dict[int, Relation] | None: ...
    async def read_all(self, viewer: int) -> dict[int, Relation] | None: ...


# The owner's answer (users_svc's ListRelations, or its own store): the viewer's relations with
# `others` (None: with everyone it has one with), read from PostgreSQL; it refills the cache.
LoadRelations = Callable[[int, Sequence[int] | None], Awaitable[dict[int, Relation]]]


class Relations:
    """A viewer's relations with other accounts: from the cache, else from the owner."""

    def __init__(self, cache: RelationsReader, load: LoadRelations) -> None:
        self._cache = cache
        self._load = load

    async def among(self, viewer: int | None, others: Iterable[int]) -> dict[int, Relation]:
        """The viewer's relations with each of `others` that it has one with; nothing for an
        anonymous viewer (None) or for the viewer itself."""
        wanted = [o for o in dict.fromkeys(others) if o != viewer]
        if viewer is None or not wanted:
            return {}
        try:
            found = await self._cache.read(viewer, wanted)
        except DEPENDENCY_ERRORS:
            found = None  # the cache is down; the owner (PostgreSQL) still knows
        if found is None:
            return await self._load(viewer, wanted)
        return found

    async def all(self, viewer: int) -> dict[int, Relation]:
        """Every relation the viewer has (its notifications leave out whom it blocks or mutes)."""
        try:
            found = await self._cache.read_all(viewer)
        except DEPENDENCY_ERRORS:
            found = None
        return found if found is not None else await self._load(viewer, None)

    async def with_account(self, viewer: int, other: int) -> Relation:
        return (await self.among(viewer, [other])).get(other, Relation.NONE)
