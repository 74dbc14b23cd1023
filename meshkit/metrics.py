"""Prometheus metrics of every service: the registry, what the kit measures (RPCs, pools, Redis
clients, stream consumers) and the HTTP endpoint. A service defines its own metrics on REGISTRY.

Names follow the conventions of go-grpc-prometheus for RPCs (`grpc_server_*`, labels grpc_service,
grpc_method, grpc_type, grpc_code), so existing gRPC dashboards and alerts apply; the mesh's own
gauges are `tweetmesh_*`. The README lists them all and deploy/grafana-dashboard.json charts them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

from meshkit.errors import DEPENDENCY_ERRORS

log = logging.getLogger(__name__)

# One registry per process (each process is one service), with the process's CPU, memory and fds.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_RPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")
RPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by method and gRPC status code.",
    [*_RPC_LABELS, "grpc_code"],
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to sending its status (a stream: its whole life), by method and code.",
    [*_RPC_LABELS, "grpc_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
OPEN_STREAMS = Gauge(
    "grpc_server_open_streams",
    "Server streams open right now (live home timelines).",
    ["grpc_service", "grpc_method"],
    registry=REGISTRY,
)

STREAM_ENTRIES = Counter(
    "tweetmesh_stream_entries",
    "Redis Stream entries this consumer finished: acked, failed (left pending for a retry) or dead-lettered.",
    ["stream", "outcome"],
    registry=REGISTRY,
)


GROUP_COMMIT_SIZE = Histogram(
    "tweetmesh_group_commit_size",
    "Calls committed together, per batch of a group commit (meshkit.batching), by its name.",
    ["batch"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)


class _PoolCollector(Collector):
    """PostgreSQL pool usage, read from psycopg_pool's own counters at scrape time."""

    def __init__(self) -> None:
        self._pools: list[AsyncConnectionPool] = []

    def watch(self, pool: AsyncConnectionPool) -> None:
        self._pools.append(pool)

    def forget(self, pool: AsyncConnectionPool) -> None:
        self._pools.remove(pool)

    def collect(self) -> Iterator[Metric]:
        families = {
            "pool_size": GaugeMetricFamily(
                "tweetmesh_db_pool_connections", "Connections held (in use or idle).", labels=["pool"]
            ),
            "pool_available": GaugeMetricFamily(
                "tweetmesh_db_pool_idle_connections", "Connections idle in the pool.", labels=["pool"]
            ),
            "requests_waiting": GaugeMetricFamily(
                "tweetmesh_db_pool_waiting", "Callers waiting for a connection.", labels=["pool"]
            ),
            "pool_max": GaugeMetricFamily(
                "tweetmesh_db_pool_max_connections", "The pool's max_size.", labels=["pool"]
            ),
        }
        for pool in list(self._pools):
            stats = pool.get_stats()
            for key, family in families.items():
                family.add_metric([pool.name], stats.get(key, 0))
        yield from families.values()


class _RedisPoolCollector(Collector):
    """Redis connection pool usage, from redis-py's get_connection_count() at scrape time."""

    def __init__(self) -> None:
        self._pools: dict[str, aioredis.ConnectionPool] = {}

    def watch(self, name: str, pool: aioredis.ConnectionPool) -> None:
        self._pools[name] = pool

    def forget(self, name: str) -> None:
        self._pools.pop(name, None)

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "tweetmesh_redis_pool_connections", "Redis connections held, by state (idle, used).",
            labels=["pool", "state"],
        )  # fmt: skip
        most = GaugeMetricFamily(
            "tweetmesh_redis_pool_max_connections", "The Redis pool's max_connections.", labels=["pool"]
        )
        for name, pool in list(self._pools.items()):
            for count, attributes in pool.get_connection_count():
                held.add_metric([name, str(attributes.get("db.client.connection.state", "?"))], count)
            most.add_metric([name], pool.max_connections)
        yield held
        yield most


_POOLS = _PoolCollector()
_REDIS_POOLS = _RedisPoolCollector()
REGISTRY.register(_POOLS)
REGISTRY.register(_REDIS_POOLS)


def watch_pool(pool: AsyncConnectionPool) -> None:
    """Exposes `pool`'s usage until forget_pool."""
    _POOLS.watch(pool)


def forget_pool(pool: AsyncConnectionPool) -> None:
    _POOLS.forget(pool)


def watch_redis(name: str, client: aioredis.Redis) -> None:
    """Exposes the usage of `client`'s connection pool until forget_redis."""
    _REDIS_POOLS.watch(name, client.connection_pool)


def forget_redis(name: str) -> None:
    _REDIS_POOLS.forget(name)


class MetricsServer:
    """/metrics over HTTP on a thread of its own, so a scrape never waits for the event loop."""

    def __init__(self, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
        log.info("metrics", extra={"address": f"{host}:{port}", "path": "/metrics"})

    async def close(self) -> None:
        # shutdown() blocks until the serving loop notices (about half a second): not on the loop.
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
        await asyncio.to_thread(self._thread.join, 5)


async def refresh_every(seconds: float, refresh: Callable[[], Awaitable[None]], name: str) -> None:
    """Runs `refresh` every `seconds` for ever; a dependency being down skips one round, no more."""
    while True:
        try:
            await refresh()
        except DEPENDENCY_ERRORS as error:
            log.warning("metrics refresh failed", extra={"what": name, "error": error})
        await asyncio.sleep(seconds)
