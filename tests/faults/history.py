"""A history checker in the spirit of Jepsen's queue checker: every write a client attempted, with
its outcome, against what reading everything back found.

A write has an id (the test puts it in the tweet's text and request_id) and the readers it must
reach (the author's user timeline, each follower's home timeline, a live stream). Its outcome is
`ok` (acknowledged), `failed` (refused with a status that says nothing was stored) or `unknown`
(no answer, or an answer that does not say: UNAVAILABLE, DEADLINE_EXCEEDED). A write that shows up
in any reader committed; a committed write must show up in every reader it targets.

- lost: a target missing a write that was acknowledged or is known to have committed;
- duplicated: a write seen more than once by one reader (readers that may repeat by contract,
  like a resumed live stream, are checked after the client-side dedupe they document);
- unexpected: a write seen that was never attempted for that reader, or that was refused.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass
class History:
    """What clients attempted. Thread-safe enough for CPython: each write is touched by one thread."""

    targets: dict[str, frozenset[str]] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def attempt(self, write_id: str, targets: Iterable[str]) -> None:
        if write_id in self.targets:
            raise ValueError(f"write {write_id!r} attempted twice: ids must be unique")
        self.targets[write_id] = frozenset(targets)
        self.outcomes[write_id] = Outcome.UNKNOWN

    def complete(self, write_id: str, outcome: Outcome) -> None:
        if write_id not in self.targets:
            raise ValueError(f"write {write_id!r} completed but never attempted")
        self.outcomes[write_id] = outcome

    def acknowledged(self) -> list[str]:
        return [w for w, o in self.outcomes.items() if o is Outcome.OK]


@dataclass(frozen=True)
class Report:
    lost: frozenset[tuple[str, str]]  # (reader, write id)
    duplicated: frozenset[tuple[str, str]]
    unexpected: frozenset[tuple[str, str]]
    ok: int
    failed: int
    unknown: int
    recovered: int  # unknown outcome, yet committed
    reads: int

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def line(self, scenario: str) -> str:
        return (
            f"scenario {scenario}: lost={len(self.lost)} duplicated={len(self.duplicated)}"
            f" unexpected={len(self.unexpected)} ok={self.ok} unknown={self.unknown}"
            f" recovered={self.recovered} failed={self.failed} reads={self.reads}"
        )

    def explain(self, limit: int = 10) -> str:
        parts = []
        for name in ("lost", "duplicated", "unexpected"):
            items = sorted(getattr(self, name))
            if items:
                parts.append(f"{name}: {items[:limit]}{' ...' if len(items) > limit else ''}")
        return "; ".join(parts) or "valid"


def check(history: History, reads: Mapping[str, list[str]], *, deduped: Iterable[str] = ()) -> Report:
    """Compares `history` with `reads` (reader -> write ids it returned, in any order).

    Readers named in `deduped` may return a write more than once by contract; their repeats are
    not counted. A reader that some write targets but that is absent from `reads` read nothing.
    """
    repeat_ok = set(deduped)
    seen = {reader: Counter(ids) for reader, ids in reads.items()}
    committed = {w for counts in seen.values() for w in counts if w in history.targets}
    committed |= set(history.acknowledged())
    lost, duplicated, unexpected = set(), set(), set()
    for write_id, targets in history.targets.items():
        outcome = history.outcomes[write_id]
        for reader in targets:
            count = seen.get(reader, Counter())[write_id]
            if outcome is Outcome.FAILED and count:
                unexpected.add((reader, write_id))
            elif write_id in committed and count == 0:
                lost.add((reader, write_id))
            if count > 1 and reader not in repeat_ok:
                duplicated.add((reader, write_id))
    for reader, counts in seen.items():
        for write_id in counts:
            if reader not in history.targets.get(write_id, frozenset()):
                unexpected.add((reader, write_id))
    outcomes = Counter(history.outcomes.values())
    recovered = sum(1 for w, o in history.outcomes.items() if o is Outcome.UNKNOWN and w in committed)
    return Report(
        lost=frozenset(lost),
        duplicated=frozenset(duplicated),
        unexpected=frozenset(unexpected),
        ok=outcomes[Outcome.OK],
        failed=outcomes[Outcome.FAILED],
        unknown=outcomes[Outcome.UNKNOWN],
        recovered=recovered,
        reads=sum(len(ids) for ids in reads.values()),
    )
