"""Hostile bytes, generated: any damage to an accepted file is either still accepted or refused with
a reason (never another error), and whatever is accepted comes out as media that is accepted again
with the same size. `make fuzz` runs more examples."""

from __future__ import annotations

import os
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media_svc.errors import MediaRefused
from media_svc.inspection import inspect_media
from tests.media_samples import TINY_MP4, animation, encode, exif_with_gps, mp4, picture

EXAMPLES = min(int(os.environ.get("FUZZ_EXAMPLES", "200")), 3000)
SAMPLES = [
    ("image/jpeg", encode(picture(), "JPEG", exif=exif_with_gps(6))),
    ("image/png", encode(picture(), "PNG", exif=exif_with_gps(6))),
    ("image/png", encode(picture().convert("P"), "PNG", transparency=0)),
    ("image/png", animation("PNG")),
    ("image/gif", animation("GIF")),
    ("image/webp", animation("WEBP")),
    ("image/webp", encode(picture(), "WEBP", lossless=True)),
    ("video/mp4", TINY_MP4.read_bytes()),
    ("video/mp4", mp4()),
]


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    content_type, original = draw(st.sampled_from(SAMPLES))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        change = draw(st.sampled_from(["flip", "cut", "insert"]))
        if change == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif change == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return content_type, bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_media_is_refused_with_a_reason_or_accepted_whole(sample: tuple[str, bytes]) -> None:
    content_type, data = sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the broken EXIF it skips
        try:
            media = inspect_media(data, content_type)
        except MediaRefused as refused:
            assert refused.violations and refused.violations[0].field in ("data", "content_type")
            return
        again = inspect_media(media.sanitized, media.content_type)

    assert (again.width, again.height, again.frames) == (media.width, media.height, media.frames)
