"""The first Redis read of a home-timeline page: the caller's session, their blocks and mutes,
their home timeline and the lists of the celebrities it merges, in one server-side script (one
round trip).

A page then takes one more round trip, for the tweets it shows (social.caches.TweetCacheReader:
the tweets, their originals and authors): which tweets those are depends on the exact merge of the
timeline with the celebrities' lists (timeline_svc.merge), a rule kept in Python, in one place.
The owners are asked only for what the caches miss.

The script derives keys from what it reads (the timeline's and the relations' from the session,
each celebrity list's from a marker in the timeline), as the rate limiter's and the tweet cache's
scripts do: a cluster, whose keys live on many shards, splits this read into one per step
(`HomeOpening._read_by_step`: three round trips; the relations are then read where they are
needed, social.relations.Relations).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from meshkit.auth import Session, cache_key, session_of
from meshkit.shards import get_many, is_cluster
from social import Snapshot
from social.relations import RELATIONS_KEY_PARTS, relations_of
from social.rules import Relation
from social.timelines import (
    CELEBRITY_LIST_PREFIX,
    HOME_PREFIX,
    REBUILDING,
    decode,
    timeline_key,
)

# KEYS[1]: the session cache key (meshkit.auth). ARGV: the home-timeline key prefix, the
# celebrity-list key prefix, the timeline's lifetime, the rebuilding flag, the relations key's
# prefix and suffix, the most relations read whole. Returns {false} when the session is not
# cached, {session} when it is revoked (meshkit.auth), else {session, timeline or nil, the
# celebrities it merges (decimal ids), their lists, the relations entry (HGETALL; nil when it
# holds more than the most)}. The timeline's lifetime is renewed (a read is activity), unless it
# is being rebuilt, as social.timelines.TimelineStore.read does (_READ_TOUCH).
_OPEN = """
local session = redis.call('GET', KEYS[1])
if not session then return {false} end
local user = string.match(session, '^(%d+):')
if not user then return {session} end  -- a revoked session's tombstone
local relations = false
local held = ARGV[5] .. user .. ARGV[6]
if redis.call('HLEN', held) <= tonumber(ARGV[7]) then relations = redis.call('HGETALL', held) end
local key = ARGV[1] .. user
local home = redis.call('GET', key)
if not home then return {session, false, {}, {}, relations} end
if string.sub(home, 1, 1) ~= ARGV[4] then redis.call('EXPIRE', key, ARGV[3]) end

-- A celebrity marker is the author's id negated (top bit set): its decimal form, from 16-bit limbs.
local function author_of(marker)
  local b = {string.byte(marker, 1, 8)}
  local limbs, carry = {}, 1
  for i = 4, 1, -1 do
    local v = 65535 - (b[2 * i - 1] * 256 + b[2 * i]) + carry
    if v > 65535 then v, carry = v - 65536, 1 else carry = 0 end
    limbs[i] = v
  end
  local parts = {}
  repeat
    local rem, more = 0, false
    for i = 1, 4 do
      local cur = rem * 65536 + limbs[i]
      limbs[i] = math.floor(cur / 1000000000)
      rem = cur - limbs[i] * 1000000000
      more = more or limbs[i] > 0
    end
    table.insert(parts, 1, rem)
  until not more
  local text = string.format('%d', parts[1])
  for i = 2, #parts do text = text .. string.format('%09d', parts[i]) end
  return text
end

local authors, seen = {}, {}
for p = 9, #home - 7, 8 do
  if string.byte(home, p) >= 128 then
    local marker = string.sub(home, p, p + 7)
    if not seen[marker] then
      seen[marker] = true
      authors[#authors + 1] = author_of(marker)
    end
  end
end
local lists = {}
if #authors > 0 then
  local keys = {}
  for i, author in ipairs(authors) do keys[i] = ARGV[2] .. author end
  lists = redis.call('MGET', unpack(keys))
end
return {session, home, authors, lists, relations}
"""
# A viewer's relations are read with the page when there are at most this many (nearly everyone's);
# past it, only those with the page's authors are (social.relations.Relations.among).
RELATIONS_READ_WHOLE = 256


@dataclass(frozen=True, slots=True)
class Opening:
    """What the first read found: the session behind the token (None when the cache does not
    know it: ask its owner), the home timeline (None when absent), the lists of the celebrities
    it merges (None for a list that is absent) and every block and mute of the viewer (None when
    not read: not cached, or too many)."""

    session: Session | None
    home: Snapshot | None
    celebrity_lists: dict[int, Snapshot | None]
    relations: dict[int, Relation] | None = None


class HomeOpening:
    """Reads the session, home timeline and celebrity lists of a page in one round trip."""

    def __init__(self, redis: aioredis.Redis, home_ttl_seconds: int) -> None:
        self._redis = redis
        self._home_ttl = home_ttl_seconds
        self._script = redis.register_script(_OPEN)
        # Encoded once: packing a call's arguments is most of what a Redis client spends on it.
        self._args = (
            timeline_key(HOME_PREFIX, 0)[:-1].encode(),
            timeline_key(CELEBRITY_LIST_PREFIX, 0)[:-1].encode(),
            b"%d" % home_ttl_seconds,
            REBUILDING[:1],
            *(part.encode() for part in RELATIONS_KEY_PARTS),
            b"%d" % RELATIONS_READ_WHOLE,
        )

    async def read(self, token: str) -> Opening:
        if is_cluster(self._redis):
            return await self._read_by_step(token)
        found = await self._script(keys=[cache_key(token).encode()], args=self._args)
        if not found[0]:
            return Opening(None, None, {})
        if len(found) == 1:
            session_of(found[0])  # a revoked session: UNAUTHENTICATED
        session, home, authors, lists, relations = found
        return Opening(
            session_of(session),
            None if not home else decode(home),
            {
                int(author): None if not data else decode(data)
                for author, data in zip(authors, lists, strict=True)
            },
            None
            if relations is None
            else relations_of(dict(zip(relations[::2], relations[1::2], strict=True))),
        )

    async def _read_by_step(self, token: str) -> Opening:
        """What the script reads, on a Redis Cluster (the session, the timeline and the lists live
        on different nodes): one step after the other, as the script does them."""
        cached: bytes | None = await self._redis.get(cache_key(token))  # type: ignore[assignment]
        if cached is None:
            return Opening(None, None, {})
        session = session_of(cached)
        key = timeline_key(HOME_PREFIX, session.user_id)
        data: bytes | None = await self._redis.get(key)  # type: ignore[assignment]
        if data is None:
            return Opening(session, None, {})
        home = decode(data)
        if not home.rebuilding:  # an unfinished rebuild keeps its short lifetime
            await self._redis.expire(key, self._home_ttl)
        lists = await get_many(
            self._redis, [timeline_key(CELEBRITY_LIST_PREFIX, a) for a in home.celebrities]
        )
        return Opening(
            session,
            home,
            {
                a: None if not found else decode(found)
                for a, found in zip(home.celebrities, lists, strict=True)
            },
        )
