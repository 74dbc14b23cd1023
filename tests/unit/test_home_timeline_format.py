"""Decoding a stored home timeline: each id once, newest first, markers apart, whatever the order
and repeats the deliveries left."""

from __future__ import annotations

import random

from social.timelines import BUILT, COMPLETE, REBUILDING, decode, pack


def test_decoded_ids_are_unique_newest_first_with_markers_apart() -> None:
    rng = random.Random(7)
    for _ in range(300):
        ids = rng.sample(range(1, 10**15), rng.randint(0, 50))
        # Arrival order is only roughly id order; redelivery repeats ids; markers are negative.
        arrived = sorted(ids, key=lambda t: t + rng.randint(-(10**13), 10**13))
        arrived += rng.sample(arrived, min(len(arrived), rng.randint(0, 5)))
        markers = rng.sample(range(1, 1000), rng.randint(0, 3))
        stored = [*arrived, *(-m for m in markers), *(-m for m in markers[:1])]
        if rng.random() < 0.2:
            rng.shuffle(stored)
        header = rng.choice([BUILT, COMPLETE, REBUILDING + rng.randbytes(7)])
        snapshot = decode(header + pack(stored))
        assert snapshot.tweet_ids == sorted(set(ids), reverse=True)
        assert snapshot.celebrities == sorted(set(markers))
        assert snapshot.rebuilding == (header not in (BUILT, COMPLETE))
        assert snapshot.complete == (header == COMPLETE)
