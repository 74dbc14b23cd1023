"""Uploads through Envoy (HTTP with raw bytes; native gRPC, whole and in chunks), read back byte for
byte with their metadata gone and their cache headers, on the local store and on S3-compatible
object storage (moto's server); and every hostile upload refused with a reason and nothing stored."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import grpc
import psycopg
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2

from devstack.mesh import Mesh
from media_svc import inspect_media
from media_svc.media import MAX_UPLOAD_BYTES
from meshkit.rpc_details import error_details
from tests.helpers import Account, Stubs, http_call, rpc_error
from tests.media_samples import (
    SECRET,
    TINY_MP4,
    animation,
    encode,
    exif_with_gps,
    mp4,
    picture,
    png_header_only,
    png_of_zeros,
)
from tests.s3_server import CREDENTIALS, moto_server
from tweetmesh.media.v1 import media_service_pb2 as media_pb

BUCKET = "tweetmesh-media-e2e"
CHUNK = 1024 * 1024


class Store:
    """What media_svc has stored: its rows and its blobs."""

    def __init__(self, mesh: Mesh, list_blobs: Callable[[], set[str]]) -> None:
        self._mesh = mesh
        self._list_blobs = list_blobs

    def snapshot(self) -> tuple[int, set[str]]:
        with psycopg.connect(self._mesh.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM media.media").fetchone()
        assert row is not None
        return int(row[0]), self._list_blobs()


def _local_blobs(folder: Path) -> Callable[[], set[str]]:
    return lambda: {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module", params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """media_svc on its local directory (the mesh as started), or restarted on a bucket of moto's
    S3 server for the module's tests (and restarted as it was after them)."""
    if request.param == "local":
        yield Store(mesh, _local_blobs(Path(mesh.media_store)))
        return
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as (endpoint, _):
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=CREDENTIALS["AWS_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=BUCKET)

        def blobs() -> set[str]:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            return {item["Key"] for page in pages for item in page.get("Contents", [])}

        mesh.start_service(
            "media", {"MEDIA_S3_URL": f"s3://{BUCKET}/media?endpoint={endpoint}", **CREDENTIALS}
        )
        try:
            yield Store(mesh, blobs)
            assert blobs(), "nothing was stored in the bucket: media_svc did not use it"
        finally:
            mesh.start_service("media")


@pytest.fixture(scope="module")
def uploader(stubs: Stubs) -> Account:
    return stubs.sign_up("uploader")


@pytest.fixture(scope="module")
def envoy(mesh: Mesh) -> Iterator[Stubs]:
    via = Stubs.through(f"127.0.0.1:{mesh.ports.envoy}")
    yield via
    via.close()


@dataclass(frozen=True)
class Sample:
    data: bytes
    content_type: str
    frames: int = 1


SAMPLES = {
    "jpeg with exif and gps": Sample(
        encode(picture((300, 200)), "JPEG", exif=exif_with_gps(6)), "image/jpeg"
    ),
    "png": Sample(encode(picture(), "PNG"), "image/png"),
    "animated gif": Sample(animation("GIF", frames=3), "image/gif", frames=3),
    "webp": Sample(encode(picture(), "WEBP", exif=exif_with_gps()), "image/webp"),
    "mp4 with a location": Sample(TINY_MP4.read_bytes(), "video/mp4", frames=10),
}


def _http_upload(port: int, account: Account, data: bytes, content_type: str) -> Any:
    return http_call(
        port, "POST", "/v1/media", raw=data, token=account.token, headers={"content-type": content_type}
    )


def _parts(data: bytes, content_type: str) -> Iterator[media_pb.UploadMediaStreamRequest]:
    yield media_pb.UploadMediaStreamRequest(start=media_pb.UploadStart(content_type=content_type))
    for start in range(0, len(data), CHUNK):
        yield media_pb.UploadMediaStreamRequest(chunk=data[start : start + CHUNK])


def upload(
    via: str, envoy: Stubs, port: int, account: Account, data: bytes, content_type: str
) -> dict[str, Any]:
    """The uploaded media's JSON, whichever way it went."""
    if via == "http":
        response = _http_upload(port, account, data, content_type)
        assert response.status == 200, response.body
        return dict(response.json()["media"])
    if via == "grpc":
        request = media_pb.UploadMediaRequest()
        request.body.content_type, request.body.data = content_type, data
        media = envoy.media.UploadMedia(request, metadata=account.auth, timeout=60).media
    else:
        media = envoy.media.UploadMediaStream(
            _parts(data, content_type), metadata=account.auth, timeout=60
        ).media
    return dict(json_format.MessageToDict(media, preserving_proto_field_name=True))


@pytest.mark.parametrize("via", ["http", "grpc", "grpc-stream"])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_accepted_type_comes_back_byte_for_byte_without_its_metadata(
    store: Store, mesh: Mesh, envoy: Stubs, uploader: Account, name: str, via: str
) -> None:
    sample = SAMPLES[name]
    expected = inspect_media(sample.data, sample.content_type)
    media = upload(via, envoy, mesh.ports.envoy, uploader, sample.data, sample.content_type)

    assert media["content_type"] == sample.content_type
    assert (media["width"], media["height"]) == (expected.width, expected.height)
    assert int(media["frames"]) == sample.frames
    assert media["owner_id"] == uploader.user_id
    assert media["url"] == f"/v1/media/{media['media_id']}"
    got = http_call(mesh.ports.envoy, "GET", media["url"])
    assert got.status == 200
    assert got.body == expected.sanitized
    assert SECRET not in got.body
    assert got.headers["content-type"] == sample.content_type
    assert got.headers["etag"] == f'"{hashlib.sha256(got.body).hexdigest()}"'
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert got.headers["x-content-type-options"] == "nosniff"
    # gRPC readers get the same bytes and headers.
    call = envoy.media.GetMedia(media_pb.GetMediaRequest(media_id=media["media_id"]), timeout=30)
    assert b"".join(part.body.data for part in call) == expected.sanitized
    assert dict(call.initial_metadata())["etag"] == got.headers["etag"]

    thumbnail = http_call(mesh.ports.envoy, "GET", f"/v1/media/{media['media_id']}:thumbnail")
    if sample.content_type == "video/mp4":
        assert media.get("thumbnail_url", "") == ""
        assert thumbnail.status == 404
        assert thumbnail.json()["details"][0]["reason"] == "MEDIA_HAS_NO_THUMBNAIL"
        assert media["duration"] == "1s"
    else:
        assert media["thumbnail_url"] == f"/v1/media/{media['media_id']}:thumbnail"
        assert thumbnail.status == 200
        assert thumbnail.body == expected.thumbnail
        assert thumbnail.headers["content-type"] == "image/jpeg"


@dataclass(frozen=True)
class Hostile:
    data: bytes
    content_type: str
    reason: str


_PHOTO = encode(picture(), "JPEG")
_PNG = encode(picture(), "PNG")
HOSTILE = {
    "not media at all": Hostile(b"%PDF-1.7 not an image", "image/png", "MEDIA_UNSUPPORTED_TYPE"),
    "a type we do not take": Hostile(_PHOTO, "application/pdf", "MEDIA_UNSUPPORTED_TYPE"),
    "no content type": Hostile(_PHOTO, "", "MEDIA_UNSUPPORTED_TYPE"),
    "a lying header": Hostile(_PNG, "image/jpeg", "MEDIA_TYPE_MISMATCH"),
    "a truncated jpeg": Hostile(_PHOTO[: len(_PHOTO) // 2], "image/jpeg", "MEDIA_TRUNCATED"),
    "a truncated mp4": Hostile(TINY_MP4.read_bytes()[:-500], "video/mp4", "MEDIA_TRUNCATED"),
    "a decompression bomb": Hostile(png_of_zeros(15_000, 15_000), "image/png", "MEDIA_DECOMPRESSION_BOMB"),
    "too many pixels": Hostile(png_header_only(8_000, 5_001), "image/png", "MEDIA_TOO_MANY_PIXELS"),
    "an image over 5 MB": Hostile(_PNG + bytes(5 * 1024 * 1024), "image/png", "MEDIA_TOO_LARGE"),
    "a quicktime movie": Hostile(mp4(brands=(b"qt  ",)), "video/mp4", "MEDIA_UNSUPPORTED_TYPE"),
    "nothing": Hostile(b"", "image/png", "MEDIA_EMPTY"),
}


def _reason_of(error: grpc.RpcError) -> str:
    (info,) = error_details(error, error_details_pb2.ErrorInfo)
    return str(info.reason)


@pytest.mark.parametrize("via", ["http", "grpc", "grpc-stream"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_upload_is_refused_with_its_reason_and_nothing_stored(
    store: Store, mesh: Mesh, envoy: Stubs, uploader: Account, name: str, via: str
) -> None:
    hostile = HOSTILE[name]
    before = store.snapshot()
    if via == "http":
        response = _http_upload(mesh.ports.envoy, uploader, hostile.data, hostile.content_type)
        assert response.status == 400, response.body
        reason = response.json()["details"][0]["reason"]
    else:
        error = rpc_error(
            lambda: upload(via, envoy, mesh.ports.envoy, uploader, hostile.data, hostile.content_type)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        reason = _reason_of(error)
    assert reason == hostile.reason
    assert store.snapshot() == before


def test_uploads_past_50_mb_are_refused_and_nothing_stored(
    store: Store, mesh: Mesh, envoy: Stubs, uploader: Account
) -> None:
    before = store.snapshot()
    video = mp4(media_data=bytes(16) + bytes(MAX_UPLOAD_BYTES))
    # In chunks, media_svc stops reading past the limit and says why.
    error = rpc_error(lambda: upload("grpc-stream", envoy, mesh.ports.envoy, uploader, video, "video/mp4"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason_of(error) == "MEDIA_TOO_LARGE"
    # Whole, a body a little too large reaches media_svc, which says why; a far larger one is
    # stopped by Envoy (413).
    response = _http_upload(mesh.ports.envoy, uploader, video, "video/mp4")
    assert response.status == 400 and response.json()["details"][0]["reason"] == "MEDIA_TOO_LARGE"
    response = _http_upload(mesh.ports.envoy, uploader, video + bytes(1024 * 1024), "video/mp4")
    assert response.status == 413
    assert store.snapshot() == before


def test_an_upload_needs_a_token_and_a_stream_needs_its_start(
    store: Store, mesh: Mesh, envoy: Stubs, uploader: Account
) -> None:
    before = store.snapshot()
    response = http_call(
        mesh.ports.envoy, "POST", "/v1/media", raw=_PHOTO, headers={"content-type": "image/jpeg"}
    )
    assert response.status == 401
    chunks_only = iter([media_pb.UploadMediaStreamRequest(chunk=_PHOTO)])
    error = rpc_error(lambda: envoy.media.UploadMediaStream(chunks_only, metadata=uploader.auth, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "start" in str(error.details())
    twice = iter(
        [*_parts(_PHOTO, "image/jpeg"), media_pb.UploadMediaStreamRequest(start=media_pb.UploadStart())]
    )
    error = rpc_error(lambda: envoy.media.UploadMediaStream(twice, metadata=uploader.auth, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "start" in str(error.details())
    assert store.snapshot() == before


def test_over_http_an_upload_in_chunks_is_a_json_array(store: Store, mesh: Mesh, uploader: Account) -> None:
    """POST /v1/media:stream: what a gRPC client streams, as Envoy's transcoder takes it."""
    body = [{"start": {"content_type": "image/png"}}, {"chunk": base64.b64encode(_PNG).decode()}]
    response = http_call(
        mesh.ports.envoy, "POST", "/v1/media:stream", raw=json.dumps(body).encode(), token=uploader.token
    )
    assert response.status == 200, response.body
    media = response.json()["media"]
    assert http_call(mesh.ports.envoy, "GET", media["url"]).body == inspect_media(_PNG, "image/png").sanitized


def test_unknown_media_is_not_found(store: Store, mesh: Mesh) -> None:
    for path in ("/v1/media/1234", "/v1/media/1234:thumbnail"):
        response = http_call(mesh.ports.envoy, "GET", path)
        assert response.status == 404 and response.json()["details"][0]["reason"] == "MEDIA_NOT_FOUND"
    assert http_call(mesh.ports.envoy, "GET", "/v1/media/../users").status in (400, 404)
