"""What becomes of media after its upload: attached when its tweet is created, deleted with its
tweet, collected when nobody attached it in time, and the remains of uploads that never finished
cleared away.

Attachment is tweets_svc's to decide (a media is attached to at most one tweet: its table says
so); media_svc learns of it from the tweets' events. Before collecting media it believes
unattached, the sweeper asks tweets_svc, so a tweet whose event is late never loses its media.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from prometheus_client import Counter

from media_svc.errors import BlobStoreUnavailable
from media_svc.service import MediaLibrary
from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.metrics import REGISTRY

log = logging.getLogger(__name__)

DISCARDED = Counter(
    "tweetmesh_media_discarded",
    "Media deleted with its blobs: with its tweet (tweet_deleted), never attached in time "
    "(unattached), or an upload that never finished (unfinished).",
    ["reason"],
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class TweetMediaChanged:
    """A tweet with media was created (its media are attached to it) or deleted (with them)."""

    tweet_id: int
    author_id: int
    media_ids: tuple[int, ...]
    deleted: bool


class LifecycleStore(Protocol):
    """media_svc's rows, as the lifecycle needs them (media_svc.storage.PostgresMediaStore)."""

    async def attach(self, tweet_id: int, owner_id: int, media_ids: Sequence[int]) -> None:
        """Records that owner_id's media are attached to tweet_id (those not attached already)."""
        ...

    async def owned(self, owner_id: int, media_ids: Sequence[int]) -> list[int]:
        """Which of media_ids are owner_id's and still stored."""
        ...

    async def unfinished(self, older_than_seconds: float, limit: int) -> list[int]:
        """Uploads left `uploading` (their writer died) for longer than that."""
        ...

    async def collectable(self, older_than_seconds: float, limit: int) -> list[int]:
        """Media no tweet is known to hold, uploaded longer ago than that and not claimed now,
        marked `collecting` (no longer served or claimable), oldest first. Media already marked
        and left behind (a sweeper that died) comes back."""
        ...

    async def keep(self, attached: Mapping[int, int]) -> None:
        """Media found attached after all (media id -> tweet id): attached, and ready again."""
        ...


class MediaTweets(Protocol):
    """tweets_svc's word on attachments (social.peers.TweetsPeer)."""

    async def media_tweets(self, media_ids: Sequence[int]) -> dict[int, int]:
        """media id -> the tweet holding it, for those a tweet holds."""
        ...


# What a round may meet and the next one may not: the dependencies down.
_SWEEP_FAILURES: tuple[type[BaseException], ...] = (
    *DEPENDENCY_ERRORS,
    BlobStoreUnavailable,
    grpc.aio.AioRpcError,
)


class MediaLifecycle:
    def __init__(
        self,
        library: MediaLibrary,
        store: LifecycleStore,
        tweets: MediaTweets,
        *,
        unattached_seconds: float,
        unfinished_seconds: float = 3600.0,
        batch: int = 100,
    ) -> None:
        self._library = library
        self._store = store
        self._tweets = tweets
        self._unattached = unattached_seconds
        self._unfinished = unfinished_seconds
        self._batch = batch

    async def tweet_changed(self, change: TweetMediaChanged) -> None:
        """Idempotent: events come at least once, and a deletion may come before the creation."""
        if not change.media_ids:
            return
        if not change.deleted:
            await self._store.attach(change.tweet_id, change.author_id, change.media_ids)
            return
        for media_id in await self._store.owned(change.author_id, change.media_ids):
            await self._library.discard(media_id)
            DISCARDED.labels("tweet_deleted").inc()

    async def sweep_once(self) -> int:
        """One round of collection; returns how many media it deleted."""
        deleted = 0
        for media_id in await self._store.unfinished(self._unfinished, self._batch):
            await self._library.discard(media_id)
            DISCARDED.labels("unfinished").inc()
            deleted += 1
        candidates = await self._store.collectable(self._unattached, self._batch)
        if not candidates:
            return deleted
        attached = await self._tweets.media_tweets(candidates)
        if attached:
            log.info("media attached after all; kept", extra={"count": len(attached)})
            await self._store.keep(attached)
        for media_id in candidates:
            if media_id not in attached:
                await self._library.discard(media_id)
                DISCARDED.labels("unattached").inc()
                deleted += 1
        return deleted

    async def sweep_forever(self, interval_seconds: float) -> None:
        """Sweeps every `interval_seconds` (at once again while a round finds work); a failure of
        PostgreSQL, the store or tweets_svc is retried at the next round."""
        while True:
            try:
                while await self.sweep_once() > 0:
                    pass
            except _SWEEP_FAILURES as error:
                log.warning("media sweep failed; will retry", extra={"error": type(error).__name__})
            await asyncio.sleep(interval_seconds)
