"""Timelines in Redis: the one representation fanout_svc writes and timeline_svc reads, for home
timelines (`home:<user_id>`) and for celebrities' own recent tweets (`celeb:<author_id>`).

A timeline is a string: an 8-byte header, then tweet ids as 8-byte big-endian integers in the
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
The flag carries a token of that rebuild: a rebuild begun later replaces it, and the earlier one's
finish then changes nothing (what it read from PostgreSQL is older than what the later one reads).
Deliveries, deletions and changes of the celebrities merged are published on the timeline's live
channel (social.live: channel names and message format), but only to channels someone listens on.

Hybrid fan-out keeps, as negative ids in a follower's home timeline, a marker for each celebrity
they follow: those authors are not fanned out on write, and their tweets are merged in at read
time from the author's own list. Markers sort after every id as bytes, so trimming keeps them;
they live and expire with the timeline.

The scripts know no key or channel names: each gets its keys, the channel prefix and the length of
the key prefix to strip (channel = channel prefix + what follows the key prefix), and the counter
of deliveries, if any, from TimelineStore.
"""

from __future__ import annotations

import array
import bisect
import operator
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from meshkit import tracing
from meshkit.settings import Env
from social.live import (
    CELEBRITY_CHANNEL_PREFIX,
    USER_CHANNEL_PREFIX,
    celebrity_message,
    tweet_message,
)

HOME_PREFIX = "home"
CELEBRITY_LIST_PREFIX = "celeb"
# How many home timelines fan-out wrote a tweet into, ever (GetFanoutStats).
DELIVERED_COUNTER = "fanout:delivered"
BUILT = b"\0" * 8
REBUILDING = b"R"  # the first byte of the header of a timeline being rebuilt; a token follows
# A timeline being rebuilt expires soon unless the rebuild finishes: a crashed rebuild is redone.
REBUILD_TTL_SECONDS = 60

_TRIM = """
local function trim(key, keep)
  local data = redis.call('GET', key)
  local ids, markers, seen = {}, {}, {}
  for p = 9, #data, 8 do
    local id = string.sub(data, p, p + 7)
    if not seen[id] then
      seen[id] = true
      -- A set top bit is a negative id: a celebrity marker, always kept.
      if string.byte(id, 1) >= 128 then markers[#markers + 1] = id else ids[#ids + 1] = id end
    end
  end
  -- Big-endian ids compare as bytes the way they compare as numbers.
  table.sort(ids)
  local newest = table.concat(ids, '', math.max(1, #ids - keep + 1))
  redis.call('SET', key, string.sub(data, 1, 8) .. newest .. table.concat(markers), 'KEEPTTL')
end
"""

# KEYS: timeline keys. ARGV: the 8-byte id, max bytes, ids kept by a trim, the live message, the
# channel prefix, the key prefix length, the counter of deliveries ("" for none). Returns how many
# timelines got the tweet.
_DELIVER = (
    _TRIM
    + """
local delivered = 0
local limit, keep, skip = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local channels = {}
for i, key in ipairs(KEYS) do channels[i] = ARGV[5] .. string.sub(key, skip + 1) end
local listeners = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
for i, key in ipairs(KEYS) do
  if redis.call('STRLEN', key) > 0 then
    if redis.call('APPEND', key, ARGV[1]) > limit then trim(key, keep) end
    delivered = delivered + 1
  end
  if listeners[2 * i] > 0 then redis.call('PUBLISH', channels[i], ARGV[4]) end
end
if delivered > 0 and ARGV[7] ~= '' then redis.call('INCRBY', ARGV[7], delivered) end
return delivered
"""
)

# KEYS[1]: one timeline. ARGV: max bytes, ids kept by a trim, ttl, the header of the rebuild, the
# header of a built timeline, packed ids. Adds the ids to what fan-out wrote meanwhile and marks the
# timeline built, if it still carries that rebuild's header; returns 1 if so, 0 otherwise. It
# rewrites the value instead of appending: SET allocates it exactly, APPEND would double it.
_FINISH_REBUILD = (
    _TRIM
    + """
local data = redis.call('GET', KEYS[1])
if not data or string.sub(data, 1, 8) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[5] .. string.sub(data, 9) .. ARGV[6], 'EX', ARGV[3])
if #data + #ARGV[6] > tonumber(ARGV[1]) then trim(KEYS[1], tonumber(ARGV[2])) end
return 1
"""
)

# KEYS: timelines. ARGV: the packed id, the live message, the channel prefix, the key prefix length.
# Takes a deleted tweet out of each timeline and tells its live streams (deletions are rare: the
# rewrite of a few kilobytes per timeline is fine).
_RETRACT = """
local skip = tonumber(ARGV[4])
for _, key in ipairs(KEYS) do
  local data = redis.call('GET', key)
  if data then
    local kept = {}
    for p = 9, #data, 8 do
      local id = string.sub(data, p, p + 7)
      if id ~= ARGV[1] then kept[#kept + 1] = id end
    end
    if #kept * 8 + 8 < #data then
      redis.call('SET', key, string.sub(data, 1, 8) .. table.concat(kept), 'KEEPTTL')
    end
  end
  redis.call('PUBLISH', ARGV[3] .. string.sub(key, skip + 1), ARGV[2])
end
return #KEYS
"""

# KEYS: timelines. ARGV: max bytes, ids kept by a trim, packed ids. Appends the ids to each
# existing timeline (a demoted celebrity's recent tweets); returns how many timelines took them.
_MERGE_INTO = (
    _TRIM
    + """
local took = 0
for _, key in ipairs(KEYS) do
  if redis.call('STRLEN', key) > 0 then
    if redis.call('APPEND', key, ARGV[3]) > tonumber(ARGV[1]) then trim(key, tonumber(ARGV[2])) end
    took = took + 1
  end
end
return took
"""
)

# KEYS: timelines. ARGV: the live message, the channel prefix, the key prefix length. Tells the live
# streams of the timelines (those someone listens to) of a change to a tweet they may show; the
# timelines themselves do not change.
_ANNOUNCE = """
local skip = tonumber(ARGV[3])
local channels = {}
for i, key in ipairs(KEYS) do channels[i] = ARGV[2] .. string.sub(key, skip + 1) end
local listeners = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
local told = 0
for i = 1, #channels do
  if listeners[2 * i] > 0 then redis.call('PUBLISH', channels[i], ARGV[1]); told = told + 1 end
end
return told
"""

# KEYS: timelines. ARGV: the packed marker, "+" to add it or "-" to take it out, the live message,
# the channel prefix, the key prefix length. Existing timelines change; their open streams are told.
_MARK = """
local skip = tonumber(ARGV[5])
local channels = {}
for i, key in ipairs(KEYS) do channels[i] = ARGV[4] .. string.sub(key, skip + 1) end
local listeners = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
local changed = 0
for i, key in ipairs(KEYS) do
  local data = redis.call('GET', key)
  if data then
    local at = nil
    for p = 9, #data, 8 do
      if string.sub(data, p, p + 7) == ARGV[1] then at = p; break end
    end
    if ARGV[2] == '+' and not at then
      redis.call('APPEND', key, ARGV[1]); changed = changed + 1
    elseif ARGV[2] == '-' and at then
      redis.call('SET', key, string.sub(data, 1, at - 1) .. string.sub(data, at + 8), 'KEEPTTL')
      changed = changed + 1
    end
  end
  if listeners[2 * i] > 0 then redis.call('PUBLISH', channels[i], ARGV[3]) end
end
return changed
"""


def timeline_key(prefix: str, ident: int) -> str:
    return f"{prefix}:{ident}"


def home_key(user_id: int) -> str:
    return timeline_key(HOME_PREFIX, user_id)


def pack(tweet_ids: Iterable[int]) -> bytes:
    ids = array.array("q", tweet_ids)
    if sys.byteorder == "little":
        ids.byteswap()
    return ids.tobytes()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored timeline, decoded."""

    tweet_ids: list[int]  # newest first, each once
    celebrities: list[int]  # authors whose tweets are merged in at read time
    rebuilding: bool

    @property
    def oldest(self) -> int | None:
        return self.tweet_ids[-1] if self.tweet_ids else None


def decode(data: bytes) -> Snapshot:
    ids = array.array("q", data[8:])
    if sys.byteorder == "little":
        ids.byteswap()
    # Ids arrive nearly in id order, which sorts in about linear time; equal ids end up adjacent,
    # so dict.fromkeys drops the repeats keeping the order. Markers (negative) sort last.
    ordered = sorted(ids, reverse=True)
    tweets_end = bisect.bisect_left(ordered, 0, key=operator.neg)
    markers_start = bisect.bisect_right(ordered, 0, key=operator.neg)
    return Snapshot(
        list(dict.fromkeys(ordered[:tweets_end])),
        sorted({-t for t in ordered[markers_start:]}),
        data[:1] == REBUILDING,
    )


def unpack(data: bytes) -> list[int]:
    """The tweet ids of a stored timeline, newest first, each once."""
    return decode(data).tweet_ids


class TimelineStore:
    """The timelines under `key_prefix` (`<key_prefix>:<id>`), whose changes are published on
    `<channel_prefix><id>`; deliveries are added up in `delivered_counter` when one is named.
    home_timelines() and celebrity_lists() build the two kinds the mesh keeps."""

    def __init__(
        self,
        redis: aioredis.Redis,
        max_entries: int,
        ttl_seconds: int,
        *,
        key_prefix: str,
        channel_prefix: str,
        delivered_counter: str = "",
    ) -> None:
        self._redis = redis
        self.max_entries = max_entries
        self._keep = max(max_entries // 2, 1)
        self._max_bytes = 8 + 8 * max_entries
        self._ttl = ttl_seconds
        self._prefix = key_prefix
        self._channel_prefix = channel_prefix
        # What the scripts strip from a key to name its channel: the prefix and its colon.
        self._skip = len(timeline_key(key_prefix, 0)) - 1
        self._counter = delivered_counter
        self._deliver = redis.register_script(_DELIVER)
        self._finish_rebuild = redis.register_script(_FINISH_REBUILD)
        self._mark = redis.register_script(_MARK)
        self._retract = redis.register_script(_RETRACT)
        self._merge_into = redis.register_script(_MERGE_INTO)
        self._announce = redis.register_script(_ANNOUNCE)

    def key(self, ident: int) -> str:
        return timeline_key(self._prefix, ident)

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int:
        """Appends `tweet_id` to the existing timelines of `user_ids` and tells their live streams."""
        delivered = 0
        message = tweet_message(tweet_id, deleted=False, trace=tracing.traceparent())
        args = (
            pack([tweet_id]),
            self._max_bytes,
            self._keep,
            message,
            self._channel_prefix,
            self._skip,
            self._counter,
        )
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            delivered += int(await self._deliver(keys=keys, args=args))
        return delivered

    async def retract(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> None:
        """Takes a deleted tweet out of the timelines of `user_ids` and tells their live streams."""
        packed = pack([tweet_id])
        message = tweet_message(tweet_id, deleted=True, trace=tracing.traceparent())
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            await self._retract(keys=keys, args=[packed, message, self._channel_prefix, self._skip])

    async def announce_edit(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int:
        """Tells the live streams of `user_ids`' timelines that `tweet_id` was edited; returns how
        many channels had listeners."""
        told = 0
        message = tweet_message(tweet_id, edited=True)
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            told += int(await self._announce(keys=keys, args=[message, self._channel_prefix, self._skip]))
        return told

    async def mark_celebrity(
        self, author_id: int, user_ids: Sequence[int], following: bool, chunk: int = 1000
    ) -> int:
        """Adds (or takes out) the marker of celebrity `author_id` in the existing timelines of
        `user_ids` and tells their open streams; returns how many timelines changed."""
        changed = 0
        marker = pack([-author_id])
        message = celebrity_message(author_id, following=following)
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            args = (marker, "+" if following else "-", message, self._channel_prefix, self._skip)
            changed += int(await self._mark(keys=keys, args=args))
        return changed

    async def merge_into(self, user_ids: Sequence[int], tweet_ids: Iterable[int], chunk: int = 1000) -> int:
        """Adds the same tweets to the existing timelines of `user_ids`, telling no stream."""
        packed = pack(tweet_ids)
        took = 0
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            took += int(await self._merge_into(keys=keys, args=[self._max_bytes, self._keep, packed]))
        return took

    async def exists(self, user_id: int) -> bool:
        return bool(await self._redis.exists(self.key(user_id)))

    async def begin_rebuild(self, user_id: int) -> bytes:
        """Creates the timeline empty, flagged as rebuilding, so fan-out writes into it right away;
        returns the header that names this rebuild (for finish_rebuild)."""
        begun = REBUILDING + os.urandom(7)
        await self._redis.set(self.key(user_id), begun, ex=REBUILD_TTL_SECONDS)
        return begun

    async def finish_rebuild(
        self, user_id: int, tweet_ids: Iterable[int], celebrities: Iterable[int], begun: bytes
    ) -> bool:
        """Adds what the rebuild found, clears the flag and gives the timeline its full lifetime;
        False (nothing done) when the rebuild `begun` is no longer the timeline's: another began
        since, or the timeline expired."""
        packed = pack([*tweet_ids, *(-c for c in celebrities)])
        args = (self._max_bytes, self._keep, self._ttl, begun, BUILT, packed)
        return bool(await self._finish_rebuild(keys=[self.key(user_id)], args=args))

    async def read(self, user_id: int, *, touch: bool = True) -> Snapshot | None:
        """The timeline, None when absent. A read counts as activity: it renews the lifetime."""
        key = self.key(user_id)
        if not touch:
            found: bytes | None = await self._redis.get(key)  # type: ignore[assignment]
            return None if found is None else decode(found)
        data: bytes | None = await self._redis.getex(key, ex=self._ttl)  # type: ignore[assignment]
        if data is None:
            return None
        snapshot = decode(data)
        if snapshot.rebuilding:  # keep the short lifetime of an unfinished rebuild
            await self._redis.expire(key, REBUILD_TTL_SECONDS)
        return snapshot

    async def read_many(self, user_ids: Sequence[int]) -> list[Snapshot | None]:
        """Several timelines in one round trip (celebrities' own, for a merge)."""
        if not user_ids:
            return []
        found: list[bytes | None] = await self._redis.mget([self.key(u) for u in user_ids])  # type: ignore[assignment]
        return [None if data is None else decode(data) for data in found]


def home_timelines(redis: aioredis.Redis, max_entries: int, ttl_seconds: int) -> TimelineStore:
    """Each user's home timeline, `home:<user_id>`, announced on `live:<user_id>`."""
    return TimelineStore(
        redis,
        max_entries,
        ttl_seconds,
        key_prefix=HOME_PREFIX,
        channel_prefix=USER_CHANNEL_PREFIX,
        delivered_counter=DELIVERED_COUNTER,
    )


def celebrity_lists(redis: aioredis.Redis, max_entries: int, ttl_seconds: int) -> TimelineStore:
    """Each celebrity's own recent tweets, `celeb:<author_id>`, announced on `celebrity:<author_id>`.
    Only tweets for everyone go in (social.rules.is_for_everyone): the rest are written directly."""
    return TimelineStore(
        redis,
        max_entries,
        ttl_seconds,
        key_prefix=CELEBRITY_LIST_PREFIX,
        channel_prefix=CELEBRITY_CHANNEL_PREFIX,
    )


# Readers of the timelines' size and lifetime (fanout_svc writes them, timeline_svc reads them).


def read_home_timeline_max(env: Env) -> int:
    return env.integer("HOME_TIMELINE_MAX", 800, minimum=1)


def read_home_timeline_ttl_seconds(env: Env) -> int:
    return env.integer("HOME_TIMELINE_TTL_SECONDS", 14 * 24 * 3600, minimum=60)
