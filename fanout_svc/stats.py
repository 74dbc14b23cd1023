"""fanout_svc's statistics: its consumer groups' state and the deliveries counted, read from Redis
for the admin API (GetFanoutStats) and the Prometheus gauges."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions

from meshkit.streams import dead_letter_stream
from social.timelines import DELIVERED_COUNTER


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
    def __init__(self, redis: aioredis.Redis, streams: list[str], group: str) -> None:
        self._redis = redis
        self._streams = streams
        self._group = group

    async def _stream_stats(self, stream: str) -> StreamStats:
        length = int(await self._redis.xlen(stream))
        try:
            groups = await self._redis.xinfo_groups(stream)
        except redis.exceptions.ResponseError:  # no such stream yet
            groups = []
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
        dead = sum([int(await self._redis.xlen(dead_letter_stream(s))) for s in self._streams])
        return FanoutStats(streams, int(delivered or 0), dead)
