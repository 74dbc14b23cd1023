"""Both blob stores keep the same promises: the local directory, and the S3 store against a real
S3-compatible server (moto's server mode, started here on a free port)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiobotocore.session import get_session

from devstack.mesh import free_port
from media_svc.blobs import BlobStore, LocalBlobStore, open_blob_store
from media_svc.errors import BlobNotFound, BlobStoreUnavailable
from media_svc.inspection import inspect_media
from media_svc.s3 import S3BlobStore, S3Location
from tests.media_samples import TINY_MP4, encode, exif_with_gps, picture
from tests.s3_server import CREDENTIALS, moto_server

BUCKET = "tweetmesh-media"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1, and the usual AWS variables pointing at it."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as (endpoint, _):
            yield endpoint


async def make_bucket(endpoint: str, name: str) -> None:
    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=name)


@pytest.fixture(scope="module")
async def s3_store(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BlobStore]:
    """One S3 store for the module's tests (a client takes most of a second to build); every test
    writes the keys it reads."""
    await make_bucket(s3_endpoint, BUCKET)
    opened = await open_blob_store(
        f"s3://{BUCKET}/media?endpoint={s3_endpoint}", tmp_path_factory.mktemp("s3")
    )
    assert isinstance(opened, S3BlobStore)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_store: BlobStore
) -> AsyncIterator[BlobStore]:
    if request.param == "s3":
        yield s3_store
        return
    opened = await open_blob_store("", tmp_path / "blobs")
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_blob_comes_back_byte_for_byte_with_its_content_type(store: BlobStore) -> None:
    data = os.urandom(300_000) + b"\x00\n\r\xff"

    await store.put("media/1/original", data, "image/png")
    blob = await store.get("media/1/original")

    assert blob.data == data
    assert blob.content_type == "image/png"
    assert await store.exists("media/1/original")


async def test_sanitized_media_round_trips_through_the_store(store: BlobStore) -> None:
    photo = inspect_media(encode(picture(), "JPEG", exif=exif_with_gps()), "image/jpeg")
    video = inspect_media(TINY_MP4.read_bytes(), "video/mp4")
    assert photo.thumbnail is not None

    await store.put("photo", photo.sanitized, photo.content_type)
    await store.put("photo.thumbnail", photo.thumbnail, "image/jpeg")
    await store.put("video", video.sanitized, video.content_type)

    assert (await store.get("photo")).data == photo.sanitized
    assert (await store.get("photo.thumbnail")).data == photo.thumbnail
    assert (await store.get("video")).data == video.sanitized
    assert (await store.get("video")).content_type == "video/mp4"


async def test_a_put_replaces_the_blob_whole(store: BlobStore) -> None:
    await store.put("key", b"first version, longer than the second", "image/gif")
    await store.put("key", b"second", "image/webp")

    blob = await store.get("key")

    assert (blob.data, blob.content_type) == (b"second", "image/webp")


async def test_an_empty_blob_is_kept(store: BlobStore) -> None:
    await store.put("empty", b"", "application/octet-stream")

    assert (await store.get("empty")).data == b""


async def test_a_missing_key_is_not_found(store: BlobStore) -> None:
    assert not await store.exists("never/put")
    with pytest.raises(BlobNotFound):
        await store.get("never/put")


async def test_delete_removes_the_blob_and_may_be_repeated(store: BlobStore) -> None:
    await store.put("doomed", b"bytes", "image/jpeg")
    await store.put("kept", b"other bytes", "image/jpeg")

    await store.delete("doomed")
    await store.delete("doomed")
    await store.delete("never/put")

    assert not await store.exists("doomed")
    with pytest.raises(BlobNotFound):
        await store.get("doomed")
    assert (await store.get("kept")).data == b"other bytes"


async def test_concurrent_puts_and_gets_never_see_part_of_a_blob(store: BlobStore) -> None:
    versions = [bytes([n]) * 200_000 for n in range(8)]
    await store.put("busy", versions[0], "image/png")

    async def read_whole() -> None:
        for _ in range(10):
            assert (await store.get("busy")).data in versions

    await asyncio.gather(*(store.put("busy", v, "image/png") for v in versions), read_whole(), read_whole())


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "a/../../b", ".hidden", "a//b", "a/", "with space", "ключ", "a\0b"],
)
async def test_unsafe_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put(key, b"x", "image/png")
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.get(key)


@pytest.mark.parametrize("content_type", ["", "image", "image/png\nx-evil: 1", "image/png; q=1"])
async def test_invalid_content_types_are_refused(store: BlobStore, content_type: str) -> None:
    with pytest.raises(ValueError, match="invalid content type"):
        await store.put("key", b"x", content_type)


# The local directory store.


async def test_local_blobs_are_files_under_their_key_and_no_temporary_file_remains(tmp_path: Path) -> None:
    store = await open_blob_store("", tmp_path)

    await store.put("media/42/original", b"\x89PNG...", "image/png")

    assert (tmp_path / "media" / "42" / "original").read_bytes() == b"image/png\n\x89PNG..."
    assert [path.name for path in (tmp_path / "media" / "42").iterdir()] == ["original"]


async def test_a_failed_local_write_leaves_the_old_blob_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    await store.open()
    await store.put("key", b"old", "image/png")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(BlobStoreUnavailable):
        await store.put("key", b"new", "image/png")
    monkeypatch.undo()

    assert (await store.get("key")).data == b"old"
    assert await asyncio.to_thread(os.listdir, tmp_path) == ["key"]


async def test_a_local_store_on_a_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")

    with pytest.raises(BlobStoreUnavailable):
        await open_blob_store("", tmp_path / "file" / "blobs")


# The S3 store.


async def test_s3_objects_live_under_the_urls_prefix(s3_endpoint: str, tmp_path: Path) -> None:
    await make_bucket(s3_endpoint, "prefixed")
    store = await open_blob_store(f"s3://prefixed/tweetmesh/media?endpoint={s3_endpoint}", tmp_path)
    try:
        await store.put("a/b", b"bytes", "image/gif")
    finally:
        await store.close()

    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        listed = await s3.list_objects_v2(Bucket="prefixed")
    assert [item["Key"] for item in listed.get("Contents", [])] == ["tweetmesh/media/a/b"]


async def test_a_missing_bucket_fails_at_open(s3_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(BlobStoreUnavailable, match="no-such-bucket"):
        await open_blob_store(f"s3://no-such-bucket?endpoint={s3_endpoint}", tmp_path)


async def test_an_s3_endpoint_that_is_down_is_unavailable(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        with pytest.raises(BlobStoreUnavailable) as caught:
            await open_blob_store(f"s3://bucket?endpoint={down}", tmp_path, timeout_seconds=1)

    assert "127.0.0.1" not in caught.value.message


async def test_an_s3_server_that_stops_makes_every_call_unavailable(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        with moto_server(tmp_path / "moto.log") as (endpoint, server):
            await make_bucket(endpoint, "stopping")
            store = await open_blob_store(f"s3://stopping?endpoint={endpoint}", tmp_path, timeout_seconds=1)
            await store.put("key", b"bytes", "image/png")
            server.stop()
        try:
            with pytest.raises(BlobStoreUnavailable):
                await store.put("key", b"x", "image/png")
            with pytest.raises(BlobStoreUnavailable):
                await store.get("key")
            with pytest.raises(BlobStoreUnavailable):
                await store.exists("key")
            with pytest.raises(BlobStoreUnavailable):
                await store.delete("key")
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://media", S3Location("media", "", None, "us-east-1")),
        ("s3://media/a/b/", S3Location("media", "a/b/", None, "us-east-1")),
        (
            "s3://media?endpoint=http://127.0.0.1:9000&region=eu-west-3",
            S3Location("media", "", "http://127.0.0.1:9000", "eu-west-3"),
        ),
    ],
)
def test_media_s3_url_is_read(url: str, location: S3Location, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    assert S3Location.parse(url) == location


@pytest.mark.parametrize(
    "url",
    [
        "http://media",
        "s3://",
        "s3://key:secret@media",
        "s3://media:9000",
        "s3://Media",
        "s3://media?endpoint=ftp://host",
        "s3://media?bucket=other",
        "s3://media?region=a&region=b",
    ],
)
def test_a_bad_media_s3_url_is_refused_with_a_reason(url: str) -> None:
    with pytest.raises(ValueError, match="MEDIA_S3_URL"):
        S3Location.parse(url)
