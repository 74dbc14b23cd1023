"""Media files for the media tests, made here: images with Pillow, hand-built PNG/GIF headers for
bombs, and ISO base media (MP4) files box by box.

tests/data/tiny.mp4 is a real encoder's output (H.264, 64x48, 10 frames, 1 s, a title and a GPS
location), made with FFmpeg 5.1:

    ffmpeg -f lavfi -i testsrc=size=64x48:rate=10 -t 1 -c:v libx264 -pix_fmt yuv420p \\
      -movflags +faststart -fflags +bitexact -metadata location="+48.8584+002.2945/" \\
      -metadata title="tweetmesh fixture" tiny.mp4
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

TINY_MP4 = Path(__file__).parent / "data" / "tiny.mp4"
# Written into metadata by the samples below; none may survive sanitizing.
SECRET = b"SECRET-PLACE-1234"


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def picture(size: tuple[int, int] = (120, 80), mode: str = "RGB") -> Image.Image:
    """Four coloured quadrants: any rotation or flip shows in the pixels."""
    width, height = size
    image = Image.new("RGB", size, "red")
    image.paste((0, 160, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 200), (0, height // 2, width // 2, height))
    image.paste((250, 220, 0), (width // 2, height // 2, width, height))
    return image.convert(mode)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = SECRET.decode()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSAreaInformation] = b"ASCII\0\0\0" + SECRET
    return exif


def animation(fmt: str, frames: int = 3, size: tuple[int, int] = (60, 40), duration: int = 100) -> bytes:
    colours = ["red", "green", "blue", "white", "black"]
    images = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=duration, loop=0)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", len(payload), kind) + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid greyscale PNG of black pixels: its IDAT compresses 1,000 to 1, so a huge image is a
    small file (a decompression bomb when large)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    chunks = [compressor.compress(row) for _ in range(height)]
    chunks.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(chunks))
        + png_chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a size and that has no pixel data: refusing it for its size
    (and not for its missing data) shows the size was checked before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


def gif_frames(screen: tuple[int, int], frame: tuple[int, int], count: int) -> bytes:
    """A GIF with `count` frames of `frame` size on a `screen`, with (invalid) one-byte pixel data:
    only counting and measuring, before decoding, can refuse it for its size."""
    body = b"".join(
        b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0) + b"\x02" + b"\x01\x00" + b"\x00"
        for _ in range(count)
    )
    return b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0) + body + b"\x3b"


# ISO base media files, box by box.

IDENTITY = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
QUARTER_TURN = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, *payload: bytes) -> bytes:
    return box(kind, bytes([version, 0, 0, 0]), *payload)


def ftyp(*brands: bytes) -> bytes:
    return box(b"ftyp", brands[0], b"\0\0\2\0", *brands)


def mvhd(timescale: int = 1000, duration: int = 2500, version: int = 0) -> bytes:
    times = (
        struct.pack(">IIII", 0, 0, timescale, duration)
        if version == 0
        else struct.pack(">QQIQ", 0, 0, timescale, duration)
    )
    return full_box(b"mvhd", version, times, bytes(80))


def track(
    width: int = 640,
    height: int = 360,
    handler: bytes = b"vide",
    matrix: bytes = IDENTITY,
    samples: int = 75,
    *extra: bytes,
) -> bytes:
    tkhd = full_box(
        b"tkhd",
        0,
        struct.pack(">IIIII", 0, 0, 1, 0, 2500),
        bytes(16),
        matrix,
        struct.pack(">II", width << 16, height << 16),
    )
    hdlr = full_box(b"hdlr", 0, bytes(4), handler, bytes(12), b"handler\0")
    stsz = full_box(b"stsz", 0, struct.pack(">II", 100, samples))
    media = box(b"mdia", hdlr, box(b"minf", box(b"stbl", stsz)))
    return box(b"trak", tkhd, media, *extra)


def location_udta() -> bytes:
    """User data as phones write it: a title and a GPS location (ISO 6709) in QuickTime atoms."""
    return box(b"udta", box(b"\xa9xyz", b"\0\x11\0\0+48.8584+002.2945/"), box(b"\xa9nam", SECRET))


def mp4(
    *,
    brands: tuple[bytes, ...] = (b"isom", b"iso2", b"mp41"),
    movie: bytes | None = None,
    media_data: bytes | None = None,
) -> bytes:
    """A progressive MP4: ftyp, moov (mvhd, a video track, user data with a location), mdat."""
    if movie is None:
        movie = box(b"moov", mvhd(), track(), location_udta())
    if media_data is None:
        media_data = box(b"mdat", bytes(7500))
    return ftyp(*brands) + movie + media_data
