"""The rules of media_svc: an upload is checked and sanitized before anything is stored, then its
row and its blobs are written (the row first, so a crash leaves something the sweeper finds);
only media whose blobs are all stored is served; media is claimed for a tweet by its owner only,
and only while it is attached to no tweet."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from media_svc.blobs import Blob, BlobStore
from media_svc.errors import MediaRefused, Refusal
from media_svc.inspection import inspect_media
from media_svc.media import MAX_UPLOAD_BYTES, THUMBNAIL_TYPE, Media
from meshkit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, not_found

# ClaimMedia's bound (tweets_svc holds a tweet to 4): a sanity limit on an internal call.
CLAIM_MAX = 100


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """Stored media: what it is and where its bytes are (blob keys from its id)."""

    media_id: int
    owner_id: int
    content_type: str
    width: int
    height: int
    duration_ms: int
    frames: int
    size_bytes: int
    # Hex SHA-256 of the stored bytes: the ETag.
    sha256: str
    # The thumbnail's, or None when there is none (video).
    thumbnail_sha256: str | None
    create_time: datetime


class ClaimStatus(enum.Enum):
    """Whether a tweet being posted by someone may have a media."""

    CLAIMABLE = "claimable"
    MISSING = "missing"  # never uploaded, not (or no longer) ready, or being collected
    NOT_OWNED = "not owned"
    ATTACHED = "attached"  # to another tweet already


def claim_status(owner_id: int, stored_owner_id: int, state: str, tweet_id: int | None) -> ClaimStatus:
    """The rule: the owner's ready media that no tweet holds."""
    if state != "ready":
        return ClaimStatus.MISSING
    if stored_owner_id != owner_id:
        return ClaimStatus.NOT_OWNED
    if tweet_id is not None:
        return ClaimStatus.ATTACHED
    return ClaimStatus.CLAIMABLE


@dataclass(frozen=True, slots=True)
class Inspected:
    """An upload accepted by inspect_media, with the digests of what will be stored."""

    media: Media
    sha256: str
    thumbnail_sha256: str | None


class MediaStore(Protocol):
    """media_svc's rows (media_svc.storage.PostgresMediaStore)."""

    async def begin(self, owner_id: int, inspected: Inspected) -> MediaRecord:
        """A new row in state `uploading`: its blobs are not all stored yet."""
        ...

    async def ready(self, media_id: int) -> None:
        """Marks the row servable: every blob is stored."""
        ...

    async def forget(self, media_id: int) -> None:
        """Deletes the row (its blobs are gone, or were never written)."""
        ...

    async def get(self, media_id: int) -> MediaRecord | None:
        """Servable media only."""
        ...

    async def claim(
        self, owner_id: int, media_ids: Sequence[int], seconds: float
    ) -> dict[int, tuple[MediaRecord | None, ClaimStatus]]:
        """Each media's status for owner_id (claim_status; MISSING when there is no row), and
        only if every one is CLAIMABLE, each reserved for `seconds` from now. Atomic."""
        ...


def original_key(media_id: int) -> str:
    """Where an upload's sanitized bytes are kept, spread over 256 folders."""
    return f"{media_id % 256:02x}/{media_id}"


def thumbnail_key(media_id: int) -> str:
    return f"{original_key(media_id)}.thumbnail"


def inspect_upload(data: bytes, claimed_type: str) -> Inspected:
    """inspect_media and the digests of its output: the CPU-bound part of an upload (hashlib and
    Pillow release the GIL for most of it)."""
    media = inspect_media(data, claimed_type)
    return Inspected(
        media,
        hashlib.sha256(media.sanitized).hexdigest(),
        None if media.thumbnail is None else hashlib.sha256(media.thumbnail).hexdigest(),
    )


def refused_claim(media_id: int, status: ClaimStatus) -> Exception:
    ident = str(media_id)
    if status is ClaimStatus.NOT_OWNED:
        return PermissionDenied(
            f"media_ids: media {ident} was uploaded by someone else",
            reason="MEDIA_NOT_OWNED",
            metadata={"field": "media_ids", "media_id": ident},
        )
    if status is ClaimStatus.ATTACHED:
        return FailedPrecondition(
            f"media_ids: media {ident} is attached to another tweet",
            reason="MEDIA_ALREADY_ATTACHED",
            metadata={"field": "media_ids", "media_id": ident},
        )
    return not_found("media", ident, "media_ids")


def too_large(size: int) -> MediaRefused:
    return MediaRefused.of(
        Refusal.TOO_LARGE, f"is more than {MAX_UPLOAD_BYTES:,} bytes (got at least {size:,})"
    )


class MediaLibrary:
    def __init__(
        self, store: MediaStore, blobs: BlobStore, inspect_concurrency: int, claim_seconds: float = 3600.0
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._claim_seconds = claim_seconds
        # Its workers bound how many uploads are decoded at once; queued ones wait their turn, and
        # one whose caller gave up is dropped before it starts.
        self._inspectors = concurrent.futures.ThreadPoolExecutor(
            max_workers=inspect_concurrency, thread_name_prefix="inspect-media"
        )

    async def close(self) -> None:
        self._inspectors.shutdown(wait=False, cancel_futures=True)

    async def upload(self, owner_id: int, data: bytes, claimed_type: str) -> MediaRecord:
        """Stores an accepted upload as owner_id's; MediaRefused (nothing stored) otherwise."""
        if len(data) > MAX_UPLOAD_BYTES:
            raise too_large(len(data))
        loop = asyncio.get_running_loop()
        inspected = await loop.run_in_executor(self._inspectors, inspect_upload, data, claimed_type)
        record = await self._store.begin(owner_id, inspected)
        try:
            await self._blobs.put(
                original_key(record.media_id), inspected.media.sanitized, record.content_type
            )
            if inspected.media.thumbnail is not None:
                await self._blobs.put(
                    thumbnail_key(record.media_id), inspected.media.thumbnail, THUMBNAIL_TYPE
                )
            await self._store.ready(record.media_id)
        except BaseException:
            # The row stays `uploading` if this fails too: the sweeper deletes it and its blobs.
            await asyncio.shield(self._discard_quietly(record.media_id))
            raise
        return record

    async def discard(self, media_id: int) -> None:
        """Deletes a media's blobs, then its row (a failure in between leaves the row, so that it
        is found and discarded again)."""
        await self._blobs.delete(thumbnail_key(media_id))
        await self._blobs.delete(original_key(media_id))
        await self._store.forget(media_id)

    async def _discard_quietly(self, media_id: int) -> None:
        try:
            await self.discard(media_id)
        except Exception:
            return

    async def claim(self, owner_id: int, media_ids: Sequence[int]) -> list[MediaRecord]:
        """owner_id's media for a tweet they are posting, reserved (see claim_status), in order;
        the first one refused says why."""
        if len(media_ids) > CLAIM_MAX:
            raise InvalidArgument.field("media_ids", f"at most {CLAIM_MAX} at once")
        found = await self._store.claim(owner_id, list(dict.fromkeys(media_ids)), self._claim_seconds)
        for media_id in media_ids:
            record, status = found[media_id]
            if status is not ClaimStatus.CLAIMABLE or record is None:
                raise refused_claim(media_id, status)
        return [r for r in (found[m][0] for m in media_ids) if r is not None]

    async def _record(self, media_id: int) -> MediaRecord:
        record = await self._store.get(media_id)
        if record is None:
            raise not_found("media", str(media_id), "media_id")
        return record

    async def content(self, media_id: int) -> tuple[MediaRecord, Blob]:
        """The media and its bytes; NOT_FOUND if it is not (or no longer) there."""
        record = await self._record(media_id)
        return record, await self._blob(original_key(media_id), media_id)

    async def thumbnail(self, media_id: int) -> tuple[MediaRecord, Blob]:
        record = await self._record(media_id)
        if record.thumbnail_sha256 is None:
            raise NotFound(
                f"media_id: media {media_id} has no thumbnail ({record.content_type})",
                reason="MEDIA_HAS_NO_THUMBNAIL",
                metadata={"field": "media_id", "media_id": str(media_id)},
            )
        return record, await self._blob(thumbnail_key(media_id), media_id)

    async def _blob(self, key: str, media_id: int) -> Blob:
        try:
            return await self._blobs.get(key)
        except NotFound:
            # Deleted between the two reads.
            raise not_found("media", str(media_id), "media_id") from None
