"""MP4 video checked by its container (ISO base media file format, ISO/IEC 14496-12), not its name:
an `ftyp` of an MP4 brand first, every box's size consistent with its container and the file,
one `moov` whose `mvhd` gives the duration, a video track whose `tkhd` gives the size, media data.
Sanitized by blanking the metadata boxes (`udta`, `meta`, `uuid`: titles, GPS, XMP) in place into
`free` boxes of the same size, so the offsets into the media data stay right."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from media_svc.errors import MediaRefused, Refusal
from media_svc.media import MP4, Media, check_frame_size

# Major or compatible brands that make an ISO base media file an MP4 (ISO/IEC 14496-12 and -14,
# Apple's M4V, DASH); QuickTime ("qt  "), HEIF, AVIF, 3GP and audio-only M4A are not.
MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9"}
    | {b"mp41", b"mp42", b"mp71", b"avc1", b"M4V ", b"dash", b"MSNV"}
)
# Boxes that only describe (titles, locations, XMP, vendor data), blanked where they may appear.
METADATA_BOXES = frozenset({b"udta", b"meta", b"uuid"})
# The containers walked for metadata: the file itself, the movie and each track.
_METADATA_CONTAINERS = frozenset({b"moov", b"trak"})
# The movie's containers whose children are boxes (ISO/IEC 14496-12), all checked to nest exactly.
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"tref"})
_UNKNOWN_DURATION = {0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}


@dataclass(frozen=True, slots=True)
class Box:
    kind: bytes
    start: int
    # Where the payload starts (after the size, type and any 64-bit size) and where the box ends.
    payload: int
    end: int


def inspect_mp4(data: bytes) -> Media:
    """An MP4 (already sniffed as an ISO base media file) checked and sanitized."""
    top = list(boxes(data, 0, len(data), top_level=True))
    if top[0].kind != b"ftyp":
        raise _malformed("the first box is not ftyp")
    _check_brand(data, top[0])
    movies = [box for box in top if box.kind == b"moov"]
    if len(movies) != 1:
        raise _malformed(f"has {len(movies)} moov boxes; exactly one is needed")
    if not any(box.kind == b"mdat" for box in top):
        raise _malformed("has no media data (mdat)")
    movie = movies[0]
    _check_nesting(data, movie)
    duration = _duration(data, movie)
    width, height, frames = _video_track(data, movie)
    return Media(
        content_type=MP4,
        width=width,
        height=height,
        duration=duration,
        frames=frames,
        sanitized=_blank_metadata(data, top),
        thumbnail=None,
    )


def boxes(data: bytes, start: int, end: int, *, top_level: bool = False) -> Iterator[Box]:
    """The boxes in data[start:end], each checked to lie within it. At the top level a box may
    have size 0 (it runs to the end of the file), and a box that ends past the file is truncation."""

    def overrun(what: str) -> MediaRefused:
        return _truncated(what) if top_level else _malformed(f"{what}, past the end of its container")

    pos = start
    while pos < end:
        if pos + 8 > end:
            raise overrun("a box header is cut short")
        size, kind = struct.unpack_from(">I4s", data, pos)
        payload = pos + 8
        if size == 1:
            if payload + 8 > end:
                raise overrun("a box header is cut short")
            (size,) = struct.unpack_from(">Q", data, payload)
            payload += 8
        elif size == 0:
            if not top_level:
                raise _malformed(f"box {_name(kind)} inside a container declares size 0")
            size = end - pos
        if size < payload - pos:
            raise _malformed(f"box {_name(kind)} declares {size} bytes, less than its own header")
        if pos + size > end:
            raise overrun(f"box {_name(kind)} declares {size} bytes but only {end - pos} remain")
        yield Box(kind, pos, payload, pos + size)
        pos += size


def _check_nesting(data: bytes, container: Box) -> None:
    """Every box of the container's tree lies exactly within its parent (MediaRefused otherwise)."""
    for child in boxes(data, container.payload, container.end):
        if child.kind in _CONTAINERS:
            _check_nesting(data, child)


def _check_brand(data: bytes, ftyp: Box) -> None:
    payload = data[ftyp.payload : ftyp.end]
    if len(payload) < 8 or len(payload) % 4:
        raise _malformed("its ftyp box is malformed")
    brands = {payload[i : i + 4] for i in range(0, len(payload), 4) if i != 4}  # skip minor_version
    if not brands & MP4_BRANDS:
        raise MediaRefused.of(
            Refusal.UNSUPPORTED_TYPE,
            f"is an ISO media file of brand {_name(payload[:4])}, not an MP4 video",
        )


def _duration(data: bytes, movie: Box) -> float:
    """Seconds, from the movie header (or, for a fragmented MP4, the movie extends header)."""
    header = _child(data, movie, b"mvhd")
    if header is None:
        raise _malformed("its moov has no mvhd")
    version = data[header.payload] if header.payload < header.end else None
    layout = {0: ">12xII", 1: ">20xIQ"}.get(version) if version is not None else None
    if layout is None or header.end - header.payload < struct.calcsize(layout):
        raise _malformed("its mvhd is malformed")
    timescale, duration = struct.unpack_from(layout, data, header.payload)
    if duration in _UNKNOWN_DURATION or duration == 0:
        duration = _fragment_duration(data, movie)
    if timescale == 0 or duration == 0:
        raise _malformed("declares no duration")
    return int(duration) / int(timescale)


def _fragment_duration(data: bytes, movie: Box) -> int:
    extends = _child(data, movie, b"mvex")
    header = _child(data, extends, b"mehd") if extends is not None else None
    if header is None or header.end - header.payload < 8:
        return 0
    if data[header.payload] == 1 and header.end - header.payload >= 12:
        return int(struct.unpack_from(">Q", data, header.payload + 4)[0])
    return int(struct.unpack_from(">I", data, header.payload + 4)[0])


def _video_track(data: bytes, movie: Box) -> tuple[int, int, int]:
    """The displayed width and height (the track's matrix applied: a portrait phone video is stored
    landscape and rotated) and frame count of the first video track."""
    for track in boxes(data, movie.payload, movie.end):
        if track.kind != b"trak" or _handler(data, track) != b"vide":
            continue
        header = _child(data, track, b"tkhd")
        if header is None:
            raise _malformed("its video track has no tkhd")
        version = data[header.payload] if header.payload < header.end else None
        # The 3x3 matrix (a, b, u, c, d, v, x, y, w), then width and height in 16.16 fixed point.
        offset = {0: 40, 1: 52}.get(version) if version is not None else None
        if offset is None or header.end - header.payload < offset + 44:
            raise _malformed("its video track's tkhd is malformed")
        a, _, _, _, d, *_ = struct.unpack_from(">9i", data, header.payload + offset)
        fixed_width, fixed_height = struct.unpack_from(">II", data, header.payload + offset + 36)
        width, height = fixed_width >> 16, fixed_height >> 16
        if a == 0 and d == 0:  # rotated a quarter turn
            width, height = height, width
        if width == 0 or height == 0:
            raise _malformed("its video track declares no size")
        check_frame_size(width, height)
        return width, height, _sample_count(data, track)
    raise MediaRefused.of(Refusal.UNSUPPORTED_TYPE, "is an MP4 with no video track, not a video")


def _handler(data: bytes, track: Box) -> bytes | None:
    media = _child(data, track, b"mdia")
    handler = _child(data, media, b"hdlr") if media is not None else None
    if handler is None or handler.end - handler.payload < 12:
        return None
    return data[handler.payload + 8 : handler.payload + 12]


def _sample_count(data: bytes, track: Box) -> int:
    """The track's samples (its frames) from its sample size box; 0 when fragmented."""
    box: Box | None = track
    for kind in (b"mdia", b"minf", b"stbl", b"stsz"):
        box = _child(data, box, kind) if box is not None else None
    if box is None or box.end - box.payload < 12:
        return 0
    return int(struct.unpack_from(">I", data, box.payload + 8)[0])


def _child(data: bytes, parent: Box, kind: bytes) -> Box | None:
    return next((box for box in boxes(data, parent.payload, parent.end) if box.kind == kind), None)


def _blank_metadata(data: bytes, top: list[Box]) -> bytes:
    """The file with every metadata box at the top level, in the movie and in each track turned into
    a `free` box of the same size with a zeroed payload."""
    out = bytearray(data)

    def blank(container: list[Box]) -> None:
        for box in container:
            if box.kind in METADATA_BOXES:
                out[box.start + 4 : box.start + 8] = b"free"
                out[box.payload : box.end] = bytes(box.end - box.payload)
            elif box.kind in _METADATA_CONTAINERS:
                blank(list(boxes(data, box.payload, box.end)))

    blank(top)
    return bytes(out)


def _name(kind: bytes) -> str:
    return repr(kind.decode("latin-1"))


def _truncated(what: str) -> MediaRefused:
    return MediaRefused.truncated(what)


def _malformed(what: str) -> MediaRefused:
    return MediaRefused.malformed("MP4", what)
