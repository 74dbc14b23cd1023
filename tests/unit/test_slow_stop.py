"""A stop that outlives its grace says what it is still waiting for (meshkit.runtime)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from meshkit import runtime


def test_a_slow_stop_logs_every_thread_and_task(caplog: pytest.LogCaptureFixture) -> None:
    reported = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "still stopping":
                reported.set()

    handler = Seen()
    logging.getLogger(runtime.__name__).addHandler(handler)

    async def stuck_closing() -> None:
        await asyncio.sleep(30)

    async def stopping() -> None:
        asyncio.get_running_loop().create_task(stuck_closing(), name="stuck closing")
        await asyncio.sleep(0)
        runtime._watch_the_stop(0.05)
        await asyncio.to_thread(reported.wait, 5)

    try:
        with caplog.at_level(logging.ERROR, logger=runtime.__name__):
            asyncio.run(stopping())
    finally:
        logging.getLogger(runtime.__name__).removeHandler(handler)
    (record,) = [r for r in caplog.records if r.getMessage() == "still stopping"]
    tasks, threads = record.__dict__["tasks"], record.__dict__["threads"]
    assert "stuck_closing" in tasks["stuck closing"]
    assert "MainThread" in threads and "_watch_the_stop" not in threads["MainThread"]
