"""Home timelines in Redis: the one representation fanout_svc writes and timeline_svc reads.

`home:<user_id>` is a string: an 8-byte header, then tweet ids as 8-byte big-endian integers in the
order they arrived. Delivering a tweet is an APPEND (O(1), no search), so fan-out runs at Redis's
command rate; a sorted set in its compact encoding, by contrast, scans its whole listpack on every
insert and was ten times slower at 800 entries. An entry costs 8 bytes plus the string's growth
slack (Redis doubles a string's allocation when it grows): 8 to 16 bytes, ~11 on average. Readers
decode, dedupe and sort the few kilobytes; because an id repeated by a redelivered event is
dropped there and when trimming, redelivery changes nothing anyone sees.

A timeline holds between `max_entries / 2` and `max_entries` ids: when an append takes it past
`max_entries`, a script keeps the newest `max_entries / 2` (amortized O(1) per delivery). The header
exists even when no id does, which marks the timeline as built: fan-out writes only into timelines
that exist; an absent one (inactive user, wiped Redis) is rebuilt from PostgreSQL on the next read.
A rebuild creates the header with the REBUILDING flag before it queries PostgreSQL, so no tweet
fanned out during the rebuild is lost, and readers meanwhile know the timeline is not complete.
Deliveries are also PUBLISHed on `live:<user_id>`, but only to channels someone listens on.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Iterable, Sequence
from typing import cast

import redis.asyncio as aioredis

DELIVERED_COUNTER = "fanout:delivered"
BUILT = b"\0" * 8
REBUILDING = b"R" + b"\0" * 7
_ID = ">q"

_TRIM = """
local function trim(key, keep)
  local data = redis.call('GET', key)
  local ids, seen = {}, {}
  for p = 9, #data, 8 do
    local id = string.sub(data, p, p + 7)
    if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
  end
  -- Big-endian ids compare as bytes the way they compare as numbers.
  table.sort(ids)
  local newest = table.concat(ids, '', math.max(1, #ids - keep + 1))
  redis.call('SET', key, string.sub(data, 1, 8) .. newest, 'KEEPTTL')
end
"""

# KEYS: home timeline keys. ARGV: the 8-byte id, max bytes, ids kept by a trim, the decimal id.
# Returns how many timelines got the tweet.
_DELIVER = (
    _TRIM
    + """
local delivered = 0
local limit, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
local channels = {}
for i, key in ipairs(KEYS) do channels[i] = 'live:' .. string.sub(key, 6) end
local listeners = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
for i, key in ipairs(KEYS) do
  if redis.call('STRLEN', key) > 0 then
    if redis.call('APPEND', key, ARGV[1]) > limit then trim(key, keep) end
    delivered = delivered + 1
  end
  if listeners[2 * i] > 0 then redis.call('PUBLISH', channels[i], ARGV[4]) end
end
if delivered > 0 then redis.call('INCRBY', 'fanout:delivered', delivered) end
return delivered
"""
)

# KEYS[1]: one timeline. ARGV: max bytes, ids kept by a trim, ttl, header to set or "", packed ids.
# Adds the ids only if the timeline exists; returns how many were given (0 when it does not exist).
_MERGE = (
    _TRIM
    + """
if redis.call('STRLEN', KEYS[1]) == 0 then return 0 end
if ARGV[5] ~= '' and redis.call('APPEND', KEYS[1], ARGV[5]) > tonumber(ARGV[1]) then
  trim(KEYS[1], tonumber(ARGV[2]))
end
if ARGV[4] ~= '' then redis.call('SETRANGE', KEYS[1], 0, ARGV[4]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return #ARGV[5] / 8
"""
)

# KEYS[1]: one timeline. ARGV: packed ids to take out.
_REMOVE = """
local data = redis.call('GET', KEYS[1])
if not data then return 0 end
local gone = {}
for p = 1, #ARGV[1], 8 do gone[string.sub(ARGV[1], p, p + 7)] = true end
local kept = {}
for p = 9, #data, 8 do
  local id = string.sub(data, p, p + 7)
  if not gone[id] then kept[#kept + 1] = id end
end
redis.call('SET', KEYS[1], string.sub(data, 1, 8) .. table.concat(kept), 'KEEPTTL')
return (#data - 8) / 8 - #kept
"""


def home_key(user_id: int) -> str:
    return f"home:{user_id}"


def live_channel(user_id: int) -> str:
    return f"live:{user_id}"


def pack(tweet_ids: Iterable[int]) -> bytes:
    ids = array.array("q", tweet_ids)
    if sys.byteorder == "little":
        ids.byteswap()
    return ids.tobytes()


def unpack(data: bytes) -> list[int]:
    """The ids of a stored timeline (header excluded), newest first, each once."""
    ids = array.array("q", data[8:])
    if sys.byteorder == "little":
        ids.byteswap()
    return sorted(set(ids), reverse=True)


class HomeTimelines:
    def __init__(self, redis: aioredis.Redis, max_entries: int, ttl_seconds: int) -> None:
        self._redis = redis
        self.max_entries = max_entries
        self._keep = max(max_entries // 2, 1)
        self._max_bytes = 8 + 8 * max_entries
        self._ttl = ttl_seconds
        self._deliver = redis.register_script(_DELIVER)
        self._merge = redis.register_script(_MERGE)
        self._remove = redis.register_script(_REMOVE)

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int:
        """Appends `tweet_id` to the existing timelines of `user_ids` and tells their live streams."""
        delivered = 0
        packed = pack([tweet_id])
        for start in range(0, len(user_ids), chunk):
            keys = [home_key(u) for u in user_ids[start : start + chunk]]
            delivered += int(
                await self._deliver(keys=keys, args=[packed, self._max_bytes, self._keep, str(tweet_id)])
            )
        return delivered

    async def exists(self, user_id: int) -> bool:
        return bool(await self._redis.exists(home_key(user_id)))

    async def begin_rebuild(self, user_id: int) -> None:
        """Creates the timeline empty, flagged as rebuilding, so fan-out writes into it right away."""
        await self._redis.set(home_key(user_id), REBUILDING, ex=self._ttl)

    async def finish_rebuild(self, user_id: int, tweet_ids: Iterable[int]) -> None:
        """Adds what the rebuild found and clears the flag."""
        await self._merge_packed(user_id, pack(tweet_ids), BUILT)

    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int:
        """Adds tweets to a timeline if it exists (a follow)."""
        return await self._merge_packed(user_id, pack(tweet_ids), b"")

    async def _merge_packed(self, user_id: int, packed: bytes, header: bytes) -> int:
        return int(
            await self._merge(
                keys=[home_key(user_id)], args=[self._max_bytes, self._keep, self._ttl, header, packed]
            )
        )

    async def remove(self, user_id: int, tweet_ids: Iterable[int]) -> None:
        packed = pack(tweet_ids)
        if packed:
            await self._remove(keys=[home_key(user_id)], args=[packed])

    async def _read(self, user_id: int, touch: bool) -> bytes | None:
        key = home_key(user_id)
        if not touch:
            found: bytes | None = await self._redis.get(key)  # type: ignore[assignment]
            return found
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.expire(key, self._ttl)  # read means active: the timeline lives on
            data, _ = await pipe.execute()
        return cast("bytes | None", data)

    async def oldest(self, user_id: int) -> int | None:
        """The oldest tweet id held, None when the timeline is absent or empty."""
        data = await self._read(user_id, touch=False)
        ids = unpack(data) if data else []
        return ids[-1] if ids else None

    async def page(self, user_id: int, before: int | None, limit: int) -> list[int] | None:
        """Up to `limit` ids below `before`, newest first; None when the timeline is absent."""
        data = await self._read(user_id, touch=True)
        if data is None:
            return None
        ids = unpack(data)
        if before is not None:
            ids = [t for t in ids if t < before]
        return ids[:limit]

    async def rebuilding(self, user_id: int) -> bool:
        return bool(await self._redis.getrange(home_key(user_id), 0, 0) == REBUILDING[:1])

    async def after(self, user_id: int, after: int, limit: int) -> list[int] | None:
        """Up to `limit` ids above `after`, oldest first; None when the timeline is absent."""
        data = await self._read(user_id, touch=True)
        if data is None:
            return None
        return sorted(t for t in unpack(data) if t > after)[:limit]
