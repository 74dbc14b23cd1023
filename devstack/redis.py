"""A private, memory-only Redis for development and tests, on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import redis as redis_client

from devstack import binaries
from devstack.process import ManagedProcess, Server

# Home timelines are sorted sets of up to 800 entries; below this size Redis keeps them in the
# compact encoding. The ziplist name is understood by Redis 6.2 and (as an alias) by 7.
SETTINGS = {
    "bind": "127.0.0.1",
    "protected-mode": "yes",
    "save": "",
    "appendonly": "no",
    "zset-max-ziplist-entries": "1024",
    "loglevel": "warning",
}


def _answers_ping(host: str, port: int) -> bool:
    client = redis_client.Redis(host=host, port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis_client.RedisError:
        return False
    finally:
        client.close()


def start_redis(data_dir: Path, port: int, *, log_path: Path | None = None, timeout: float = 30.0) -> Server:
    """Starts redis-server with no persistence (its dir is `data_dir`/redis); returns it with its URL."""
    workdir = data_dir.resolve() / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [os.fspath(binaries.redis_server()), "--port", str(port), "--dir", os.fspath(workdir)]
    for key, value in SETTINGS.items():
        argv += [f"--{key}", value]  # redis quotes each value, so "" becomes an empty `save`
    process = ManagedProcess("redis", argv, log_path=log_path, cwd=workdir)
    try:
        process.wait_until(lambda: _answers_ping("127.0.0.1", port), timeout, "answering PING")
    except BaseException:
        process.stop()
        raise
    return Server(process, f"redis://127.0.0.1:{port}/0")
