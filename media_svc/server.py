"""media_svc's gRPC edge: uploads (whole, or in chunks) to domain calls, media served in chunks
with its cache headers, claims by tweets_svc; its consumer of the tweets' events and its sweeper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError

from media_svc.blobs import Blob, open_blob_store
from media_svc.lifecycle import MediaLifecycle, TweetMediaChanged
from media_svc.media import MAX_UPLOAD_BYTES
from media_svc.service import MediaLibrary, MediaRecord, too_large
from media_svc.settings import MediaSettings
from media_svc.storage import PostgresMediaStore
from meshkit.auth import Authenticator
from meshkit.errors import InvalidArgument
from meshkit.ids import require_id
from meshkit.protos import timestamp
from meshkit.ratelimit import Cap, Limit, Policies, Scope, method_name
from meshkit.runtime import Runtime
from meshkit.streams import Entry, PoisonEvent, StreamConsumer
from social import TWEETS_STREAM, TweetsPeer, UsersPeer
from social.limits import READ
from tweetmesh.media.v1 import media_service_pb2 as pb
from tweetmesh.media.v1 import media_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = pb.DESCRIPTOR.services_by_name["MediaService"]
UPLOAD = (
    Limit("media_upload", Scope.USER, "upload_per_user"),
    Limit("media_upload", Scope.ADDRESS, "upload_per_address"),
)
# A download is a read of the shared budget, and a stream held open while it lasts.
DOWNLOAD = (
    *READ,
    Cap("stream", Scope.ADDRESS, "streams_per_address"),
    Cap("stream", Scope.PROCESS, "streams_per_process"),
)
# Every public RPC must be here, at the rates of MediaSettings.rate_limits and the caps of its
# download_caps (tests/unit/test_rate_limit_policies.py).
RATE_LIMITS: Policies = {
    **{method_name(SERVICE, method): UPLOAD for method in ("UploadMedia", "UploadMediaStream")},
    **{method_name(SERVICE, method): DOWNLOAD for method in ("GetMedia", "GetMediaThumbnail")},
}
# The largest request: a whole upload as one message, with room for its envelope. Envoy's body
# limit for the upload routes is the same (envoy/envoy.yaml), so an upload a little too large gets
# the service's MEDIA_TOO_LARGE rather than a bare 413.
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + 1024 * 1024
# Media is served in messages of this size (Envoy passes each on as it comes).
CHUNK_BYTES = 1024 * 1024
# Media never changes under its id: clients and CDNs may keep it for a year without asking again.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# media_svc's consumer group on the tweets' events (attachments and deletions).
GROUP = "media"
# Tweet events only attach media (nothing a caller waits on): read a batch at a time, at most this often.
READ_EVERY_MS = 200


def media_url(media_id: int) -> str:
    return f"/v1/media/{media_id}"


def thumbnail_url(media_id: int) -> str:
    return f"/v1/media/{media_id}:thumbnail"


def wire_media(record: MediaRecord) -> pb.Media:
    duration = Duration()
    duration.FromMilliseconds(record.duration_ms)
    return pb.Media(
        media_id=str(record.media_id),
        owner_id=str(record.owner_id),
        content_type=record.content_type,
        width=record.width,
        height=record.height,
        duration=duration,
        frames=record.frames,
        size_bytes=record.size_bytes,
        url=media_url(record.media_id),
        thumbnail_url="" if record.thumbnail_sha256 is None else thumbnail_url(record.media_id),
        create_time=timestamp(record.create_time),
    )


async def _chunks(
    requests: AsyncIterator[pb.UploadMediaStreamRequest],
) -> tuple[str, bytes]:
    """The content type and the bytes of an upload in chunks: `start` first and once, then the
    chunks; refused past MAX_UPLOAD_BYTES without reading further."""
    content_type: str | None = None
    data = bytearray()
    async for request in requests:
        part = request.WhichOneof("part")
        if content_type is None:
            if part != "start":
                raise InvalidArgument.field("start", "must come first: the upload's content type")
            content_type = request.start.content_type
        elif part == "chunk":
            data += request.chunk
            if len(data) > MAX_UPLOAD_BYTES:
                raise too_large(len(data))
        else:
            raise InvalidArgument.field("start", "must come once, before the chunks")
    if content_type is None:
        raise InvalidArgument.field("start", "is required: the upload sent nothing")
    return content_type, bytes(data)


def tweet_media_changed(entry: Entry) -> TweetMediaChanged:
    """A tweet event as the lifecycle sees it; one that cannot be read is poison."""
    try:
        event = tweets_pb.TweetEvent.FromString(entry.fields[b"data"])
        return TweetMediaChanged(
            tweet_id=require_id(event.tweet_id, "tweet_id"),
            author_id=require_id(event.author_id, "author_id"),
            media_ids=tuple(require_id(m, "media_ids") for m in event.media_ids),
            deleted=event.kind == tweets_pb.TweetEvent.KIND_DELETED,
        )
    except (KeyError, DecodeError, InvalidArgument) as error:
        raise PoisonEvent(f"undecodable tweet event: {error}") from error


class MediaServicer(pb_grpc.MediaServiceServicer):
    def __init__(self, library: MediaLibrary, auth: Authenticator) -> None:
        self._library = library
        self._auth = auth

    async def UploadMedia(self, request: pb.UploadMediaRequest, context: Context) -> pb.UploadMediaResponse:
        owner_id = await self._auth.user_id(context.invocation_metadata())
        record = await self._library.upload(owner_id, request.body.data, request.body.content_type)
        return pb.UploadMediaResponse(media=wire_media(record))

    async def UploadMediaStream(
        self, requests: AsyncIterator[pb.UploadMediaStreamRequest], context: Context
    ) -> pb.UploadMediaStreamResponse:
        owner_id = await self._auth.user_id(context.invocation_metadata())
        content_type, data = await _chunks(requests)
        record = await self._library.upload(owner_id, data, content_type)
        return pb.UploadMediaStreamResponse(media=wire_media(record))

    async def GetMedia(
        self, request: pb.GetMediaRequest, context: Context
    ) -> AsyncIterator[pb.GetMediaResponse]:
        record, blob = await self._library.content(require_id(request.media_id, "media_id"))
        async for body in _served(context, blob, record.sha256):
            yield pb.GetMediaResponse(body=body)

    async def GetMediaThumbnail(
        self, request: pb.GetMediaThumbnailRequest, context: Context
    ) -> AsyncIterator[pb.GetMediaThumbnailResponse]:
        record, blob = await self._library.thumbnail(require_id(request.media_id, "media_id"))
        assert record.thumbnail_sha256 is not None
        async for body in _served(context, blob, record.thumbnail_sha256):
            yield pb.GetMediaThumbnailResponse(body=body)

    async def ClaimMedia(self, request: pb.ClaimMediaRequest, context: Context) -> pb.ClaimMediaResponse:
        records = await self._library.claim(
            require_id(request.owner_id, "owner_id"), [require_id(m, "media_ids") for m in request.media_ids]
        )
        return pb.ClaimMediaResponse(media=[wire_media(r) for r in records])


async def _served(context: Context, blob: Blob, sha256: str) -> AsyncIterator[httpbody_pb2.HttpBody]:
    """A blob as HttpBody messages, its headers first (Envoy turns them into HTTP headers; the
    first message's content type becomes Content-Type)."""
    await context.send_initial_metadata(
        (
            ("etag", f'"{sha256}"'),
            ("cache-control", CACHE_CONTROL),
            # Served as what it was checked to be, never as what a browser might guess.
            ("x-content-type-options", "nosniff"),
        )
    )
    data = memoryview(blob.data)
    for start in range(0, len(data), CHUNK_BYTES):
        yield httpbody_pb2.HttpBody(
            content_type=blob.content_type if start == 0 else "",
            data=bytes(data[start : start + CHUNK_BYTES]),
        )


async def setup(runtime: Runtime[MediaSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    pool = await runtime.postgres(settings.database_url, "media")
    redis = await runtime.redis()
    blobs = await open_blob_store(
        settings.media_s3_url, Path(settings.media_dir), timeout_seconds=settings.rpc_deadline_seconds
    )
    runtime.on_close(blobs.close)
    runtime.depends_on("media store", lambda: blobs.exists("health-probe"))
    store = PostgresMediaStore(pool)
    library = MediaLibrary(store, blobs, settings.media_inspect_concurrency, settings.media_claim_seconds)
    runtime.on_close(library.close)
    tweets = TweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE))
    lifecycle = MediaLifecycle(library, store, tweets, unattached_seconds=settings.media_unattached_seconds)
    runtime.background(lifecycle.sweep_forever(settings.media_sweep_seconds), "media sweeper")

    async def on_tweet(entry: Entry) -> None:
        await lifecycle.tweet_changed(tweet_media_changed(entry))

    consumer = StreamConsumer(
        redis,
        TWEETS_STREAM,
        GROUP,
        settings.media_consumer,
        on_tweet,
        claim_idle_ms=30_000,
        max_deliveries=10,
        forget_idle_ms=settings.consumer_forget_ms,
        read_every_ms=READ_EVERY_MS,
    )
    runtime.background(consumer.run(), f"consume {TWEETS_STREAM}")
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    auth = Authenticator(redis, users.sessions)
    runtime.limit_rates(redis, auth, settings.rate_limits, settings.trusted_proxies, settings.download_caps)
    pb_grpc.add_MediaServiceServicer_to_server(MediaServicer(library, auth), server)
    return [SERVICE.full_name]
