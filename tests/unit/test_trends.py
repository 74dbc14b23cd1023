"""The trends ranking: a rise against a tag's own baseline, not raw counts."""

from __future__ import annotations

import pytest

from meshkit.errors import InvalidArgument
from tweets_svc.trends import rank, window_minutes


def test_a_rise_ranks_above_a_larger_steady_count() -> None:
    current = {"steady": 100.0, "burst": 20.0, "rare": 2.0, "slowing": 10.0}
    baseline = {"steady": 600.0, "burst": 6.0, "slowing": 300.0}  # six windows before
    ranked = rank(current, baseline, baseline_windows=6, min_count=3, limit=10)
    assert [t.tag for t in ranked] == ["burst", "steady", "slowing"]  # "rare": below min_count
    steady = ranked[1]
    assert (steady.count, steady.expected, steady.score) == (100, 100.0, 0.0)
    assert ranked[2].score < 0  # used less than usual
    assert [t.tag for t in rank(current, baseline, 6, 3, limit=1)] == ["burst"]


def test_windows_are_named() -> None:
    assert (window_minutes(""), window_minutes("15m"), window_minutes("6h")) == (60, 15, 360)
    with pytest.raises(InvalidArgument):
        window_minutes("1d")
