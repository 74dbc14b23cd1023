"""A stop that outlives its grace says what it is still waiting for (meshkit.runtime), and a
process killed for not stopping says where it was (devstack.process)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack.process import ManagedProcess
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


def test_a_process_that_ignores_its_stop_writes_its_stacks_before_it_is_killed(tmp_path: Path) -> None:
    """devstack sends the dump signal before the SIGKILL: the log says where the process was."""
    stuck = (
        "import faulthandler, signal, time\n"
        f"faulthandler.register(signal.{runtime.DUMP_STACKS_SIGNAL.name}, all_threads=True)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('read' + 'y', flush=True)\n"  # (the log's first line holds the command itself)
        "def blocked_forever():\n"
        "    time.sleep(60)\n"
        "blocked_forever()\n"
    )
    log = tmp_path / "stuck.log"
    process = ManagedProcess(
        "stuck", [sys.executable, "-c", stuck], log_path=log, dump_signal=runtime.DUMP_STACKS_SIGNAL
    )
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.stop(timeout=0.5) == -signal.SIGKILL
    assert "in blocked_forever" in log.read_text()
