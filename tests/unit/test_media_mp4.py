"""MP4 uploads: checked by their boxes, not their name; metadata boxes blanked in place; every box
whose size lies, every truncation and every non-MP4 refused with its reason."""

from __future__ import annotations

import struct

import pytest

from media_svc.errors import MediaRefused, Refusal
from media_svc.inspection import inspect_media
from media_svc.media import MAX_VIDEO_BYTES
from media_svc.mp4 import boxes
from tests.media_samples import (
    IDENTITY,
    QUARTER_TURN,
    SECRET,
    TINY_MP4,
    box,
    full_box,
    location_udta,
    mp4,
    mvhd,
    track,
)


def refusal(data: bytes, claimed: str = "video/mp4") -> MediaRefused:
    with pytest.raises(MediaRefused) as caught:
        inspect_media(data, claimed)
    return caught.value


def top_level(data: bytes) -> list[bytes]:
    return [found.kind for found in boxes(data, 0, len(data), top_level=True)]


def test_a_real_encoders_mp4_is_accepted_with_its_size_duration_and_frames() -> None:
    data = TINY_MP4.read_bytes()

    media = inspect_media(data, "video/mp4")

    assert (media.content_type, media.width, media.height) == ("video/mp4", 64, 48)
    assert (media.duration, media.frames) == (1.0, 10)
    assert media.thumbnail is None


def test_a_real_encoders_title_and_location_are_blanked_in_place() -> None:
    data = TINY_MP4.read_bytes()
    assert b"tweetmesh fixture" in data
    # The location, as FFmpeg writes it: a 3GPP `loci` box (binary latitude and longitude).
    location = data[data.index(b"loci") : data.index(b"earth") + 5]

    sanitized = inspect_media(data, "video/mp4").sanitized

    assert b"tweetmesh fixture" not in sanitized
    assert location not in sanitized
    # Same length, same boxes where they were: the sample offsets into mdat still hold.
    assert len(sanitized) == len(data)
    assert top_level(sanitized) == top_level(data)
    start = data.index(b"mdat")
    assert sanitized[start:] == data[start:]
    # And the result is itself an acceptable MP4.
    assert inspect_media(sanitized, "video/mp4").duration == 1.0


def test_a_built_mp4_is_accepted() -> None:
    media = inspect_media(mp4(), "video/mp4")

    assert (media.width, media.height, media.duration, media.frames) == (640, 360, 2.5, 75)


def test_metadata_in_the_movie_in_tracks_and_at_the_top_level_is_blanked() -> None:
    movie = box(b"moov", mvhd(), track(), location_udta())
    tracked = box(b"moov", mvhd(), track(640, 360, b"vide", IDENTITY, 75, location_udta()))
    for data in (
        mp4(movie=movie),
        mp4(movie=tracked),
        mp4() + box(b"uuid", bytes(16), b"<x:xmpmeta>" + SECRET + b"</x:xmpmeta>"),
        mp4() + box(b"meta", bytes(4), SECRET),
    ):
        assert SECRET in data

        sanitized = inspect_media(data, "video/mp4").sanitized

        assert SECRET not in sanitized
        assert b"udta" not in sanitized
        assert len(sanitized) == len(data)


def test_a_video_rotated_a_quarter_turn_has_its_displayed_size() -> None:
    movie = box(b"moov", mvhd(), track(640, 360, b"vide", QUARTER_TURN))

    media = inspect_media(mp4(movie=movie), "video/mp4")

    assert (media.width, media.height) == (360, 640)


def test_version_1_headers_64_bit_sizes_and_a_last_box_to_the_end_are_read() -> None:
    movie = box(b"moov", mvhd(timescale=90_000, duration=450_000, version=1), track())
    media_data = bytes(1000)
    large_mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + len(media_data)) + media_data
    to_the_end = struct.pack(">I4s", 0, b"mdat") + media_data

    assert inspect_media(mp4(movie=movie, media_data=large_mdat), "video/mp4").duration == 5.0
    assert inspect_media(mp4(movie=movie, media_data=to_the_end), "video/mp4").duration == 5.0


def test_a_fragmented_mp4_takes_its_duration_from_the_movie_extends_header() -> None:
    extends = box(b"mvex", full_box(b"mehd", 0, struct.pack(">I", 3000)))
    movie = box(b"moov", mvhd(duration=0), track(), extends)

    assert inspect_media(mp4(movie=movie), "video/mp4").duration == 3.0


# Not an MP4, or not a video.


@pytest.mark.parametrize("brand", [b"qt  ", b"heic", b"avif", b"3gp4", b"M4A "])
def test_iso_media_files_of_other_brands_are_refused(brand: bytes) -> None:
    error = refusal(mp4(brands=(brand,)))

    assert error.refusal is Refusal.UNSUPPORTED_TYPE
    assert brand.decode().strip() in error.message


def test_a_compatible_mp4_brand_is_enough() -> None:
    assert inspect_media(mp4(brands=(b"qt  ", b"isom")), "video/mp4").width == 640


def test_an_mp4_without_a_video_track_is_refused() -> None:
    sound = box(b"moov", mvhd(), track(0, 0, b"soun"))

    error = refusal(mp4(movie=sound))

    assert error.refusal is Refusal.UNSUPPORTED_TYPE
    assert "no video track" in error.message


def test_a_renamed_text_file_is_refused() -> None:
    error = refusal(b"just some notes, saved as clip.mp4\n" * 10)

    assert error.refusal is Refusal.UNSUPPORTED_TYPE


def test_an_image_claimed_as_video_is_a_lie() -> None:
    error = refusal(TINY_MP4.read_bytes(), "image/png")

    assert error.refusal is Refusal.TYPE_MISMATCH
    assert "video/mp4" in error.message


# Boxes that lie, files cut short.


@pytest.mark.parametrize("cut", [1, 7, 100, 3000, 7000])
def test_a_truncated_mp4_is_refused(cut: int) -> None:
    data = mp4()

    error = refusal(data[: len(data) - cut])

    assert error.refusal is Refusal.TRUNCATED, error.message


def test_a_real_mp4_cut_short_is_refused() -> None:
    data = TINY_MP4.read_bytes()

    assert refusal(data[: len(data) // 2]).refusal is Refusal.TRUNCATED


def test_a_box_claiming_more_than_the_file_holds_is_refused() -> None:
    data = bytearray(mp4())
    moov = data.index(b"moov") - 4
    struct.pack_into(">I", data, moov, struct.unpack_from(">I", data, moov)[0] + 10_000)

    error = refusal(bytes(data))

    assert error.refusal is Refusal.TRUNCATED
    assert "'moov'" in error.message


def test_a_box_claiming_less_than_its_header_is_refused() -> None:
    data = bytearray(mp4())
    struct.pack_into(">I", data, data.index(b"mdat") - 4, 4)

    assert refusal(bytes(data)).refusal is Refusal.MALFORMED


def test_a_nested_box_reaching_past_its_container_is_refused() -> None:
    data = bytearray(mp4())
    tkhd = data.index(b"tkhd") - 4
    struct.pack_into(">I", data, tkhd, struct.unpack_from(">I", data, tkhd)[0] + 1_000)

    error = refusal(bytes(data))

    assert error.refusal is Refusal.MALFORMED
    assert "past the end of its container" in error.message


def test_a_lie_deep_in_the_movie_is_found_even_where_nothing_is_read() -> None:
    # The sound track after the video track is not needed for the answer; its boxes must nest all
    # the same.
    sound = bytearray(track(0, 0, b"soun"))
    stsz = sound.index(b"stsz") - 4
    struct.pack_into(">I", sound, stsz, struct.unpack_from(">I", sound, stsz)[0] + 8)
    movie = box(b"moov", mvhd(), track(), bytes(sound))

    assert refusal(mp4(movie=movie)).refusal is Refusal.MALFORMED


def test_bytes_after_the_last_box_are_refused() -> None:
    assert refusal(mp4() + b"xyz").refusal is Refusal.TRUNCATED


@pytest.mark.parametrize(
    ("movie", "media_data", "complaint"),
    [
        (b"", None, "moov"),
        (box(b"moov", mvhd(), track()) * 2, None, "moov"),
        (None, b"", "mdat"),
        (box(b"moov", track()), None, "mvhd"),
        (box(b"moov", mvhd(timescale=0), track()), None, "duration"),
        (box(b"moov", mvhd(duration=0), track()), None, "duration"),
        (box(b"moov", mvhd(), track(0, 360)), None, "size"),
        (
            box(b"moov", mvhd(), box(b"trak", box(b"mdia", full_box(b"hdlr", 0, bytes(4), b"vide")))),
            None,
            "tkhd",
        ),
    ],
)
def test_a_movie_missing_what_a_video_needs_is_refused(
    movie: bytes | None, media_data: bytes | None, complaint: str
) -> None:
    error = refusal(mp4(movie=movie, media_data=media_data))

    assert error.refusal is Refusal.MALFORMED
    assert complaint in error.message


def test_a_video_of_too_many_pixels_is_refused() -> None:
    error = refusal(mp4(movie=box(b"moov", mvhd(), track(8_000, 6_000))))

    assert error.refusal is Refusal.TOO_MANY_PIXELS


def test_a_video_over_50_mb_is_refused_before_parsing() -> None:
    data = mp4()
    data += box(b"free", bytes(MAX_VIDEO_BYTES + 1 - len(data) - 8))

    error = refusal(data)

    assert error.refusal is Refusal.TOO_LARGE
    assert "50 MB" in error.message
