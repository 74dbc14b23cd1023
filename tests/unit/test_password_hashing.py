"""Password hashing is bounded: at most `limit` argon2 runs at once (sized from the memory the
process may use), the rest wait their turn for a while and are then refused with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from argon2 import PasswordHasher

from meshkit.errors import Unavailable
from users_svc.passwords import PasswordHashing, hashing_limit, memory_limit_bytes

MIB = 1024 * 1024


class CountingHasher:
    """A real argon2 hasher that records how many of its runs overlapped at most."""

    def __init__(self) -> None:
        self._real = PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=1)
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0

    def hash(self, password: str) -> str:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)  # long enough for the others to pile up behind it
            return self._real.hash(password)
        finally:
            with self._lock:
                self.running -= 1

    def verify(self, hash: str, password: str) -> bool:
        return self._real.verify(hash, password)


async def test_no_more_than_the_limit_hash_at_once() -> None:
    hasher = CountingHasher()
    hashing = PasswordHashing(hasher, limit=2, max_wait_seconds=30)
    hashes = await asyncio.gather(*(hashing.hash(f"password {i}") for i in range(10)))
    assert hasher.most == 2
    assert all(hasher.verify(h, f"password {i}") for i, h in enumerate(hashes))


async def test_those_that_wait_too_long_are_refused_as_busy() -> None:
    hashing = PasswordHashing(CountingHasher(), limit=1, max_wait_seconds=0.02)
    outcomes = await asyncio.gather(*(hashing.hash("password") for _ in range(4)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, Unavailable)]
    assert refused and all(o.reason == "PASSWORD_HASHING_BUSY" for o in refused)
    assert all(o.retry_after_seconds for o in refused)
    assert any(isinstance(o, str) for o in outcomes)


async def test_a_caller_that_gives_up_keeps_its_slot_until_its_thread_is_done() -> None:
    hasher = CountingHasher()
    hashing = PasswordHashing(hasher, limit=1, max_wait_seconds=30)
    first = asyncio.create_task(hashing.hash("first"))
    await asyncio.sleep(0.01)
    first.cancel()  # its thread runs on: the next must wait for it
    await hashing.hash("second")
    assert hasher.most == 1


def test_the_limit_is_a_quarter_of_the_memory_in_hashes() -> None:
    assert hashing_limit(512 * MIB, 19456) == 6  # a 512 MiB pod at OWASP's 19 MiB
    assert hashing_limit(64 * MIB, 19456) == 1  # never less than one
    assert hashing_limit(1024 * 1024 * MIB, 19456) == 32  # never more than 32


def test_the_memory_is_the_containers_limit_when_it_has_one(tmp_path: Path) -> None:
    limited, unlimited, missing = tmp_path / "memory.max", tmp_path / "v2-max", tmp_path / "absent"
    limited.write_text("536870912\n")
    unlimited.write_text("max\n")
    assert memory_limit_bytes((missing, limited)) == 512 * MIB
    physical = memory_limit_bytes((missing,))
    assert physical > 0
    assert memory_limit_bytes((unlimited, limited)) == physical


def test_a_zero_wait_still_allows_a_free_slot() -> None:
    hashing = PasswordHashing(CountingHasher(), limit=1, max_wait_seconds=0.0)
    assert asyncio.run(hashing.hash("password")).startswith("$argon2id$")
