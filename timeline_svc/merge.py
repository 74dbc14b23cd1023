"""Hybrid fan-out at read time: a home timeline merged with the lists of the celebrities it
follows, exactly, and where the source of truth (PostgreSQL through the owners) must take over."""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence


def merge_window(
    home: Sequence[int],
    celebrities: Sequence[Sequence[int]],
    before: int | None,
    limit: int,
    complete: Sequence[bool] = (),
    home_complete: bool = False,
) -> tuple[list[int], bool]:
    """Up to `limit` ids below `before`, newest first, from the home timeline and the celebrities'
    lists (each everything it holds, newest first), and whether the caller must go on below the
    last of them from the source of truth. `complete[i]` (`home_complete`): the i-th celebrity list
    (the home timeline) holds every id of its sources (social.timelines COMPLETE).

    Each source holds every id of its authors above its oldest id and knows nothing below it, so
    ids are taken only down to the highest of those floors: below it some source has a gap. An
    empty home timeline knows nothing (all comes from the source of truth) unless it is complete;
    an empty celebrity list is a celebrity with no tweets to share, and a complete source has
    nothing below it: neither sets a floor. With no floor at all, every source is whole and
    nothing lies below what they hold.
    """
    if not home and not home_complete:
        return [], True
    if not any(celebrities) and not home_complete:
        # The home timeline alone is newest first and holds each id once: the window is a slice.
        start = 0 if before is None else bisect.bisect_right(home, -before, key=operator.neg)
        window = list(home[start : start + limit])
        return window, len(window) < limit
    whole = [*complete, *([False] * (len(celebrities) - len(complete)))]
    floors = [ids[-1] for ids, done in zip(celebrities, whole, strict=True) if ids and not done]
    if not home_complete:
        floors.append(home[-1])
    floor = max(floors, default=None)
    # Each source is newest first: its part of the window is a slice of at most `limit` ids.
    taken: set[int] = set()
    for ids in (home, *celebrities):
        start = 0 if before is None else bisect.bisect_right(ids, -before, key=operator.neg)
        end = len(ids) if floor is None else bisect.bisect_right(ids, -floor, key=operator.neg)
        taken.update(ids[start : min(end, start + limit)])
    merged = sorted(taken, reverse=True)
    if len(merged) >= limit or floor is None:
        return merged[:limit], False
    return merged, True
