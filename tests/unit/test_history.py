"""The fault tests' history checker: it finds lost, duplicated and unexpected writes, and only those."""

from __future__ import annotations

import pytest

from tests.faults.history import History, Outcome, check


def _history(*writes: tuple[str, Outcome], targets: tuple[str, ...] = ("user", "home")) -> History:
    history = History()
    for write_id, outcome in writes:
        history.attempt(write_id, targets)
        history.complete(write_id, outcome)
    return history


def test_a_clean_history_is_valid_and_counted() -> None:
    history = _history(("w1", Outcome.OK), ("w2", Outcome.OK), ("w3", Outcome.UNKNOWN))
    report = check(history, {"user": ["w2", "w1"], "home": ["w1", "w2"]})
    assert report.valid
    assert (report.ok, report.unknown, report.recovered, report.reads) == (2, 1, 0, 4)
    assert report.line("x") == (
        "scenario x: lost=0 duplicated=0 unexpected=0 ok=2 unknown=1 recovered=0 failed=0 reads=4"
    )


def test_an_acknowledged_write_missing_from_one_target_is_lost() -> None:
    report = check(_history(("w1", Outcome.OK)), {"user": ["w1"], "home": []})
    assert report.lost == {("home", "w1")}
    assert not report.valid


def test_a_reader_that_returned_nothing_loses_what_it_should_hold() -> None:
    report = check(_history(("w1", Outcome.OK)), {"user": ["w1"]})
    assert report.lost == {("home", "w1")}


def test_an_unknown_write_that_committed_anywhere_must_be_everywhere() -> None:
    history = _history(("w1", Outcome.UNKNOWN))
    assert check(history, {"user": [], "home": []}).valid  # never committed: fine
    report = check(history, {"user": ["w1"], "home": []})
    assert report.lost == {("home", "w1")}
    assert report.recovered == 1


def test_a_write_seen_twice_is_duplicated_unless_the_reader_dedupes_by_contract() -> None:
    history = _history(("w1", Outcome.OK), targets=("user", "stream"))
    report = check(history, {"user": ["w1", "w1"], "stream": ["w1", "w1"]}, deduped=["stream"])
    assert report.duplicated == {("user", "w1")}


def test_writes_never_attempted_refused_or_meant_for_another_reader_are_unexpected() -> None:
    history = _history(("w1", Outcome.FAILED), ("w2", Outcome.OK), targets=("user",))
    report = check(history, {"user": ["w1", "w2", "ghost"], "home": ["w2"]})
    assert report.unexpected == {("user", "w1"), ("user", "ghost"), ("home", "w2")}
    assert report.lost == frozenset()


def test_ids_are_unique_and_completed_only_after_an_attempt() -> None:
    history = History()
    history.attempt("w1", ["user"])
    with pytest.raises(ValueError, match="twice"):
        history.attempt("w1", ["user"])
    with pytest.raises(ValueError, match="never attempted"):
        history.complete("w2", Outcome.OK)
