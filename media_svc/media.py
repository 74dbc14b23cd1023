"""What accepted media is (the Media record) and the limits every upload is held to."""

from __future__ import annotations

from dataclasses import dataclass

from media_svc.errors import MediaRefused, Refusal

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_VIDEO_BYTES = 50 * 1024 * 1024
# The most an upload may be before its type is known (a service stops reading past it).
MAX_UPLOAD_BYTES = max(MAX_IMAGE_BYTES, MAX_VIDEO_BYTES)
# Per frame, of an image and of a video's track.
MAX_PIXELS = 40_000_000

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
WEBP = "image/webp"
MP4 = "video/mp4"
IMAGE_TYPES = (JPEG, PNG, GIF, WEBP)
ACCEPTED_TYPES = (*IMAGE_TYPES, MP4)
THUMBNAIL_TYPE = JPEG


@dataclass(frozen=True, slots=True)
class Media:
    """Accepted media: what it is, its displayed size, and the bytes to store and serve."""

    content_type: str
    width: int
    height: int
    # Seconds: a video's, an animation's total; 0.0 for a still image.
    duration: float
    frames: int
    # The bytes to store: re-encoded (images) or with their metadata boxes blanked (video).
    sanitized: bytes
    # A small still (THUMBNAIL_TYPE) of an image; None for video (it would need a video decoder).
    thumbnail: bytes | None


def check_frame_size(width: int, height: int) -> None:
    """Refuses a frame (of an image or a video track) of more than MAX_PIXELS."""
    pixels = width * height
    if pixels > MAX_PIXELS:
        raise MediaRefused.of(
            Refusal.TOO_MANY_PIXELS,
            f"is {width}x{height} pixels ({pixels / 1e6:.1f} megapixels); at most {MAX_PIXELS / 1e6:g}",
        )
