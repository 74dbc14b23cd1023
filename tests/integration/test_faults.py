"""Faults the mesh must survive while it runs: Redis wiped, a fan-out worker killed mid-work."""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import ON_BOTH_REDIS, Stubs, eventually, held_in_redis, redis_client


@ON_BOTH_REDIS
def test_home_timelines_come_back_from_postgresql_after_redis_is_wiped(stubs: Stubs, mesh: Any) -> None:
    reader, author = stubs.sign_up("wiped"), stubs.sign_up("author")
    stubs.follow(reader, author)
    stubs.home(reader)
    posted = [stubs.post(author, f"before wipe {i}").tweet_id for i in range(3)]
    expected = list(reversed(posted))
    eventually(lambda: stubs.home_ids(reader) == expected)

    r = redis_client(mesh.redis_url)
    r.flushall()
    assert not r.exists(f"home:{reader.user_id}")

    assert stubs.home_ids(reader) == expected  # rebuilt through the owners' APIs
    assert r.exists(f"home:{reader.user_id}")
    # The mesh keeps working after the wipe: sessions, streams and the fan-out group come back.
    after = stubs.post(author, "after wipe").tweet_id
    eventually(lambda: stubs.home_ids(reader) == [after, *expected])
    eventually(lambda: after in (held_in_redis(r, reader.user_id) or []))


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP address that accepts connections and never answers: calls to it hang to their deadline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_events_held_by_a_killed_fanout_worker_are_delivered_by_another_once(
    stubs: Stubs, mesh: Any, black_hole: str
) -> None:
    readers = [stubs.sign_up("reader") for _ in range(3)]
    author = stubs.sign_up("author")
    for reader in readers:
        stubs.follow(reader, author)
        stubs.home(reader)
    r = redis_client(mesh.redis_url)

    # Events pile up while no fan-out worker runs; then a worker that cannot finish them (users_svc
    # never answers it) reads them all at once and holds them unacknowledged in its pending list.
    mesh.stop_service("fanout")
    try:
        posted = [stubs.post(author, f"held {i}").tweet_id for i in range(5)]
        mesh.start_service(
            "fanout", {"USERS_ADDR": black_hole, "FANOUT_CONSUMER": "doomed", "RPC_DEADLINE_SECONDS": "60"}
        )

        def held_by_doomed() -> bool:
            consumers = r.xinfo_consumers("events:tweets", "fanout")
            return any(c["name"] == b"doomed" and c["pending"] >= len(posted) for c in consumers)

        eventually(held_by_doomed, timeout=30)  # a busy machine starts processes slowly
        mesh.kill_service("fanout")  # SIGKILL while holding them
    finally:
        mesh.start_service("fanout")  # a healthy worker under a new consumer name

    def holds_every_post(reader_id: str) -> bool:
        return set(posted) <= set(held_in_redis(r, reader_id) or [])

    for reader in readers:
        eventually(functools.partial(holds_every_post, reader.user_id), timeout=20)
        ids = stubs.home_ids(reader)
        assert len(ids) == len(set(ids)), "a timeline holds a tweet twice"
        assert ids[: len(posted)] == list(reversed(posted))
    eventually(lambda: r.xpending("events:tweets", "fanout")["pending"] == 0, timeout=20)
