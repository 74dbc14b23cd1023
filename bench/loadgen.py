"""Load from generators that are not the bottleneck: h2load (gRPC over HTTP/2, from C), wrk (HTTP/1.1
with a Lua script), redis-benchmark; each run bounded in time, its output parsed into a Result."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import Message

TOOLS = {"h2load": "nghttp2-client", "wrk": "wrk", "redis-benchmark": "redis-tools"}


class ToolMissing(RuntimeError):
    """A load generator is not installed; the message says which Debian package has it."""


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not on PATH: install Debian's {TOOLS[name]} (make bench does, as root)")
    return found


@dataclass(frozen=True, slots=True)
class Result:
    requests: int  # completed successfully
    failed: int
    seconds: float
    latencies_ms: np.ndarray  # one per request where the tool reports them, else percentiles only
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def combine(results: Sequence[Result]) -> Result:
    """Results of generators that ran at the same time: rates add up, latencies pool."""
    latencies = np.concatenate([r.latencies_ms for r in results]) if results else np.array([])
    seconds = max((r.seconds for r in results), default=0.0)
    return Result(
        sum(r.requests for r in results),
        sum(r.failed for r in results),
        seconds,
        latencies,
        float(np.percentile(latencies, 50)) if len(latencies) else 0.0,
        float(np.percentile(latencies, 99)) if len(latencies) else 0.0,
    )


def grpc_frame(message: Message) -> bytes:
    """A gRPC length-prefixed message: what an HTTP/2 POST body to a gRPC method carries."""
    body = message.SerializeToString()
    return struct.pack(">?I", False, len(body)) + body


class H2load:
    """gRPC unary calls from h2load: one method, one request body, one set of metadata per run.
    h2load counts HTTP statuses and cannot see grpc-status trailers, so callers check one call with a
    real client first and, where the call leaves a trace (a tweet), count the traces after."""

    def __init__(self, address: str, method: str, body: Message, metadata: Sequence[tuple[str, str]] = ()):
        self._url = f"http://{address}/{method}"
        self._body = grpc_frame(body)
        self._metadata = metadata

    def start(self, seconds: float, connections: int, streams: int) -> _Running:
        return self._start(["-D", f"{max(round(seconds), 1)}"], seconds, connections, streams)

    def start_count(self, requests: int, connections: int, streams: int) -> _Running:
        """`requests` calls in all (a short run, one of many: see h2load_pool)."""
        return self._start(["-n", str(requests)], 1.0, connections, streams)

    def _start(self, length: list[str], seconds: float, connections: int, streams: int) -> _Running:
        workdir = Path(tempfile.mkdtemp(prefix="h2load-"))
        (workdir / "body").write_bytes(self._body)
        argv = [
            tool("h2load"),
            *length,
            "-c", str(connections),
            "-m", str(streams),
            "-t", "1",
            "-d", str(workdir / "body"),
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
            "--log-file", str(workdir / "log"),
        ]  # fmt: skip
        for key, value in self._metadata:
            argv += ["-H", f"{key}: {value}"]
        argv.append(self._url)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return _Running(process, workdir, seconds)

    def run(self, seconds: float, connections: int = 8, streams: int = 8) -> Result:
        return self.start(seconds, connections, streams).result()


class _Running:
    def __init__(self, process: subprocess.Popen[str], workdir: Path, seconds: float) -> None:
        self._process = process
        self._workdir = workdir
        self._seconds = seconds

    def done(self) -> bool:
        return self._process.poll() is not None

    def result(self) -> Result:
        output, _ = self._process.communicate(timeout=self._seconds + 60)
        if self._process.returncode != 0:
            raise RuntimeError(f"h2load failed ({self._process.returncode}):\n{output}")
        rows = np.loadtxt(self._workdir / "log", dtype=np.int64, ndmin=2)
        shutil.rmtree(self._workdir, ignore_errors=True)
        if rows.size == 0:
            raise RuntimeError(f"h2load completed no request:\n{output}")
        ok = rows[:, 1] == 200
        latencies = rows[ok, 2] / 1000.0
        # The measured window: first start to last end (the log holds measurement-phase requests).
        span_us = float((rows[:, 0] + rows[:, 2]).max() - rows[:, 0].min())
        return Result(
            int(ok.sum()),
            int((~ok).sum()),
            span_us / 1e6,
            latencies,
            float(np.percentile(latencies, 50)) if len(latencies) else 0.0,
            float(np.percentile(latencies, 99)) if len(latencies) else 0.0,
        )


def h2load_pool(loads: Sequence[H2load], requests_each: int, slots: int, streams: int = 4) -> Result:
    """Each of `loads` (one per caller: h2load sends one set of headers per run) as a short run of
    `requests_each` calls on one connection, `slots` of them at once, a new one started as soon as
    one ends: load from as many distinct callers as `loads` has. The rate counts every call over
    the whole span, first start to last end, gaps between runs included."""
    started = time.monotonic()
    pending = list(loads)
    running: list[_Running] = []
    results: list[Result] = []
    while pending or running:
        while pending and len(running) < slots:
            running.append(pending.pop(0).start_count(requests_each, 1, streams))
        finished = [run for run in running if run.done()]
        if not finished:
            time.sleep(0.002)
        for run in finished:
            running.remove(run)
            results.append(run.result())
    elapsed = time.monotonic() - started
    pooled = combine(results)
    return Result(pooled.requests, pooled.failed, elapsed, pooled.latencies_ms, pooled.p50_ms, pooled.p99_ms)


_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"failed\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for our ASCII values


def wrk(
    url: str, script: str, seconds: float, connections: int = 16, threads: int = 1, timeout: float = 2.0
) -> Result:
    """HTTP/1.1 load from wrk; `script` defines request() (and may use wrk.format). A response
    slower than `timeout` seconds counts as failed."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + _WRK_DONE)
    try:
        done = subprocess.run(
            [
                tool("wrk"),
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{max(round(seconds), 1)}s",
                "--timeout",
                f"{max(round(timeout), 1)}s",
                "-s",
                handle.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    stats = json.loads(line.removeprefix("WRK_JSON "))
    failed = int(stats["failed"])
    return Result(
        int(stats["requests"]) - failed,
        failed,
        stats["duration_us"] / 1e6,
        np.array([]),
        stats["p50_us"] / 1000.0,
        stats["p99_us"] / 1000.0,
    )


def redis_ceiling(host: str, port: int, seconds: float) -> float:
    """redis-benchmark's pipelined rate for APPENDs of 8 bytes to many strings (what writing a
    home-timeline entry is: social.timelines), on keys the mesh never uses; they are deleted after."""
    requests = max(int(seconds * 150_000), 10_000)  # about `seconds` long on this machine
    done = subprocess.run(
        [
            tool("redis-benchmark"),
            "-h",
            host,
            "-p",
            str(port),
            "-c",
            "8",
            "-P",
            "64",
            "-r",
            "100000",
            "-n",
            str(requests),
            "--csv",
            "APPEND",
            "bench:ceiling:__rand_int__",
            "12345678",
        ],
        capture_output=True,
        text=True,
        timeout=seconds * 20 + 60,
        check=False,
    )
    rows = [line.split(",") for line in done.stdout.splitlines() if line.startswith('"APPEND')]
    if done.returncode != 0 or not rows:
        raise RuntimeError(f"redis-benchmark failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return float(rows[-1][1].strip('"'))
