"""fanout_svc's statistics: its consumer groups' state and the deliveries counted, read from Redis
for the admin API (GetFanoutStats), and its Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter, Gauge

from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.metrics import REGISTRY
from meshkit.streams import DeadLetters
from social.timelines import DELIVERED_COUNTER

TIMELINE_WRITES = Counter(
    "tweetmesh_fanout_timeline_writes",
    "Home timelines this fan-out worker added a tweet to.",
    registry=REGISTRY,
)
# Read from Redis every few seconds (export_stats): the state of the whole consumer group, so any
# one worker's numbers are the mesh's (take max(), not sum(), across workers).
STREAM_LENGTH = Gauge(
    "tweetmesh_fanout_stream_length", "Entries in the event stream.", ["stream"], registry=REGISTRY
)
STREAM_LAG = Gauge(
    "tweetmesh_fanout_stream_lag",
    "Entries not yet delivered to the fan-out consumer group (Redis XINFO GROUPS lag).",
    ["stream"],
    registry=REGISTRY,
)
STREAM_PENDING = Gauge(
    "tweetmesh_fanout_stream_pending",
    "Entries delivered to a fan-out worker and not yet acknowledged.",
    ["stream"],
    registry=REGISTRY,
)
CONSUMERS = Gauge(
    "tweetmesh_fanout_consumers", "Workers known to the consumer group.", ["stream"], registry=REGISTRY
)
DELIVERED = Gauge(
    "tweetmesh_fanout_delivered",
    "Home-timeline writes by all fan-out workers since Redis was last wiped (a mesh-wide counter).",
    registry=REGISTRY,
)
DEAD_LETTERED = Gauge(
    "tweetmesh_fanout_dead_lettered", "Entries in the dead-letter streams.", registry=REGISTRY
)


@dataclass(frozen=True, slots=True)
class StreamStats:
    stream: str
    length: int
    pending: int
    lag: int
    consumers: int


@dataclass(frozen=True, slots=True)
class FanoutStats:
    streams: list[StreamStats]
    delivered: int
    dead_lettered: int


class FanoutStatsReader:
    def __init__(
        self, redis: aioredis.Redis, streams: list[str], group: str, dead_letters: DeadLetters
    ) -> None:
        self._redis = redis
        self._streams = streams
        self._group = group
        self._dead_letters = dead_letters

    async def _stream_stats(self, stream: str) -> StreamStats:
        length = int(await self._redis.xlen(stream))
        try:
            groups = await self._redis.xinfo_groups(stream)
        except redis.exceptions.ResponseError as error:
            if isinstance(error, DEPENDENCY_ERRORS):
                raise
            groups = []  # no such stream yet
        mine = next((g for g in groups if g["name"] in (self._group, self._group.encode())), None)
        if mine is None:
            return StreamStats(stream, length, 0, length, 0)
        lag = mine.get("lag")
        return StreamStats(
            stream,
            length,
            int(mine["pending"]),
            int(lag) if lag is not None else 0,
            int(mine["consumers"]),
        )

    async def stats(self) -> FanoutStats:
        streams = [await self._stream_stats(s) for s in self._streams]
        delivered = await self._redis.get(DELIVERED_COUNTER)
        return FanoutStats(streams, int(delivered or 0), await self._dead_letters.count())


async def export_stats(stats: FanoutStatsReader) -> None:
    """The consumer group's state (the same numbers as GetFanoutStats) as Prometheus gauges."""
    snapshot = await stats.stats()
    for s in snapshot.streams:
        STREAM_LENGTH.labels(s.stream).set(s.length)
        STREAM_LAG.labels(s.stream).set(s.lag)
        STREAM_PENDING.labels(s.stream).set(s.pending)
        CONSUMERS.labels(s.stream).set(s.consumers)
    DELIVERED.set(snapshot.delivered)
    DEAD_LETTERED.set(snapshot.dead_lettered)
