"""The rules of media_svc: an upload is checked and sanitized before anything is stored, then its
row and its blobs are written (the row first, so a crash leaves something the sweeper finds);
only media whose blobs are all stored is served."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from media_svc.blobs import Blob, BlobStore
from media_svc.errors import MediaRefused, Refusal
from media_svc.inspection import inspect_media
from media_svc.media import MAX_UPLOAD_BYTES, THUMBNAIL_TYPE, Media
from meshkit.errors import NotFound, not_found


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


def too_large(size: int) -> MediaRefused:
    return MediaRefused.of(
        Refusal.TOO_LARGE, f"is more than {MAX_UPLOAD_BYTES:,} bytes (got at least {size:,})"
    )


class MediaLibrary:
    def __init__(self, store: MediaStore, blobs: BlobStore, inspect_concurrency: int) -> None:
        self._store = store
        self._blobs = blobs
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
            await asyncio.shield(self._discard(record.media_id))
            raise
        return record

    async def _discard(self, media_id: int) -> None:
        try:
            await self._blobs.delete(thumbnail_key(media_id))
            await self._blobs.delete(original_key(media_id))
            await self._store.forget(media_id)
        except Exception:
            return

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
