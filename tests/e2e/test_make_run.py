"""`make run` (python -m devstack) as a developer uses it: up, ready, and gone on Ctrl-C; services
that crash restarted (and given up on when they keep crashing); and as root from a checkout in a
private folder.

Why this test exists: `make run` is the README's front door and the only place where the runner's
own signal handling is exercised. It proves that the runner starts the whole mesh (embedded
PostgreSQL and Redis, the local SMTP server, migrations, the six services, Envoy) on the ports it
is given, prints `tweetmesh is ready` only once Envoy answers (over TLS too, with the self-signed
certificate TLS_SELF_SIGNED=1 asks for), and where mails are kept (a mail sent to its SMTP port is
read back there), and that SIGINT (Ctrl-C) makes it stop everything it started and exit 0, leaving
no process behind (none of its descendants survives, and nothing still holds its stdout).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from devstack.mesh import MeshPorts
from devstack.smtp import read_mails
from tests.helpers import PASSWORD, eventually, http_call

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
        """Waits for the line `wanted`."""
        self._wait(lambda line: line == wanted, repr(wanted), timeout)

    def wait_for_text(self, wanted: str, timeout: float) -> None:
        """Waits for a line containing `wanted`, or finds it among those read already."""
        if not any(wanted in line for line in self.lines):
            self._wait(lambda line: wanted in line, f"a line with {wanted!r}", timeout)

    def _wait(self, matches: Callable[[str], bool], wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {wanted} within {timeout:g}s; output:\n{self.text()}") from None
            if line is None:
                raise AssertionError(f"the runner exited before {wanted}; output:\n{self.text()}")
            self.lines.append(line)
            if matches(line):
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


def launch(
    data_dir: Path, ports: MeshPorts, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Output]:
    """`python -m devstack` on `ports`, its data in `data_dir`, with embedded servers."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SMTP_URL"}}
    env["TWEETMESH_DATA_DIR"] = str(data_dir)
    env["TLS_SELF_SIGNED"] = "1"
    env |= extra_env or {}
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
    return runner, Output(runner.stdout)


def test_make_run_starts_everything_and_ctrl_c_stops_all_of_it(data_dir: Path) -> None:
    ports = MeshPorts.free()
    runner, output = launch(data_dir, ports)
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
        # PostgreSQL, Redis, the SMTP server, six services, Envoy, and PostgreSQL's own workers.
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


def test_make_run_on_a_local_redis_cluster(data_dir: Path) -> None:
    ports = MeshPorts.free()
    runner, output = launch(data_dir, ports, {"REDIS_CLUSTER": "1"})
    try:
        output.wait_for(READY_LINE, START_TIMEOUT)
        # Three masters, each printed; the services on the cluster client answer a sign-up and a post.
        masters = [f"redis://127.0.0.1:{ports.redis_cluster + n}/0" for n in range(3)]
        for url in masters:
            assert url in output.text()
        account = {"handle": "on_a_cluster", "password": PASSWORD}
        signed_up = http_call(ports.envoy, "POST", "/v1/users", {**account, "display_name": "C"})
        assert signed_up.status == 200, signed_up.body
        token = http_call(ports.envoy, "POST", "/v1/sessions", account).json()["token"]
        posted = http_call(ports.envoy, "POST", "/v1/tweets", {"text": "hello, cluster"}, token=token)
        assert posted.status == 200, posted.body
        started = descendants(runner.pid)
        runner.send_signal(signal.SIGINT)
        assert runner.wait(STOP_TIMEOUT) == 0, output.text()
        deadline = time.monotonic() + 10
        while still_running(started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert still_running(started) == []  # the six nodes of the cluster too
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def _private_checkout(folder: Path) -> Path:
    """This checkout's files (tracked and new, as git lists them) in `folder`/tweetmesh, `folder`
    being mode 700 as root's home is; the .venv is this checkout's, through a symbolic link (its
    paths are then under `folder` too, as a clone's own would be)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    checkout = folder / "tweetmesh"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)  # keeps mtimes: make sees .venv as up to date
    (checkout / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    folder.chmod(0o700)
    return checkout


@pytest.mark.timeout(400)
def test_make_run_as_root_from_a_checkout_in_a_private_folder() -> None:
    """As root, the embedded PostgreSQL runs as `nobody`, who cannot enter a mode-700 folder such
    as /root: its files go where it can reach them, and `make run` just works, with a read replica
    too (`make run POSTGRES_REPLICA=1`, its files beside the primary's), which serves reads."""
    folder = Path(tempfile.mkdtemp(prefix="tweetmesh-private-"))
    checkout = _private_checkout(folder)
    ports = MeshPorts.free()
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TWEETMESH_DATA_DIR"}
    }
    env |= {f"{f.name.upper()}_PORT": str(ports.of(f.name)) for f in fields(MeshPorts)}
    runner = subprocess.Popen(
        ["make", "--no-print-directory", "run", "POSTGRES_REPLICA=1"],
        cwd=checkout,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, which Ctrl-C reaches as a terminal's would
    )
    assert runner.stdout is not None
    output = Output(runner.stdout)
    link = checkout / ".data" / "postgres"
    try:
        output.wait_for(READY_LINE, START_TIMEOUT)
        # PostgreSQL answers through the whole mesh: an unknown handle is 404, not 503.
        assert http_call(ports.envoy, "GET", "/v1/handles/nobody_here").status == 404
        # The replica too: a hashtag page is read there.
        replica_url = f"postgresql://tweetmesh@127.0.0.1:{ports.postgres_replica}/tweetmesh"
        assert replica_url in output.text()
        assert http_call(ports.envoy, "GET", "/v1/hashtags/replicated/tweets").status == 200
        metrics = f"http://127.0.0.1:{ports.tweets_metrics}/metrics"
        with urllib.request.urlopen(metrics, timeout=5) as response:
            served = response.read().decode()
        assert 'tweetmesh_db_reads_total{schema="tweets",served_by="replica"} 1.0' in served
        if os.geteuid() == 0:
            for name in ("postgres", "postgres-replica"):
                placed = checkout / ".data" / name
                assert placed.is_symlink(), output.text()
                moved = Path(os.readlink(placed))
                output.wait_for_text(f"its files are in {moved}", 5)
                assert stat.S_IMODE(moved.parent.stat().st_mode) == 0o711
                assert moved.stat().st_uid != 0 and stat.S_IMODE(moved.stat().st_mode) == 0o700
        os.killpg(runner.pid, signal.SIGINT)
        runner.wait(STOP_TIMEOUT)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
        if link.is_symlink():
            shutil.rmtree(Path(os.readlink(link)).parent, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


# ----- a service that dies once the mesh is up


@dataclass
class Devstack:
    runner: subprocess.Popen[str]
    output: Output
    ports: MeshPorts


@pytest.fixture
def devstack(data_dir: Path) -> Iterator[Devstack]:
    """A ready `python -m devstack`, stopped with Ctrl-C after the test (it must exit 0)."""
    ports = MeshPorts.free()
    runner, output = launch(data_dir, ports)
    try:
        output.wait_for(READY_LINE, START_TIMEOUT)
        yield Devstack(runner, output, ports)
        runner.send_signal(signal.SIGINT)
        assert runner.wait(STOP_TIMEOUT) == 0, output.text()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def service_pid(runner: subprocess.Popen[str], name: str) -> int:
    for pid in descendants(runner.pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", f"{name}_svc".encode()]:
                return pid
    raise AssertionError(f"no {name}_svc among the runner's processes")


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _proc_stat(pid) is not None and _proc_stat(pid)[1] != "Z":  # type: ignore[index]
        assert time.monotonic() < deadline, f"{pid} still runs after SIGKILL"
        time.sleep(0.02)


def bind_within(sock: socket.socket, port: int, seconds: float) -> bool:
    """Binds sock to 127.0.0.1:port, retrying for a few moments; whether it is bound."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)


@pytest.mark.timeout(300)
def test_a_service_killed_after_the_mesh_is_ready_is_restarted_and_the_mesh_answers_again(
    devstack: Devstack,
) -> None:
    killed = service_pid(devstack.runner, "users")
    kill_and_wait(killed)
    devstack.output.wait_for("devstack: users_svc was killed by SIGKILL; restarting it in 1 s", 30)
    devstack.output.wait_for("devstack: users_svc is SERVING again", 60)
    assert service_pid(devstack.runner, "users") != killed
    # Through Envoy, users_svc (and PostgreSQL behind it) answers: an unknown handle is 404.
    assert http_call(devstack.ports.envoy, "GET", "/v1/handles/nobody_here").status == 404


@pytest.mark.timeout(300)
def test_a_service_that_crashes_at_once_every_time_is_given_up_on_with_its_reason(devstack: Devstack) -> None:
    output = devstack.output
    # Once killed, tweets_svc cannot start again while its port is taken: it exits at once. The
    # port is ours once the killed process has let it go, unless its restart (due 1 s later) took
    # it first on a slow machine: then that one is killed too, which is another crash like any.
    taken = socket.socket()
    try:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, not SO_REUSEPORT
        for _ in range(3):
            kill_and_wait(eventually(lambda: service_pid(devstack.runner, "tweets"), timeout=30))
            # A killed process is a zombie before its last threads have exited and closed its
            # sockets: the port is free a few milliseconds later (within the 1 s before a restart).
            if bind_within(taken, devstack.ports.tweets, 0.9):
                break
        taken.listen()
        output.wait_for_text("tweets_svc exited with code 1; restarting it in 8 s", 90)
        output.wait_for_text(
            "tweets_svc exited with code 1: 5 crashes within 300 s, so it is not restarted", 60
        )
        output.wait_for_text("Failed to bind", 10)  # the reason, in its last output
        assert sum("devstack: tweets_svc started again" in line for line in output.lines) == 4
        assert devstack.runner.poll() is None  # the rest of the mesh runs on
    finally:
        taken.close()
    assert http_call(devstack.ports.envoy, "GET", "/v1/handles/nobody_here").status == 404
