"""A private, memory-only Redis for development and tests, on 127.0.0.1: one server, or a local
Redis Cluster (three masters, a replica each) made of the same binary."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_client

from devstack import binaries
from devstack.errors import DevstackError
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


def start_redis(
    data_dir: Path,
    port: int,
    *,
    log_path: Path | None = None,
    timeout: float = 30.0,
    name: str = "redis",
    extra: Sequence[str] = (),
) -> Server:
    """Starts redis-server with no persistence (its dir is `data_dir`/`name`); returns it with its URL."""
    workdir = data_dir.resolve() / name
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [os.fspath(binaries.redis_server()), "--port", str(port), "--dir", os.fspath(workdir)]
    for key, value in SETTINGS.items():
        argv += [f"--{key}", value]  # redis quotes each value, so "" becomes an empty `save`
    argv += extra
    process = ManagedProcess(name, argv, log_path=log_path, cwd=workdir)
    try:
        process.wait_until(lambda: _answers_ping("127.0.0.1", port), timeout, "answering PING")
    except BaseException:
        process.stop()
        raise
    return Server(process, f"redis://127.0.0.1:{port}/0")


# The local cluster: its masters and a replica of each (CLUSTER_NODES ports from the first).
CLUSTER_MASTERS = 3
CLUSTER_NODES = 2 * CLUSTER_MASTERS
SLOTS = 16384
# A node's cluster bus listens on its port + 10000 (Redis 6.2 has no cluster-port setting).
CLUSTER_BUS_OFFSET = 10000


@dataclass(frozen=True, slots=True)
class RedisClusterServers:
    """The servers of a local cluster: masters first, then their replicas (replica n of master n)."""

    nodes: list[Server]

    @property
    def url(self) -> str:
        """The URL services are given (REDIS_URL): any node would do; the first master."""
        return self.nodes[0].url

    @property
    def masters(self) -> list[Server]:
        return self.nodes[:CLUSTER_MASTERS]

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.process.stop()


def _port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


def start_redis_cluster(
    data_dir: Path, first_port: int, *, log_dir: Path | None = None, timeout: float = 60.0
) -> RedisClusterServers:
    """Starts CLUSTER_NODES servers on `first_port`, `first_port` + 1... (their cluster bus on the
    port + 10000) and makes them one cluster: the slots split evenly over CLUSTER_MASTERS masters,
    each master with one replica; returns once every node says the cluster is ok."""
    servers: list[Server] = []
    try:
        for n in range(CLUSTER_NODES):
            port = first_port + n
            name = f"redis-cluster-{port}"
            extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            log = log_dir / f"{name}.log" if log_dir is not None else None
            # A node keeps its cluster's shape in nodes.conf: a cluster is made afresh at each start.
            (data_dir.resolve() / name / "nodes.conf").unlink(missing_ok=True)
            servers.append(start_redis(data_dir, port, log_path=log, timeout=timeout, name=name, extra=extra))
        clients = [redis_client.Redis(host="127.0.0.1", port=_port_of(s), socket_timeout=5) for s in servers]
        try:
            _form_cluster(clients, timeout)
        finally:
            for client in clients:
                client.close()
    except BaseException:
        for server in reversed(servers):
            server.process.stop()
        raise
    return RedisClusterServers(servers)


def _command(client: redis_client.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _form_cluster(clients: list[redis_client.Redis], timeout: float) -> None:
    first = clients[0]
    for client in clients[1:]:
        _command(first, "CLUSTER MEET", "127.0.0.1", client.connection_pool.connection_kwargs["port"])
    masters = clients[:CLUSTER_MASTERS]
    for n, master in enumerate(masters):
        start, end = SLOTS * n // CLUSTER_MASTERS, SLOTS * (n + 1) // CLUSTER_MASTERS
        _command(master, "CLUSTER ADDSLOTS", *range(start, end))
    ids = [_command(m, "CLUSTER MYID") for m in masters]
    deadline = time.monotonic() + timeout
    for replica, master_id in zip(clients[CLUSTER_MASTERS:], ids, strict=True):
        # A replica must have heard of its master (gossip) before it can follow it.
        while True:
            try:
                _command(replica, "CLUSTER REPLICATE", master_id)
                break
            except redis_client.ResponseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    for client in clients:
        while client.cluster("INFO").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                raise DevstackError("the local Redis Cluster did not reach cluster_state:ok in time")
            time.sleep(0.05)
