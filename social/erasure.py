"""The erasure of deleted accounts. users_svc publishes an AccountEvent (kind DELETED) through its
outbox in the deleting transaction; every owner of account data (users_svc, tweets_svc,
notifications_svc) consumes `events:accounts` in a consumer group of its own and removes its part,
idempotently. An entry is acknowledged only once that part is done: a crash midway leaves it
pending, another consumer (or the restarted one) claims it after ERASE_CLAIM_IDLE_MS and finds the
work where it stopped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from meshkit.ids import require_id
from meshkit.streams import Entry, StreamConsumer, poison_unless_valid
from social.events import ACCOUNTS_STREAM
from tweetmesh.users.v1 import users_service_pb2 as users_pb

ERASE_CLAIM_IDLE_MS = 30_000
# An erasure fails only while a dependency is down: it is retried (every ERASE_CLAIM_IDLE_MS / 2)
# for days before its entry goes to the dead letters. A malformed entry goes there at once.
ERASE_MAX_DELIVERIES = 10_000
# Deletions erased at once by one consumer (each may take many transactions).
ERASE_BATCH = 10


def deleted_account(entry: Entry) -> int | None:
    """The account an `events:accounts` entry says was deleted (None for another kind)."""
    with poison_unless_valid(entry) as data:
        event = users_pb.AccountEvent.FromString(data)
        if event.kind != users_pb.AccountEvent.KIND_DELETED:
            return None
        return require_id(event.user_id, "user_id")


def account_eraser(
    redis: aioredis.Redis, group: str, consumer: str, erase: Callable[[int], Awaitable[None]]
) -> StreamConsumer:
    """The consumer that calls `erase` (idempotent) for each deleted account, as `consumer` in
    `group` (one group per owner: each owner erases every deletion)."""

    async def handle(entry: Entry) -> None:
        if (user_id := deleted_account(entry)) is not None:
            await erase(user_id)

    return StreamConsumer(
        redis,
        ACCOUNTS_STREAM,
        group,
        consumer,
        handle,
        claim_idle_ms=ERASE_CLAIM_IDLE_MS,
        max_deliveries=ERASE_MAX_DELIVERIES,
        batch=ERASE_BATCH,
    )
