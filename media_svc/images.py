"""Images (JPEG, PNG, GIF, WebP; animated GIF, PNG and WebP too): checked whole and within the pixel
limits before any pixel is decoded, decoded by Pillow, and re-encoded from their pixels alone, so
no EXIF, GPS, XMP, comment or other metadata survives. The EXIF orientation and an embedded colour
profile are applied to the pixels first (the image looks as it did), then dropped."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image, ImageCms, JpegImagePlugin

from media_svc.errors import MediaRefused, Refusal
from media_svc.media import GIF, JPEG, PNG, WEBP, Media, check_frame_size

# Decoding every frame of an animation holds them all (canvas size each): this bounds the memory.
MAX_FRAMES = 500
MAX_ANIMATION_PIXELS = 100_000_000
THUMBNAIL_SIDE = 400
# Pillow refuses to open an image above twice its MAX_IMAGE_PIXELS as a decompression bomb; the
# same threshold names the refusal here when our own header checks see it first (GIF).
BOMB_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)

_PILLOW_FORMAT = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF", WEBP: "WEBP"}
# The modes each format is written in as they are; any other is converted to RGB(A).
_WRITABLE_MODES = {
    JPEG: {"L", "RGB"},
    PNG: {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"},
    GIF: {"L", "P", "RGB", "RGBA"},
    WEBP: {"RGB", "RGBA"},
}
# What undoes each EXIF orientation (TIFF tag 274), as Pillow's ImageOps.exif_transpose does.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_JPEG_QUALITY = 90
_WEBP_QUALITY = 90
_THUMBNAIL_QUALITY = 85
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass(frozen=True, slots=True)
class _Layout:
    """What a format's own structure says, read before Pillow decodes anything."""

    # The canvas and frame count, when the structure walk knows them better than Pillow's header.
    canvas: tuple[int, int] | None = None
    frames: int | None = None
    lossless: bool = False


def inspect_image(data: bytes, content_type: str) -> Media:
    """An image of `content_type` (already sniffed from `data`), checked, decoded and re-encoded."""
    layout = _check_structure(data, content_type)
    with _decoding():
        image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[content_type]])
        frame_count = layout.frames or int(getattr(image, "n_frames", 1))
        _check_pixels(layout.canvas or image.size, frame_count)
        # Read from the first frame, before seeking changes `info`.
        loop = image.info.get("loop")
        icc_profile = image.info.get("icc_profile")
        quantization = getattr(image, "quantization", None)
        subsampling = JpegImagePlugin.get_sampling(image) if content_type == JPEG else -1
        frames, durations = _decode(image, frame_count)
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    frames = [_clean(frame, content_type, orientation, icc_profile) for frame in frames]
    options: dict[str, Any] = {}
    if content_type == JPEG:
        options = _jpeg_options(frames[0], quantization, subsampling)
    elif content_type == WEBP:
        options = {"lossless": layout.lossless, "quality": 100 if layout.lossless else _WEBP_QUALITY}
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:], duration=durations)
        if loop is not None:
            options["loop"] = loop
    out = io.BytesIO()
    with _decoding("re-encoded"):  # frames Pillow decoded it may still fail to write (WebP's encoder)
        frames[0].save(out, format=_PILLOW_FORMAT[content_type], **options)
    width, height = frames[0].size
    return Media(
        content_type=content_type,
        width=width,
        height=height,
        duration=sum(durations) / 1000 if len(frames) > 1 else 0.0,
        frames=len(frames),
        sanitized=out.getvalue(),
        thumbnail=_thumbnail(frames[0]),
    )


@contextlib.contextmanager
def _decoding(step: str = "decoded") -> Iterator[None]:
    """Pillow's errors on hostile bytes, as refusals: the content is what is wrong. Pillow may raise
    almost anything on crafted input (OSError, SyntaxError, ValueError, struct.error...), so every
    exception is caught here; only Pillow's calls run inside."""
    try:
        yield
    except MediaRefused:
        raise
    except Image.DecompressionBombError as error:
        raise _bomb(f"declares more than {BOMB_PIXELS:,} pixels; not decoded") from error
    except Exception as error:
        text = str(error).lower()
        if "truncated" in text:
            raise _truncated("the image data ends early") from error
        if "decompressed data too large" in text:
            raise _bomb("has compressed metadata that inflates past the limit") from error
        raise _malformed(f"it could not be {step}") from error


def _check_pixels(canvas: tuple[int, int], frames: int) -> None:
    width, height = canvas
    pixels = width * height
    if pixels > BOMB_PIXELS:
        raise _bomb(f"declares {width}x{height} pixels; not decoded")
    check_frame_size(width, height)
    if frames > MAX_FRAMES or pixels * frames > MAX_ANIMATION_PIXELS:
        raise _bomb(
            f"has {frames} frames of {width}x{height}: {pixels * frames / 1e6:.0f} megapixels to decode; "
            f"at most {MAX_FRAMES} frames and {MAX_ANIMATION_PIXELS / 1e6:g} megapixels in all"
        )


def _bomb(description: str) -> MediaRefused:
    return MediaRefused.of(Refusal.DECOMPRESSION_BOMB, f"{description} (a decompression bomb)")


def _decode(image: Image.Image, frame_count: int) -> tuple[list[Image.Image], list[int]]:
    """Every frame, composited to the full canvas as Pillow presents it, and its duration in ms."""
    frames, durations = [], []
    for index in range(frame_count):
        image.seek(index)
        frames.append(image.copy())
        durations.append(int(image.info.get("duration", 0)))
    return frames, durations


def _clean(frame: Image.Image, content_type: str, orientation: int, icc_profile: bytes | None) -> Image.Image:
    """The frame's pixels upright, in sRGB, in a mode the format writes, with no metadata."""
    transparency = frame.info.get("transparency")
    if icc_profile:
        frame = _to_srgb(frame, icc_profile)
    if frame.mode not in _WRITABLE_MODES[content_type]:
        frame = frame.convert("RGBA" if _has_alpha(frame) else "RGB")
        transparency = None
    if orientation in _UPRIGHT:
        frame = frame.transpose(_UPRIGHT[orientation])
    # Only the pixels (and the palette's transparent entry) are written: the encoders take any
    # metadata they write from `info` (or from keyword arguments, never given here).
    frame.info = {} if transparency is None else {"transparency": transparency}
    return frame


def _to_srgb(frame: Image.Image, icc_profile: bytes) -> Image.Image:
    """The frame converted from its embedded colour profile to sRGB; as it is (the profile then
    simply dropped) when the profile is unusable or not of the frame's colour space."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        space = source.profile.xcolor_space.strip()
        if space == "RGB" and frame.mode in ("RGB", "RGBA"):
            converted = ImageCms.profileToProfile(frame, source, _SRGB, outputMode=frame.mode)
        elif space == "CMYK" and frame.mode == "CMYK":
            converted = ImageCms.profileToProfile(frame, source, _SRGB, outputMode="RGB")
        else:
            return frame
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return frame
    return converted if converted is not None else frame


def _has_alpha(frame: Image.Image) -> bool:
    return frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info


def _jpeg_options(frame: Image.Image, quantization: Any, subsampling: int) -> dict[str, Any]:
    """Encoded with the original's quantization tables and chroma subsampling when it has them (as
    good as the upload and about as large); at a fixed quality otherwise."""
    if not quantization or len(quantization) > 2 or (frame.mode == "L") != (len(quantization) == 1):
        return {"quality": _JPEG_QUALITY}
    options: dict[str, Any] = {"qtables": [quantization[key] for key in sorted(quantization)]}
    if subsampling >= 0:
        options["subsampling"] = subsampling
    return options


def _thumbnail(frame: Image.Image) -> bytes:
    """At most THUMBNAIL_SIDE on the long side (never enlarged), JPEG; transparency on white."""
    if frame.mode in ("I;16", "I"):
        frame = frame.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if _has_alpha(frame):
        rgba = frame.convert("RGBA")
        still = Image.new("RGB", rgba.size, "white")
        still.paste(rgba, mask=rgba.getchannel("A"))
    else:
        still = frame.convert("RGB")
    still.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    still.save(out, format="JPEG", quality=_THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


# The structure walks: each format's container read to its end, so that a truncated file is
# refused as such (Pillow decodes a PNG without its IEND or a GIF without its trailer) and a GIF's
# or WebP's frames are counted before any is decoded.


def _check_structure(data: bytes, content_type: str) -> _Layout:
    if content_type == PNG:
        _walk_png(data)
    elif content_type == GIF:
        return _walk_gif(data)
    elif content_type == WEBP:
        return _walk_webp(data)
    # JPEG: libjpeg reports a stream that ends early (checked when decoding).
    return _Layout()


def _truncated(what: str) -> MediaRefused:
    return MediaRefused.truncated(what)


def _malformed(what: str) -> MediaRefused:
    return MediaRefused.malformed("image", what)


def _walk_png(data: bytes) -> None:
    """Chunks from the signature to IEND, each whole and with a matching CRC."""
    pos = 8
    while True:
        if pos + 8 > len(data):
            raise _truncated("the PNG ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF:
            raise _malformed(f"PNG chunk {kind!r} declares {length} bytes")
        if pos == 8 and kind != b"IHDR":
            raise _malformed("the PNG does not start with IHDR")
        if end > len(data):
            raise _truncated(f"PNG chunk {kind.decode('latin-1')!r} ends past the end of the file")
        if zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            raise _malformed(f"PNG chunk {kind.decode('latin-1')!r} fails its CRC")
        if kind == b"IEND":
            return
        pos = end


def _walk_gif(data: bytes) -> _Layout:
    """Blocks from the header to the trailer; the canvas (frames may reach past the logical screen,
    and Pillow then grows it) and the number of frames."""

    def need(end: int) -> None:
        if end > len(data):
            raise _truncated("the GIF ends before its trailer")

    def skip_sub_blocks(pos: int) -> int:
        while True:
            need(pos + 1)
            size = data[pos]
            pos += 1 + size
            if size == 0:
                return pos

    def color_table(flags: int) -> int:
        return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0

    need(13)
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + color_table(flags)
    frames = 0
    while True:
        need(pos + 1)
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor, local colour table, LZW code size, sub-blocks
            need(pos + 10)
            left, top, frame_width, frame_height, frame_flags = struct.unpack_from("<HHHHB", data, pos + 1)
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            pos = skip_sub_blocks(pos + 10 + color_table(frame_flags) + 1)
            frames += 1
        else:
            raise _malformed(f"unknown GIF block 0x{block:02x}")
    if frames == 0:
        raise _malformed("the GIF has no frame")
    return _Layout(canvas=(width, height), frames=frames)


def _walk_webp(data: bytes) -> _Layout:
    """RIFF chunks within the RIFF size, which the file must hold; lossless (VP8L) or lossy."""
    end = 8 + int.from_bytes(data[4:8], "little")
    if len(data) < 12 or end > len(data):
        raise _truncated("the WebP is shorter than its RIFF header says")
    images = [kind for kind in _webp_chunks(data, 12, end) if kind in (b"VP8 ", b"VP8L")]
    if not images:
        raise _malformed("the WebP has no image chunk")
    return _Layout(lossless=images[0] == b"VP8L")


def _webp_chunks(data: bytes, pos: int, end: int) -> Iterator[bytes]:
    """The kinds of the chunks in data[pos:end], with those inside animation frames (ANMF: a
    16-byte frame header, then chunks)."""
    while pos < end:
        if pos + 8 > end:
            raise _malformed("a WebP chunk header crosses the end of its container")
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + size > end:
            raise _malformed(f"WebP chunk {kind!r} ends past the end of its container")
        yield kind
        if kind == b"ANMF":
            yield from _webp_chunks(data, pos + 8 + 16, pos + 8 + size)
        pos += 8 + size + (size & 1)
