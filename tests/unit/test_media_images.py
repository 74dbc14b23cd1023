"""Image uploads: each accepted type comes out re-encoded without metadata, upright, with a thumbnail;
each hostile one is refused with the reason that names what is wrong."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps, PngImagePlugin

from media_svc.errors import MediaRefused, Refusal
from media_svc.images import MAX_ANIMATION_PIXELS, MAX_FRAMES, THUMBNAIL_SIDE
from media_svc.inspection import inspect_media
from media_svc.media import MAX_IMAGE_BYTES, Media
from tests.media_samples import (
    SECRET,
    animation,
    encode,
    exif_with_gps,
    gif_frames,
    picture,
    png_header_only,
    png_of_zeros,
)

STILLS = [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
ANIMATED = [("GIF", "image/gif"), ("WEBP", "image/webp"), ("PNG", "image/png")]


def refusal(data: bytes, claimed: str) -> MediaRefused:
    with pytest.raises(MediaRefused) as caught:
        inspect_media(data, claimed)
    return caught.value


def reopened(media: Media) -> Image.Image:
    image = Image.open(io.BytesIO(media.sanitized))
    image.load()
    return image


def assert_thumbnail(media: Media) -> None:
    assert media.thumbnail is not None
    thumbnail = Image.open(io.BytesIO(media.thumbnail))
    assert thumbnail.format == "JPEG"
    assert max(thumbnail.size) <= THUMBNAIL_SIDE
    assert abs(thumbnail.width / thumbnail.height - media.width / media.height) < 0.05


@pytest.mark.parametrize(("fmt", "content_type"), STILLS)
def test_each_still_type_is_accepted_and_re_encoded_in_its_own_format(fmt: str, content_type: str) -> None:
    original = encode(picture(), fmt)

    media = inspect_media(original, content_type)

    assert (media.content_type, media.width, media.height) == (content_type, 120, 80)
    assert (media.frames, media.duration) == (1, 0.0)
    assert reopened(media).format == fmt
    assert_thumbnail(media)


@pytest.mark.parametrize(("fmt", "content_type"), ANIMATED)
def test_animations_keep_every_frame_and_their_timing(fmt: str, content_type: str) -> None:
    media = inspect_media(animation(fmt, frames=4, duration=150), content_type)

    assert (media.frames, media.duration) == (4, 0.6)
    image = reopened(media)
    assert getattr(image, "n_frames", 1) == 4
    assert image.info.get("loop") == 0
    assert_thumbnail(media)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_lossless_images_keep_their_pixels_exactly(fmt: str) -> None:
    original = picture().convert("P") if fmt == "GIF" else picture()

    media = inspect_media(encode(original, fmt), f"image/{fmt.lower()}")

    assert reopened(media).convert("RGB").tobytes() == original.convert("RGB").tobytes()


def test_a_palette_png_keeps_its_palette_and_transparency() -> None:
    original = picture().convert("P")
    data = encode(original, "PNG", transparency=0)

    image = reopened(inspect_media(data, "image/png"))

    assert image.mode == "P"
    assert image.info.get("transparency") == 0


def test_a_transparent_image_gets_a_white_backed_thumbnail() -> None:
    clear = Image.new("RGBA", (50, 50), (255, 0, 0, 0))

    media = inspect_media(encode(clear, "PNG"), "image/png")

    assert media.thumbnail is not None
    assert Image.open(io.BytesIO(media.thumbnail)).getpixel((25, 25)) == pytest.approx((255, 255, 255), abs=2)
    assert reopened(media).getpixel((25, 25)) == (255, 0, 0, 0)


def test_a_jpeg_keeps_its_quantization_tables() -> None:
    data = encode(picture(), "JPEG", quality=60)

    media = inspect_media(data, "image/jpeg")

    assert reopened(media).quantization == Image.open(io.BytesIO(data)).quantization  # type: ignore[attr-defined]


def test_a_cmyk_jpeg_becomes_rgb() -> None:
    media = inspect_media(encode(picture(mode="CMYK"), "JPEG"), "image/jpeg")

    assert reopened(media).mode == "RGB"


def test_a_sixteen_bit_greyscale_png_is_accepted_with_a_thumbnail() -> None:
    deep = Image.linear_gradient("L").resize((64, 64)).convert("I").point(lambda v: v * 256).convert("I;16")

    media = inspect_media(encode(deep, "PNG"), "image/png")

    assert reopened(media).mode == "I;16"
    assert_thumbnail(media)


def test_a_large_image_gets_a_thumbnail_of_at_most_400_px_on_its_long_side() -> None:
    media = inspect_media(encode(picture((1600, 900)), "JPEG"), "image/jpeg")

    assert media.thumbnail is not None
    assert Image.open(io.BytesIO(media.thumbnail)).size == (400, 225)


# Metadata.


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_and_gps_are_gone_after_sanitizing(fmt: str) -> None:
    data = encode(picture(), fmt, exif=exif_with_gps())
    assert SECRET in data

    media = inspect_media(data, f"image/{fmt.lower()}")

    assert SECRET not in media.sanitized
    image = reopened(media)
    assert "exif" not in image.info
    assert not image.getexif()
    assert not image.getexif().get_ifd(0x8825)  # GPSInfo


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {"comment": SECRET, "xmp": b"<x:xmpmeta>" + SECRET + b"</x:xmpmeta>"}),
        ("WEBP", {"xmp": b"<x:xmpmeta>" + SECRET + b"</x:xmpmeta>"}),
        ("GIF", {"comment": SECRET}),
    ],
)
def test_comments_and_xmp_are_gone(fmt: str, options: dict[str, bytes]) -> None:
    data = encode(picture(), fmt, **options)
    assert SECRET in data

    media = inspect_media(data, f"image/{fmt.lower()}")

    assert SECRET not in media.sanitized
    assert not {"comment", "xmp"} & set(reopened(media).info)


def test_png_text_chunks_are_gone() -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Location", SECRET.decode())
    text.add_text("Comment", SECRET.decode(), zip=True)
    data = encode(picture(), "PNG", pnginfo=text)

    media = inspect_media(data, "image/png")

    assert SECRET not in media.sanitized
    assert reopened(media).info == {}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_exif_orientation_is_applied_to_the_pixels(orientation: int) -> None:
    original = picture()
    data = encode(original, "PNG", exif=exif_with_gps(orientation))

    media = inspect_media(data, "image/png")

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert (media.width, media.height) == upright.size
    assert reopened(media).tobytes() == upright.convert("RGB").tobytes()


def test_a_colour_profile_is_applied_and_dropped() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(picture(), "PNG", icc_profile=srgb)

    image = reopened(inspect_media(data, "image/png"))

    assert "icc_profile" not in image.info
    assert image.getpixel((0, 0)) == pytest.approx((255, 0, 0), abs=3)


def test_an_unusable_colour_profile_is_dropped_and_the_image_kept() -> None:
    data = encode(picture(), "PNG", icc_profile=b"not a profile at all")

    image = reopened(inspect_media(data, "image/png"))

    assert "icc_profile" not in image.info
    assert image.getpixel((0, 0)) == (255, 0, 0)


# What the uploader claims.


def test_a_lying_content_type_is_refused_and_names_the_real_type() -> None:
    error = refusal(encode(picture(), "PNG"), "image/jpeg")

    assert error.refusal is Refusal.TYPE_MISMATCH
    assert error.metadata["field"] == "content_type"
    assert "image/png" in error.message


@pytest.mark.parametrize(
    "claimed", ["", "text/plain", "image/svg+xml", "image/jpg", "application/octet-stream"]
)
def test_a_content_type_we_do_not_accept_is_refused(claimed: str) -> None:
    error = refusal(encode(picture(), "JPEG"), claimed)

    assert error.refusal is Refusal.UNSUPPORTED_TYPE
    assert error.violations[0].field == "content_type"


def test_the_claimed_type_is_read_without_case_or_parameters() -> None:
    media = inspect_media(encode(picture(), "JPEG"), "Image/JPEG; charset=binary")

    assert media.content_type == "image/jpeg"


@pytest.mark.parametrize(
    "content",
    [
        b"hello, world\n" * 100,  # a text file named photo.png
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"BM" + bytes(100),  # BMP
        b"II*\x00" + bytes(100),  # TIFF
        b"%PDF-1.7\n" + bytes(100),
    ],
)
def test_content_of_no_accepted_type_is_refused_whatever_it_claims(content: bytes) -> None:
    error = refusal(content, "image/png")

    assert error.refusal is Refusal.UNSUPPORTED_TYPE
    assert error.violations[0].field == "data"


def test_an_empty_upload_is_refused() -> None:
    assert refusal(b"", "image/png").refusal is Refusal.EMPTY


def test_a_heif_image_is_not_taken_for_a_video() -> None:
    heif = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"

    error = refusal(heif, "video/mp4")

    assert error.refusal is Refusal.UNSUPPORTED_TYPE
    assert "heic" in error.message


# Broken and hostile files.


@pytest.mark.parametrize(("fmt", "content_type"), STILLS)
@pytest.mark.parametrize("cut", [1, 2, 10, 0.5])
def test_a_truncated_image_is_refused(fmt: str, content_type: str, cut: float) -> None:
    data = encode(picture(), fmt)
    keep = int(len(data) * cut) if cut < 1 else len(data) - int(cut)

    error = refusal(data[:keep], content_type)

    assert error.refusal is Refusal.TRUNCATED, error.message


def test_a_truncated_animation_is_refused() -> None:
    data = animation("GIF", frames=5)

    assert refusal(data[: len(data) * 3 // 4], "image/gif").refusal is Refusal.TRUNCATED


def test_a_png_with_a_corrupt_chunk_is_refused() -> None:
    data = bytearray(encode(picture(), "PNG"))
    data[40] ^= 0xFF  # inside IDAT: its CRC no longer matches

    assert refusal(bytes(data), "image/png").refusal is Refusal.MALFORMED


def test_a_jpeg_with_a_garbage_body_is_refused() -> None:
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20

    assert refusal(data, "image/jpeg").refusal in (Refusal.MALFORMED, Refusal.TRUNCATED)


def test_a_decompression_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = png_of_zeros(15_000, 15_000)  # 225 megapixels in about 250 KB
    assert len(bomb) < 1_000_000

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    error = refusal(bomb, "image/png")

    assert error.refusal is Refusal.DECOMPRESSION_BOMB


def test_too_many_pixels_is_refused_on_the_header_before_decoding() -> None:
    # 40.008 megapixels and no pixel data at all: only the header was read.
    error = refusal(png_header_only(8_000, 5_001), "image/png")

    assert error.refusal is Refusal.TOO_MANY_PIXELS
    assert "8000x5001" in error.message


def test_an_image_at_the_pixel_limit_is_accepted() -> None:
    media = inspect_media(png_of_zeros(8_000, 5_000), "image/png")

    assert (media.width, media.height) == (8_000, 5_000)


def test_a_gif_frame_reaching_past_its_screen_counts_at_its_full_size() -> None:
    error = refusal(gif_frames(screen=(10, 10), frame=(9_000, 9_000), count=1), "image/gif")

    assert error.refusal is Refusal.TOO_MANY_PIXELS


def test_an_animation_with_too_many_frames_is_refused_before_decoding() -> None:
    error = refusal(gif_frames(screen=(10, 10), frame=(10, 10), count=MAX_FRAMES + 1), "image/gif")

    assert error.refusal is Refusal.DECOMPRESSION_BOMB


def test_an_animation_with_too_many_pixels_in_all_is_refused_before_decoding() -> None:
    side = 2_000
    frames = MAX_ANIMATION_PIXELS // (side * side) + 1

    error = refusal(gif_frames(screen=(side, side), frame=(side, side), count=frames), "image/gif")

    assert error.refusal is Refusal.DECOMPRESSION_BOMB


def test_compressed_metadata_that_inflates_too_far_is_refused() -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("k", "A" * 5_000_000, zip=True)  # a few KB that inflate to 5 MB

    error = refusal(encode(picture(), "PNG", pnginfo=text), "image/png")

    assert error.refusal is Refusal.DECOMPRESSION_BOMB


def test_an_image_over_5_mb_is_refused_before_parsing() -> None:
    data = encode(picture(), "PNG")
    data += bytes(MAX_IMAGE_BYTES + 1 - len(data))

    error = refusal(data, "image/png")

    assert error.refusal is Refusal.TOO_LARGE
    assert "5 MB" in error.message
