"""The read-time merge of hybrid fan-out, on plain lists: exact against fan-out on read, across pages."""

from __future__ import annotations

import random

from timeline_svc.merge import merge_window


def test_ids_are_taken_only_down_to_the_highest_floor() -> None:
    home, celebrity = [10, 8, 6], [9, 3]
    assert merge_window(home, [celebrity], None, 10) == ([10, 9, 8, 6], True)
    assert merge_window(home, [celebrity], None, 3) == ([10, 9, 8], False)
    assert merge_window(home, [celebrity], 8, 10) == ([6], True)


def test_an_empty_celebrity_list_sets_no_floor_and_an_empty_home_knows_nothing() -> None:
    assert merge_window([10, 8], [[]], None, 5) == ([10, 8], True)
    assert merge_window([], [[9, 3]], None, 5) == ([], True)


def test_a_complete_celebrity_list_sets_no_floor() -> None:
    home, celebrity = [10, 8, 6], [9, 7]
    assert merge_window(home, [celebrity], None, 10) == ([10, 9, 8, 7], True)
    assert merge_window(home, [celebrity], None, 10, [True]) == ([10, 9, 8, 7, 6], True)
    assert merge_window(home, [celebrity], None, 5, [True]) == ([10, 9, 8, 7, 6], False)
    # Below the home timeline's own floor nothing is known, complete list or not.
    assert merge_window([10, 8], [[9, 3]], None, 5, [True]) == ([10, 9, 8], True)
    # Every source complete: nothing lies below what they hold.
    assert merge_window([10, 8], [[9, 3]], None, 5, [True], home_complete=True) == ([10, 9, 8, 3], False)
    assert merge_window([], [[9, 3]], 9, 5, [True], home_complete=True) == ([3], False)
    assert merge_window([], [], None, 5, home_complete=True) == ([], False)
    # A complete home timeline under an incomplete list: the list's floor holds.
    assert merge_window([10, 2], [[9, 5]], None, 5, [False], home_complete=True) == ([10, 9, 5], True)


def _read_all(
    home: list[int],
    lists: list[list[int]],
    truth: list[int],
    size: int,
    complete: list[bool],
    home_complete: bool = False,
) -> list[int]:
    """What HomeTimeline._ids does: the merge, then the source of truth past its window."""
    out: list[int] = []
    before: int | None = None
    while True:
        ids, more = merge_window(home, lists, before, size, complete, home_complete)
        if more:
            cursor = ids[-1] if ids else before
            ids.extend([t for t in truth if cursor is None or t < cursor][: size - len(ids)])
        out.extend(ids)
        if len(ids) < size:
            return out
        before = ids[-1]


def test_merged_pages_equal_fan_out_on_read_for_random_timelines() -> None:
    rng = random.Random(5)
    for _ in range(300):
        authors = {a: sorted(rng.sample(range(1, 2000), rng.randint(0, 60)), reverse=True) for a in range(8)}
        celebrities = rng.sample(range(8), rng.randint(0, 3))
        truth = sorted({t for ids in authors.values() for t in ids}, reverse=True)
        # The home timeline: the newest `window` of everything fanned out on write, which is every
        # tweet of ordinary authors and, from before their promotion, some of the celebrities'.
        promoted_at = {c: rng.randint(0, 2000) for c in celebrities}
        written = sorted(
            {t for a, ids in authors.items() for t in ids if a not in promoted_at or t < promoted_at[a]},
            reverse=True,
        )
        home = written[: rng.randint(1, 80)] if written else []
        home_complete = len(home) == len(written) and rng.random() < 0.7
        lists = [authors[c][: rng.randint(1, 40)] for c in celebrities]
        # A list known to hold every tweet of its author (a rebuild found fewer than it asked for).
        complete = [
            len(kept) == len(authors[c]) and rng.random() < 0.7
            for kept, c in zip(lists, celebrities, strict=True)
        ]
        size = rng.randint(1, 15)
        assert _read_all(home, lists, truth, size, complete, home_complete) == truth
