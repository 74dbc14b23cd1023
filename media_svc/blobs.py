"""Blob storage behind one interface: the BlobStore protocol, the local directory store (the default,
used by `make run`), and the choice between it and S3-compatible object storage (media_svc.s3)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from media_svc.errors import BlobNotFound, BlobStoreUnavailable

# Keys are chosen by the service: up to 8 segments of letters, digits, '.', '_' and '-', joined by
# '/', none starting with '.' (so no '..', no hidden names, no absolute paths, and never the name
# of the local store's temporary files).
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,7}")
# type/subtype (RFC 6838 names), without parameters.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    content_type: str


class BlobStore(Protocol):
    """Where media bytes live. Every failure of the store itself is BlobStoreUnavailable."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Stores `data` under `key` whole or not at all (a reader never sees part of it),
        replacing what was there."""

    async def get(self, key: str) -> Blob:
        """The blob under `key`, or BlobNotFound."""

    async def delete(self, key: str) -> None:
        """Removes the blob under `key`; a missing one is no error (deletes are retried)."""

    async def exists(self, key: str) -> bool: ...

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    """`key` if it is a valid blob key; ValueError otherwise (keys come from the service, so a bad
    one is a bug, not bad input)."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"invalid blob key {key[:300]!r}")
    return key


def check_content_type(content_type: str) -> str:
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"invalid content type {content_type[:300]!r}")
    return content_type


async def open_blob_store(s3_url: str, local_dir: Path, *, timeout_seconds: float = 10.0) -> BlobStore:
    """The S3-compatible store `s3_url` names (see media_svc.s3.S3Location), or the local directory
    store at `local_dir` when `s3_url` is empty. Opened: a missing bucket or an unwritable directory
    fails here, at start, rather than on the first upload."""
    if s3_url:
        from media_svc.s3 import S3BlobStore, S3Location  # here: media_svc.s3 imports this module

        s3_store = S3BlobStore(S3Location.parse(s3_url), timeout_seconds=timeout_seconds)
        await s3_store.open()
        return s3_store
    local_store = LocalBlobStore(local_dir)
    await local_store.open()
    return local_store


class LocalBlobStore:
    """Blobs as files under one directory: `<root>/<key>`, holding the content type on a first line
    and then the bytes. Written to a temporary file in the same directory, flushed to disk and
    renamed over the key, so a reader sees the old blob or the new one, never part of one, and a
    crash leaves at most a `.tmp-*` file behind."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def open(self) -> None:
        with _local_failures("open"):
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(f"{self.root} is not writable")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        header = check_content_type(content_type).encode("ascii") + b"\n"
        path = self._path(key)
        with _local_failures("put"):
            await asyncio.to_thread(_write_atomically, path, header, data)

    async def get(self, key: str) -> Blob:
        path = self._path(key)
        with _local_failures("get"):
            try:
                stored = await asyncio.to_thread(path.read_bytes)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise BlobNotFound.of(key) from None
        header, newline, data = stored.partition(b"\n")
        if not newline:
            raise BlobStoreUnavailable.of("get") from ValueError(f"{path} has no content-type line")
        return Blob(data=data, content_type=header.decode("ascii"))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with _local_failures("delete"), contextlib.suppress(NotADirectoryError):
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        with _local_failures("exists"):
            return await asyncio.to_thread(path.is_file)

    async def close(self) -> None:
        return None

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)


def _write_atomically(path: Path, header: bytes, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(header)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # The rename itself is durable once the directory is.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _local_failures(operation: str) -> Iterator[None]:
    """The disk's failures (full, read-only, permissions, I/O errors) as BlobStoreUnavailable."""
    try:
        yield
    except OSError as error:
        raise BlobStoreUnavailable.of(operation) from error
