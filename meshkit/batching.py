"""Group commit: concurrent calls gathered into batches that one function runs together, each
caller keeping its own answer or its own error.

The gathering window adapts to the load instead of being a fixed wait: a call that finds a free
slot (fewer than `max_in_flight` batches running) starts a batch at once, alone if it is alone, so
a quiet service adds no latency; calls that arrive while every slot is busy queue up, and the next
free slot takes them all (up to `max_batch`) as one batch. Under load a batch therefore holds what
arrived during one batch's run: a few milliseconds' worth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from meshkit.metrics import GROUP_COMMIT_SIZE

T = TypeVar("T")
R = TypeVar("R")

# Runs a batch: one outcome per item, in order, a result or the exception that item's caller gets.
RunBatch = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    """`await group(item)` is `run_batch([item])[0]` (raised if it is an exception), with the
    items of concurrent callers run in the same batch. An exception raised by `run_batch` itself
    is every item's outcome. A caller that gives up (is cancelled) before its batch starts is left
    out of it; once started, its item runs to the end whatever the caller does."""

    def __init__(self, name: str, run_batch: RunBatch[T, R], *, max_batch: int, max_in_flight: int) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._sizes = GROUP_COMMIT_SIZE.labels(name)
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._queue and len(self._running) < self._max_in_flight:
            taken, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            batch = [(item, future) for item, future in taken if not future.done()]
            if batch:
                task = asyncio.create_task(self._run(batch), name="group commit")
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_batches()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        outcomes: Sequence[R | Exception]
        self._sizes.observe(len(batch))
        try:
            outcomes = await self._run_batch([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(outcomes)} outcomes")
        except Exception as error:
            outcomes = [error] * len(batch)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller gave up
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
