"""Child processes that die with the runner, log to a file or the terminal, and stop in a fixed way;
and the policy by which a crashed one is started again."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devstack.errors import StartupError

POLL_INTERVAL = 0.05
_PR_SET_PDEATHSIG = 1
# Looked up once in the parent: the child between fork and exec should do as little as possible.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent(parent_pid: int, sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn: the kernel sends `sig` to the child when the runner dies, even by SIGKILL.

    subprocess runs it after switching user (a uid change would clear the setting). The kernel
    tracks the forking *thread*, so start children from a thread that outlives them (the main one).
    """

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent_pid:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


TAIL_LINES = 40


class ManagedProcess:
    """One started child. Its own session, so the terminal's Ctrl-C reaches only the runner.

    Its output goes to `log_path`, or, without one, to this process's stdout line by line (through
    a pipe and a thread, which keeps the last lines for log_tail).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        dump_signal: signal.Signals | None = None,
        user: int | None = None,
        group: int | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        # Sent before the SIGKILL of a process that did not stop in time: one that answers it by
        # writing its threads' stacks to its output (the services: meshkit.runtime) says where.
        self.dump_signal = dump_signal
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        log: IO[bytes] | int = subprocess.PIPE
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
            log.write(f"--- {name}: {' '.join(map(str, argv))}\n".encode())
            log.flush()
        try:
            self.popen = subprocess.Popen(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
                start_new_session=True,
                # Threads + preexec_fn: the function only calls prctl (looked up beforehand) and
                # getppid, and glibc resets malloc's locks in the child: nothing here waits on a lock.
                preexec_fn=_die_with_parent(os.getpid(), stop_signal),  # noqa: PLW1509
            )
        finally:
            if not isinstance(log, int):
                log.close()  # the child holds its own copy
        self._relay_thread: threading.Thread | None = None
        if self.popen.stdout is not None:
            self._relay_thread = threading.Thread(
                target=self._relay, args=(self.popen.stdout,), name=f"{name}-output", daemon=True
            )
            self._relay_thread.start()

    def _relay(self, output: IO[bytes]) -> None:
        """Copies the child's output to our stdout, whole lines at a time, keeping the last ones."""
        with output:
            for line in output:
                self._tail.append(line.decode(errors="replace").rstrip("\n"))
                with contextlib.suppress(OSError, ValueError):  # our stdout closed: keep the tail
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        if self.log_path is None:
            if self._relay_thread is not None and not self.alive():
                self._relay_thread.join(timeout=2.0)  # the last lines it wrote before it exited
            return "\n".join(list(self._tail)[-lines:])
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 16_384))
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(could not read {self.log_path}: {error})"
        return "\n".join(text.splitlines()[-lines:]) + f"\n(full log: {self.log_path})"

    def state(self) -> str:
        """How it is: running, exited with a code, or killed by a signal."""
        code = self.popen.poll()
        if code is None:
            return "is still running"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def failure(self, what: str) -> StartupError:
        """An error naming this process, what went wrong, and the end of its log."""
        return StartupError(
            f"{self.name} {what} ({self.state()}, pid {self.pid}). Its last output:\n{self.log_tail()}"
        )

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Polls `ready` until it holds; fails fast if the process exits, or at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise self.failure(f"exited before it was {what}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise self.failure(f"was not {what} within {timeout:g}s")
            time.sleep(POLL_INTERVAL)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Sends the stop signal, waits up to `timeout`, then SIGKILLs; returns the exit code."""
        self.popen.send_signal(self.stop_signal)  # a no-op once it has exited
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            if self.dump_signal is not None:
                self.popen.send_signal(self.dump_signal)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return self.popen.wait(1.0)  # time to write the stacks (or to finish after all)
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILLs the process's whole group (it leads its own session), so nothing it started remains."""
        if self.popen.returncode is None:  # not reaped yet, so its pid and group id are still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        try:
            return self.popen.wait(10.0)
        except subprocess.TimeoutExpired:  # stuck in uninterruptible I/O: nothing more to do from here
            return None


@dataclass(frozen=True, slots=True)
class Server:
    """A started server and the URL clients use to reach it."""

    process: ManagedProcess
    url: str


@dataclass
class RestartPolicy:
    """When to start a crashed process again, as a container runtime's restart policy would: after
    `first_delay` seconds, doubling up to `max_delay`; and not at all once it has crashed
    `give_up_after` times within `window` seconds (it crashes for a reason a restart will not fix)."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    give_up_after: int = 5
    window: float = 300.0
    _crashes: deque[float] = field(default_factory=deque)

    def crashed(self, now: float) -> float | None:
        """Records a crash at `now`; returns the delay before the next start, or None to give up."""
        self._crashes.append(now)
        while self._crashes and self._crashes[0] <= now - self.window:
            self._crashes.popleft()
        if len(self._crashes) >= self.give_up_after:
            return None
        return float(min(self.first_delay * 2 ** (len(self._crashes) - 1), self.max_delay))

    @property
    def recent_crashes(self) -> int:
        return len(self._crashes)
