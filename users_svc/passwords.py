"""Password hashing (argon2id) with a bound on how many hashes run at once.

Each argon2id hash holds ARGON2_MEMORY_KIB of memory (19 MiB by default) for its whole run; left
unbounded, a burst of sign-ins (one per thread of the pool) could take more memory than the pod
has. At most `limit` hashes or verifications run at once; the rest wait their turn for at most
`max_wait_seconds` and are then refused with UNAVAILABLE and a RetryInfo (the server is busy, the
client retries), never queued without end.

The limit defaults to what a quarter of the memory this process may use holds (the cgroup's
limit in a container, else the machine's memory), at least 1 and at most 32.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from meshkit.errors import Unavailable

T = TypeVar("T")
MEMORY_SHARE = 4  # hashing may take up to 1/MEMORY_SHARE of the process's memory
LIMIT_MAX = 32
# cgroup v2, then v1: the memory limit of the container this process runs in.
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


class Hasher(Protocol):
    """argon2.PasswordHasher, as far as this module uses it."""

    def hash(self, password: str) -> str: ...
    def verify(self, hash: str, password: str) -> bool: ...


def memory_limit_bytes(cgroup_files: tuple[Path, ...] = CGROUP_LIMITS) -> int:
    """The memory this process may use: its cgroup's limit if it has one, else the machine's."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in cgroup_files:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            return min(int(raw), physical)  # cgroup v1 says "no limit" with a huge number
        return physical  # "max": no limit
    return physical


def hashing_limit(memory_bytes: int, cost_kib: int) -> int:
    """How many hashes of `cost_kib` fit in 1/MEMORY_SHARE of `memory_bytes` (1 to LIMIT_MAX)."""
    fitting = memory_bytes // MEMORY_SHARE // (cost_kib * 1024)
    return max(1, min(int(fitting), LIMIT_MAX))


class PasswordHashing:
    """Runs hashing work in threads, at most `limit` at once. `hasher` is there for what must run
    before serving (a dummy hash at start)."""

    def __init__(self, hasher: Hasher, limit: int, max_wait_seconds: float) -> None:
        self.hasher = hasher
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._max_wait = max_wait_seconds

    async def hash(self, password: str) -> str:
        return await self.run(self.hasher.hash, password)

    async def run(self, work: Callable[[str], T], password: str) -> T:
        """`work(password)` (a hash or a verification) in a thread, once a slot is free."""
        try:
            async with asyncio.timeout(self._max_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable(
                "too many passwords are being checked at once; retry shortly",
                reason="PASSWORD_HASHING_BUSY",
                retry_after_seconds=1.0,
            ) from None
        running = asyncio.get_running_loop().run_in_executor(None, work, password)
        # The slot is free when the thread is done, not when the caller stops waiting: a call cut
        # off by its time limit cannot stop its thread, whose memory is still in use.
        running.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(running)
