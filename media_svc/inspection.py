"""Uploaded bytes in, accepted media out: the real type from the content, the limits, and the
sanitized bytes (no metadata) with their size, duration and thumbnail; or MediaRefused saying why.

Pure and synchronous (CPU-bound: a large image takes a second to decode and re-encode), so the
service runs it off the event loop.
"""

from __future__ import annotations

from media_svc.errors import MediaRefused, Refusal
from media_svc.images import inspect_image
from media_svc.media import ACCEPTED_TYPES, GIF, JPEG, MAX_IMAGE_BYTES, MAX_VIDEO_BYTES, MP4, PNG, WEBP, Media
from media_svc.mp4 import inspect_mp4


def inspect_media(data: bytes, claimed_type: str) -> Media:
    """Checks `data` against the content type its uploader claims, and sanitizes it.

    Refused (MediaRefused, with a Refusal reason): an unknown or missing claimed type, content of
    no accepted type (sniffed from the bytes, never from a name), content of another type than
    claimed, too many bytes for its type, a truncated or malformed file, too many pixels, a
    decompression bomb.
    """
    claimed = canonical_type(claimed_type)
    if not data:
        raise MediaRefused.of(Refusal.EMPTY, "is empty")
    actual = sniff(data)
    if actual is None:
        raise MediaRefused.of(
            Refusal.UNSUPPORTED_TYPE,
            "is not a JPEG, PNG, GIF or WebP image or an MP4 video (read from its content)",
        )
    if actual != claimed:
        raise MediaRefused.of(
            Refusal.TYPE_MISMATCH,
            f"says {claimed} but the content is {actual}",
            field="content_type",
        )
    limit = MAX_VIDEO_BYTES if actual == MP4 else MAX_IMAGE_BYTES
    if len(data) > limit:
        raise MediaRefused.of(
            Refusal.TOO_LARGE, f"is {len(data):,} bytes; {actual} may be at most {_megabytes(limit)}"
        )
    if actual == MP4:
        return inspect_mp4(data)
    return inspect_image(data, actual)


def canonical_type(claimed_type: str) -> str:
    """The accepted content type a claim names (case and parameters ignored), or MediaRefused."""
    claimed = claimed_type.split(";", 1)[0].strip().lower()
    if not claimed:
        raise MediaRefused.of(
            Refusal.UNSUPPORTED_TYPE, f"is required: one of {', '.join(ACCEPTED_TYPES)}", field="content_type"
        )
    if claimed not in ACCEPTED_TYPES:
        raise MediaRefused.of(
            Refusal.UNSUPPORTED_TYPE,
            f"{claimed_type[:100]!r} is not accepted; one of {', '.join(ACCEPTED_TYPES)}",
            field="content_type",
        )
    return claimed


def sniff(data: bytes) -> str | None:
    """The accepted type the content's first bytes announce (the parsers then check the rest)."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return WEBP
    # Every ISO base media file (MP4, QuickTime, HEIF, 3GP...) starts with its `ftyp` box; the
    # MP4 parser refuses the brands that are not MP4.
    if data[4:8] == b"ftyp":
        return MP4
    return None


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB ({size:,} bytes)"
