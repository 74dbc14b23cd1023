"""Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph, ...), named by MEDIA_S3_URL, through
aiobotocore: botocore (the AWS SDK's core: signing, retries, the S3 protocol) on asyncio, so a call
cut off by a deadline is cancelled rather than left running in a thread."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from media_svc.blobs import Blob, check_content_type, check_key
from media_svc.errors import BlobNotFound, BlobStoreUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# S3's bucket names: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# What S3 and S3-compatible stores answer for a key or bucket that is not there.
_MISSING = {"NoSuchKey", "NotFound", "404", "NoSuchBucket"}


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where blobs go: `s3://BUCKET[/PREFIX][?endpoint=URL][&region=REGION]`.

    `endpoint` is an S3-compatible server (`http://127.0.0.1:9000` for MinIO), addressed path-style;
    without it, AWS itself. `region` defaults to AWS_REGION / AWS_DEFAULT_REGION, else us-east-1.
    Credentials are never in the URL: botocore reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    (and the rest of its usual chain: AWS_PROFILE, instance roles...).
    """

    bucket: str
    prefix: str
    endpoint: str | None
    region: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("MEDIA_S3_URL must look like s3://bucket[/prefix][?endpoint=http://host:port]")
        if "@" in parts.netloc:
            raise ValueError(
                "MEDIA_S3_URL must not hold credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
        if not _BUCKET.fullmatch(parts.netloc):
            raise ValueError(f"MEDIA_S3_URL names no valid bucket: {parts.netloc[:100]!r}")
        query = urllib.parse.parse_qs(parts.query, strict_parsing=bool(parts.query))
        unknown = set(query) - {"endpoint", "region"}
        if unknown or any(len(values) > 1 for values in query.values()):
            raise ValueError(f"MEDIA_S3_URL takes endpoint= and region= once each, not {sorted(unknown)}")
        endpoint = query.get("endpoint", [None])[0]
        if endpoint is not None and urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError("MEDIA_S3_URL's endpoint must be an http:// or https:// URL")
        prefix = parts.path.strip("/")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(
            bucket=parts.netloc,
            prefix=f"{prefix}/" if prefix else "",
            endpoint=endpoint,
            region=query.get("region", [region])[0],
        )


class S3BlobStore:
    """Blobs as objects `<prefix><key>` of one bucket, with their content type as the object's."""

    def __init__(self, location: S3Location, *, timeout_seconds: float = 10.0) -> None:
        self.location = location
        self._timeout_seconds = timeout_seconds
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None

    async def open(self) -> None:
        """Connects and checks that the bucket is there (BlobStoreUnavailable otherwise)."""
        config = AioConfig(
            connect_timeout=self._timeout_seconds,
            read_timeout=self._timeout_seconds,
            # One retry (after a short backoff) of what botocore deems transient: a throttle, a 5xx,
            # a dropped connection. More would outlast the call's own deadline.
            retries={"max_attempts": 2, "mode": "standard"},
            # S3-compatible servers want path-style addressing and may not know the newer
            # default checksums.
            s3={"addressing_style": "path"} if self.location.endpoint else {},
            request_checksum_calculation="when_required" if self.location.endpoint else "when_supported",
            response_checksum_validation="when_required" if self.location.endpoint else "when_supported",
        )
        client = get_session().create_client(
            "s3", region_name=self.location.region, endpoint_url=self.location.endpoint, config=config
        )
        self._client = await self._stack.enter_async_context(client)
        try:
            async with self._failures(f"bucket {self.location.bucket!r}"):
                await self._client.head_bucket(Bucket=self.location.bucket)
        except BaseException:
            await self.close()  # the caller gets no store to close
            raise

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        check_content_type(content_type)
        async with self._failures("put"):
            await self._s3.put_object(
                Bucket=self.location.bucket, Key=self._object(key), Body=data, ContentType=content_type
            )

    async def get(self, key: str) -> Blob:
        async with self._failures("get", key):
            answer = await self._s3.get_object(Bucket=self.location.bucket, Key=self._object(key))
            async with answer["Body"] as body:
                data = await body.read()
        return Blob(data=data, content_type=answer.get("ContentType", "application/octet-stream"))

    async def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with success.
        async with self._failures("delete"):
            await self._s3.delete_object(Bucket=self.location.bucket, Key=self._object(key))

    async def exists(self, key: str) -> bool:
        try:
            async with self._failures("exists", key):
                await self._s3.head_object(Bucket=self.location.bucket, Key=self._object(key))
        except BlobNotFound:
            return False
        return True

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    @property
    def _s3(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3BlobStore used before open() or after close()")
        return self._client

    def _object(self, key: str) -> str:
        return self.location.prefix + check_key(key)

    @contextlib.asynccontextmanager
    async def _failures(self, operation: str, key: str | None = None) -> AsyncIterator[None]:
        """A missing object as BlobNotFound (when reading `key`); every other failure of the store
        or of the way to it (refused, timed out, denied, a 5xx) as BlobStoreUnavailable."""
        try:
            yield
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if key is not None and code in _MISSING and code != "NoSuchBucket":
                raise BlobNotFound.of(key) from None
            raise BlobStoreUnavailable.of(operation) from error
        except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError) as error:
            # OSError covers TimeoutError (a read that timed out) and refused connections.
            raise BlobStoreUnavailable.of(operation) from error
