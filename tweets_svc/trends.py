"""Trending hashtags: counted from the tweets' events in Redis, per minute and in bounded memory,
and ranked by how far their use in a window rose above their own baseline.

Each tweet's hashtags count in the bucket of the minute it was posted (its event's create_time, so
a late or redelivered event lands where it belongs; a deletion takes its count back). A bucket is
a sorted set `trends:<minute>` of at most `tags_per_bucket` tags (past that, the least used are
dropped: a tag used once in a minute among thousands cannot trend), kept as long as a baseline
looks back. A window's ranking compares each tag's count in the window with its average count in
the `baseline_windows` windows before it: score = (count - expected) / sqrt(expected + 1), so a
tag used steadily scores about 0 however common it is, and one that jumps scores high; a tag
needs `min_count` uses in the window to rank at all. Rankings are cached for `cache_seconds`.

A "minute" lasts `minute_seconds` (60; tests shorten it to see hours pass in seconds).
An event redelivered after a crash may count twice: trends are estimates, not counts to audit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from meshkit.errors import InvalidArgument

# The windows a ranking may be asked for, in minutes.
WINDOWS = {"5m": 5, "15m": 15, "1h": 60, "6h": 360}
TRENDS_MAX = 50

# KEYS[1]: the bucket. ARGV: delta, the bucket's time to live (ms), the most tags it keeps, tags...
_COUNT = """
for i = 4, #ARGV do
  local score = tonumber(redis.call('ZINCRBY', KEYS[1], ARGV[1], ARGV[i]))
  if score <= 0 then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""


@dataclass(frozen=True, slots=True)
class Trend:
    tag: str
    count: int  # uses in the window
    expected: float  # average uses per window over the baseline
    score: float


def window_minutes(window: str) -> int:
    """The minutes of a window name ("1h"); "" is 1h."""
    minutes = WINDOWS.get(window or "1h")
    if minutes is None:
        raise InvalidArgument.field("window", f"must be one of {', '.join(WINDOWS)}, got {window[:20]!r}")
    return minutes


def rank(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    baseline_windows: int,
    min_count: int,
    limit: int,
) -> list[Trend]:
    """Tags by how far their count rose above their baseline's average window, best first."""
    trends = []
    for tag, count in current.items():
        if count < min_count:
            continue
        expected = baseline.get(tag, 0.0) / baseline_windows
        trends.append(Trend(tag, int(count), expected, (count - expected) / math.sqrt(expected + 1)))
    trends.sort(key=lambda t: (-t.score, -t.count, t.tag))
    return trends[:limit]


class TrendCounter:
    """Counts and ranks hashtags in Redis (see the module's docstring)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        minute_seconds: float = 60.0,
        baseline_windows: int = 6,
        tags_per_bucket: int = 2000,
        min_count: int = 3,
        cache_seconds: float = 5.0,
    ) -> None:
        self._redis = redis
        self._minute = minute_seconds
        self._baseline_windows = baseline_windows
        self._tags_per_bucket = tags_per_bucket
        self._min_count = min_count
        self._cache_ms = max(int(cache_seconds * 1000), 1)
        self._count = redis.register_script(_COUNT)
        longest = max(WINDOWS.values()) * (baseline_windows + 1)
        self._keep_ms = int((longest + 2) * minute_seconds * 1000)

    def _bucket(self, minute: int) -> str:
        return f"trends:{minute}"

    def minute_of(self, at_seconds: float) -> int:
        return int(at_seconds // self._minute)

    async def record(
        self, tags: Sequence[str], at_seconds: float, now_seconds: float, *, delta: int = 1
    ) -> None:
        """Counts one tweet's tags (delta -1: takes a deleted tweet's back) in its minute; a tweet
        older than any baseline looks back (an old event read again) is not counted."""
        if tags and at_seconds * 1000 > now_seconds * 1000 - self._keep_ms:
            key = self._bucket(self.minute_of(at_seconds))
            await self._count(keys=[key], args=[delta, self._keep_ms, self._tags_per_bucket, *tags])

    async def ranking(self, window: str, now_seconds: float, limit: int) -> list[Trend]:
        """The top `limit` tags of the window ending now (cached a few seconds)."""
        minutes = window_minutes(window)
        cache = f"trends:ranking:{minutes}:{limit}"
        if (cached := await self._redis.get(cache)) is not None:
            return [Trend(*row) for row in json.loads(cached)]
        now = self.minute_of(now_seconds)
        current = [self._bucket(m) for m in range(now - minutes + 1, now + 1)]
        start = now - minutes * (self._baseline_windows + 1) + 1
        before = [self._bucket(m) for m in range(start, now - minutes + 1)]
        counts = await self._sum(current)
        baseline = await self._sum(before, only=[t for t, c in counts.items() if c >= self._min_count])
        trends = rank(counts, baseline, self._baseline_windows, self._min_count, limit)
        rows = [[t.tag, t.count, t.expected, t.score] for t in trends]
        await self._redis.set(cache, json.dumps(rows), px=self._cache_ms)
        return trends

    async def _sum(self, keys: list[str], only: list[str] | None = None) -> dict[str, float]:
        """Each tag's total over the buckets (of the tags in `only`, when given)."""
        if only is not None and not only:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                if only is None:
                    pipe.zrange(key, 0, -1, withscores=True)
                else:
                    pipe.zmscore(key, only)
            replies = await pipe.execute()
        totals: dict[str, float] = {}
        for reply in replies:
            pairs = reply if only is None else zip(only, reply, strict=True)
            for tag, score in pairs:
                if score is not None:
                    name = tag.decode() if isinstance(tag, bytes) else tag
                    totals[name] = totals.get(name, 0.0) + float(score)
        return totals
