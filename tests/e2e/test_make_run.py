"""`make run` (python -m devstack) as a developer uses it: up, ready, and gone on Ctrl-C.

Why this test exists: `make run` is the README's front door and the only place where the runner's
own signal handling is exercised. It proves that the runner starts the whole mesh (embedded
PostgreSQL and Redis, the local SMTP server, migrations, the four services, Envoy) on the ports it
is given, prints `tweetmesh is ready` only once Envoy answers (over TLS too, with the self-signed
certificate TLS_SELF_SIGNED=1 asks for), and where mails are kept (a mail sent to its SMTP port is
read back there), and that SIGINT (Ctrl-C) makes it stop everything it started and exit 0, leaving
no process behind (none of its descendants survives, and nothing still holds its stdout).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from devstack.mesh import MeshPorts
from devstack.smtp import read_mails

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "tweetmesh is ready"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 90.0


def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) from /proc, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    after_name = text[text.rindex(")") + 2 :].split()
    return int(after_name[1]), after_name[0], int(after_name[19])


def descendants(root: int) -> dict[int, int]:
    """Every process below `root`, as pid -> start time (so a reused pid is not mistaken for it)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = starts[pid]
        todo += children.get(pid, [])
    return found


def still_running(processes: dict[int, int]) -> list[int]:
    running = []
    for pid, start in processes.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == start and stat[1] != "Z":
            running.append(pid)
    return running


class Output:
    """Reads the runner's stdout on a thread, so waiting for a line has a deadline."""

    def __init__(self, stream: Iterator[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)
        self.closed.set()

    def wait_for(self, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} within {timeout:g}s; output:\n{self.text()}") from None
            if line is None:
                raise AssertionError(f"the runner exited before {wanted!r}; output:\n{self.text()}")
            self.lines.append(line)
            if line == wanted:
                return

    def text(self) -> str:
        """The last lines read so far (including any not yet waited for)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:  # keep the end-of-output mark for wait_for
                self._queue.put(None)
                break
            self.lines.append(line)
        return "\n".join(self.lines[-80:])


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root that sits under a 0700 directory, and the embedded
    # PostgreSQL then runs as `nobody`, which must be able to reach its data dir.
    path = Path(tempfile.mkdtemp(prefix="tweetmesh-make-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_run_starts_everything_and_ctrl_c_stops_all_of_it(data_dir: Path) -> None:
    ports = MeshPorts.free()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SMTP_URL"}}
    env["TWEETMESH_DATA_DIR"] = str(data_dir)
    env["TLS_SELF_SIGNED"] = "1"
    env |= {f"{f.name.upper()}_PORT": str(ports.of(f.name)) for f in fields(MeshPorts)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert runner.stdout is not None
    output = Output(runner.stdout)
    try:
        output.wait_for(READY_LINE, START_TIMEOUT)
        assert f"http://127.0.0.1:{ports.envoy}" in output.text()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.envoy_admin}/ready", timeout=5) as ready:
            assert ready.read().strip() == b"LIVE"
        certificate = data_dir / "tls" / "tls.crt"
        assert f"https://localhost:{ports.envoy_tls}" in output.text()
        assert str(certificate) in output.text()
        trusting = ssl.create_default_context(cafile=certificate)
        secure = f"https://localhost:{ports.envoy_tls}/v1/handles/nobody_here"
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(secure, timeout=5, context=trusting)
        assert not_found.value.code == 404
        # The local SMTP server: its address and the folder where it keeps mails are printed.
        assert f"smtp://127.0.0.1:{ports.smtp}" in output.text()
        assert str(data_dir / "mail") in output.text()
        with smtplib.SMTP("127.0.0.1", ports.smtp, timeout=10) as smtp:
            smtp.sendmail("no-reply@example.com", ["ann@example.com"], b"Subject: hello\r\n\r\nhi\r\n")
        [mail] = read_mails(data_dir / "mail", "ann@example.com")
        assert mail["Subject"] == "hello"
        started = descendants(runner.pid)
        # PostgreSQL, Redis, the SMTP server, four services, Envoy, and PostgreSQL's own workers.
        assert len(started) >= 8, started

        runner.send_signal(signal.SIGINT)
        assert runner.wait(STOP_TIMEOUT) == 0, output.text()
        # Nothing the runner started may outlive it: every descendant has exited, and the last
        # holder of the runner's stdout pipe has closed it.
        deadline = time.monotonic() + 10
        while still_running(started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert still_running(started) == []
        assert output.closed.wait(10), "something still holds the runner's stdout"
    finally:
        if runner.poll() is None:
            runner.kill()  # its children get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            runner.wait()
