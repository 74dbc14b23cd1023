"""meshkit.reads: lag-tolerant reads go to the replica while it answers and keeps up, to the
primary when it fails (at once, without an error) or lags too far, and back to it once its probe
finds it answering and caught up."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import psycopg
import pytest

from meshkit.metrics import REGISTRY
from meshkit.reads import Reads
from tests.fakes import FakeConnection, FakePool


async def which(conn: Any) -> str:
    """A read that answers with the name of the pool whose connection (a FakeConnection) ran it."""
    return cast(FakeConnection, conn).pool


def make(replica: FakePool | None, schema: str, **limits: float) -> tuple[Reads, FakePool]:
    primary = FakePool("primary", answer="0/3000148")  # its WAL position
    reads = Reads(cast(Any, primary), cast(Any, replica), schema=schema, **limits)
    return reads, primary


def counted(schema: str, served_by: str) -> float:
    labels = {"schema": schema, "served_by": served_by}
    return REGISTRY.get_sample_value("tweetmesh_db_reads_total", labels) or 0.0


async def test_without_a_replica_every_read_is_the_primarys() -> None:
    reads, _ = make(None, "solo")
    assert [await reads.run(which) for _ in range(3)] == ["primary"] * 3
    assert counted("solo", "primary") == 3 and counted("solo", "replica") == 0


async def test_a_replica_that_answers_serves_every_read() -> None:
    replica = FakePool("replica")
    reads, primary = make(replica, "healthy")
    assert [await reads.run(which) for _ in range(3)] == ["replica"] * 3
    assert primary.lent == 0 and counted("healthy", "replica") == 3


async def test_a_failing_replica_is_set_aside_until_its_probe_finds_it_back() -> None:
    replica = FakePool("replica")
    reads, _ = make(replica, "failing", retry_seconds=0.01)
    watching = asyncio.create_task(reads.watch())
    try:
        assert await reads.run(which) == "replica"
        replica.failure = psycopg.OperationalError("connection refused")
        assert await reads.run(which) == "primary"  # the failing read itself, answered
        tried = replica.lent
        assert [await reads.run(which) for _ in range(3)] == ["primary"] * 3
        # Set aside: the reads after it do not wait for the replica again (only the probe asks).
        assert replica.lent - tried <= 1
        replica.failure = None
        deadline = time.monotonic() + 5
        while await reads.run(which) != "replica":
            assert time.monotonic() < deadline, "the replica was not taken back"
            await asyncio.sleep(0.01)
        assert not watching.done()
    finally:
        watching.cancel()
    assert counted("failing", "primary") >= 4


async def test_a_replica_that_does_not_answer_in_time_leaves_the_read_to_the_primary() -> None:
    replica = FakePool("replica")
    replica.hang = 5.0
    reads, _ = make(replica, "hanging", limit_seconds=0.05)
    started = time.monotonic()
    assert await reads.run(which) == "primary"
    assert time.monotonic() - started < 2


async def test_a_recovery_conflict_is_retried_on_the_primary() -> None:
    replica = FakePool("replica")
    replica.failure = psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery")
    reads, _ = make(replica, "conflict")
    assert await reads.run(which) == "primary"


async def test_a_mistake_in_the_query_is_not_hidden_by_the_primary() -> None:
    replica = FakePool("replica")
    replica.failure = psycopg.errors.UndefinedTable("no such table")
    reads, primary = make(replica, "mistake")
    with pytest.raises(psycopg.errors.UndefinedTable):
        await reads.run(which)
    assert primary.lent == 0


async def test_a_replica_that_lags_too_far_is_set_aside_until_it_has_caught_up() -> None:
    replica = FakePool("replica")
    reads, _ = make(replica, "lagging", retry_seconds=0.01, max_lag_seconds=0.05)
    watching = asyncio.create_task(reads.watch())
    try:
        replica.answer = False  # it has not replayed the position the primary had 0.05 s ago

        async def served_by(wanted: str) -> None:
            deadline = time.monotonic() + 5
            while await reads.run(which) != wanted:
                assert time.monotonic() < deadline, f"reads did not go to the {wanted}"
                await asyncio.sleep(0.01)

        await served_by("primary")
        replica.answer = True
        await served_by("replica")
        assert not watching.done()
    finally:
        watching.cancel()
