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
A rebuild that found fewer ids than it asked for may leave the COMPLETE header: nothing lies below
the timeline's oldest id, so readers need not ask PostgreSQL past it (timeline_svc.merge). A trim
(which drops the oldest) and a merge of some of an author's tweets make it plain BUILT again.
Celebrities' lists are so marked (fan-out writes them by key); home timelines are not (what reaches
one after its rebuild depends on the follower lists).
Deliveries, deletions and changes of the celebrities merged are published on the timeline's live
channel (social.live: channel names and message format), but only to channels someone listens on.
Where pub/sub is sharded (a Redis 7 cluster: meshkit.shards.sharded_pubsub) a timeline's channel
carries the timeline's key as hash tag (`in_slot_of`, `sharded_channel`), so it lives in the
timeline's slot and the scripts that write the timeline SPUBLISH on their own node.

Hybrid fan-out keeps, as negative ids in a follower's home timeline, a marker for each celebrity
they follow: those authors are not fanned out on write, and their tweets are merged in at read
time from the author's own list. Markers sort after every id as bytes, so trimming keeps them;
they live and expire with the timeline.

The scripts know no key or channel names: each gets its keys, the channel prefix and the length of
the key prefix to strip (channel = channel prefix + what follows the key prefix), and the counter
of deliveries, if any, from TimelineStore. The fan-out script (TimelineStore.fan_out) gets the key
prefixes instead of keys: it finds the followers in the follower lists (social.follower_lists) and
derives their timelines' keys, a batch of tweets in a few calls with no Python per follower.
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

from meshkit.settings import Env
from meshkit.shards import SpreadScript, get_many, is_cluster, nodes_of, publish, sharded_pubsub
from social.follower_lists import LIST_KEYS, LIST_PREFIX, built_list, prune
from social.live import (
    CELEBRITY_CHANNEL_PREFIX,
    USER_CHANNEL_PREFIX,
    celebrity_message,
    channel,
    tweet_message,
)

HOME_PREFIX = "home"
CELEBRITY_LIST_PREFIX = "celeb"
# How many home timelines fan-out wrote a tweet into, ever (GetFanoutStats).
DELIVERED_COUNTER = "fanout:delivered"
# How many followers fan-out found without a home timeline (and took out of the follower lists).
PRUNED_COUNTER = "fanout:pruned"
# Timelines one call of the fan-out script goes through at most: Redis serves no one else meanwhile,
# and a timeline costs it about 5 microseconds (~200,000 a second measured on two shared cores).
CALL_BUDGET = 1000
BUILT = b"\0" * 8
# The header of a timeline that holds every id of its sources: nothing lies below its oldest (a
# rebuild found fewer than it asked the owners for). Appends and deletions keep it; a trim, which
# drops the oldest, makes it BUILT.
COMPLETE = b"C" + b"\0" * 7
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
  -- Dropping the oldest ids ends a COMPLETE timeline's claim to hold them all.
  local header = string.sub(data, 1, 8)
  if string.sub(header, 1, 1) == 'C' then header = string.rep('\0', 8) end
  redis.call('SET', key, header .. newest .. table.concat(markers), 'KEEPTTL')
end
"""

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

# KEYS[1]: one timeline. ARGV: its lifetime, the rebuilding flag. Reads it and renews its lifetime
# (a read is activity), unless it is being rebuilt: an unfinished rebuild keeps the short lifetime
# its beginning gave it (REBUILD_TTL_SECONDS), so that one that failed is begun again.
_READ_TOUCH = """
local data = redis.call('GET', KEYS[1])
if data and string.sub(data, 1, 1) ~= ARGV[2] then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return data
"""

# Writing ids into one timeline (`add`) and taking one out (`take_out`), for scripts that define
# `limit` (max bytes) and `keep` (ids kept by a trim) first.
_WRITE = """
-- A timeline takes the ids if it exists (an 8-byte header at least: an APPEND that leaves only
-- the ids made the key, which is dropped again).
local function add(key, packed)
  local length = redis.call('APPEND', key, packed)
  if length == #packed then redis.call('DEL', key); return false end
  if length > limit then trim(key, keep) end
  return true
end

local function take_out(key, packed)
  local data = redis.call('GET', key)
  if not data then return false end
  local kept = {}
  for p = 9, #data, 8 do
    local id = string.sub(data, p, p + 7)
    if id ~= packed then kept[#kept + 1] = id end
  end
  if #kept * 8 + 8 < #data then
    redis.call('SET', key, string.sub(data, 1, 8) .. table.concat(kept), 'KEEPTTL')
  end
  return true
end
"""

# Fan-out of a batch of tweet events, inside Redis. A group writes (or, for a deletion, takes out)
# its tweets in the home timelines of given users (each tweet's author and the users it mentions),
# of other timelines named by key (a celebrity's own list), and of the followers found in the
# follower lists (social.follower_lists): those of one author, or those of two authors at once
# (who follow both: the smaller list is gone through, the larger asked). A group of several tweets
# (new ones, for the same followers) goes through the lists once and writes each follower's
# timeline once, with all the tweets it takes. Only timelines that exist are written; a follower
# whose timeline is gone leaves the list. Live streams listening on a timeline's channel are told
# of each tweet; a tweet's announce channel too. A call stops after a bucket once it has gone
# through `budget` timelines and says where to resume.
#
# ARGV: home prefix, live channel prefix, list prefix, max bytes, ids kept by a trim, delivered
# counter ("" for none), pruned counter ("" for none), budget, then where to resume (bucket, side,
# list generation: -1, "", "" for a fresh start), then the groups, each: kind ("+" deliver, "-"
# take out, "e" tell the streams of an edit; only new tweets come several to a group), followers
# of (""), among (""), t, then t tweets, each: the 8-byte id, the live message, announce channel
# (""), n, n home user ids, m, m pairs of (timeline key, channel).
# Returns: groups done, where to resume (bucket, side, generation; -1 when all are done), then per
# tweet of each group gone through: timelines written, followers pruned (the group's, on its first
# tweet), 1 if a list it needs is missing (or being built), the author's followers in PostgreSQL
# (-1: no list read).
_FAN_OUT = (
    _TRIM
    + LIST_KEYS
    + """
local home_prefix, live_prefix, list_prefix = ARGV[1], ARGV[2], ARGV[3]
local limit, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
"""
    + _WRITE
    + """
local budget = tonumber(ARGV[8])
local resume_bucket, resume_side, resume_gen = tonumber(ARGV[9]), ARGV[10], ARGV[11]
local delivered, pruned_all = 0, 0
local out = {}

local function list_state(author)
  if author == '' then return nil end
  local meta = list_meta(list_prefix, author)
  local s = redis.call('HMGET', meta, 'state', 'gen', 'buckets', 'size', 'followers')
  if s[1] ~= 'built' then return false end
  return {meta = meta, gen = s[2], buckets = tonumber(s[3]), size = tonumber(s[4]),
          followers = tonumber(s[5])}
end

-- Which of the `count` tweets a timeline takes (those whose homes do not name it: `skip`, a set
-- of tweet numbers, or nil), as their ids packed together and their numbers; nil when none.
local function taken(tweets, count, skip)
  if not skip then return tweets.packed, nil end
  local parts, numbers = {}, {}
  for t = 1, count do
    if not skip[t] then
      parts[#parts + 1] = tweets[t].packed
      numbers[#numbers + 1] = t
    end
  end
  if #numbers == 0 then return nil, nil end
  return table.concat(parts), numbers
end

-- Writes (or takes out) `packed` in the timelines `keys`; tells their channels each message (a new
-- or edited tweet only where someone listens). Returns which keys exist (an edit: all, it writes
-- nothing). `messages[k]`, when given, are the messages of keys[k] (else `shared`).
local function touch(kind, keys, channels, packed, shared, messages, packs)
  local found = {}
  local listeners = nil
  if kind ~= '-' and #channels > 0 then
    listeners = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
  end
  for k, key in ipairs(keys) do
    local mine = packs and packs[k] or packed
    if kind == '+' then
      found[k] = add(key, mine)
    elseif kind == '-' then
      found[k] = take_out(key, mine)
    else
      found[k] = true  -- an edit: the timeline does not change
    end
    if kind == '-' or listeners[2 * k] > 0 then
      for _, message in ipairs(messages and messages[k] or shared) do
        redis.call('PUBLISH', channels[k], message)
      end
    end
  end
  return found
end

-- Adds up the counters; the reply: where to resume, then each tweet's figures.
local function finish(reply)
  if ARGV[6] ~= '' and delivered > 0 then redis.call('INCRBY', ARGV[6], delivered) end
  if ARGV[7] ~= '' and pruned_all > 0 then redis.call('INCRBY', ARGV[7], pruned_all) end
  for _, figures in ipairs(out) do
    for _, v in ipairs(figures) do reply[#reply + 1] = v end
  end
  return reply
end

local i, job = 12, 0
while i <= #ARGV do
  job = job + 1
  local kind, count = ARGV[i], tonumber(ARGV[i + 3])
  local tweets, all_messages, packs = {}, {}, {}
  local direct = {}  -- follower id -> the tweets written to them already, whether they follow or not
  local p = i + 4
  for t = 1, count do
    local homes = tonumber(ARGV[p + 3])
    local others_at = p + 4 + homes
    local others = tonumber(ARGV[others_at])
    tweets[t] = {packed = ARGV[p], message = ARGV[p + 1], announce = ARGV[p + 2], homes_at = p + 4,
                 homes = homes, others_at = others_at + 1, others = others}
    packs[t] = ARGV[p]
    all_messages[t] = ARGV[p + 1]
    for h = p + 4, p + 3 + homes do
      direct[ARGV[h]] = direct[ARGV[h]] or {}
      direct[ARGV[h]][t] = true
    end
    p = others_at + 1 + 2 * others
  end
  tweets.packed = table.concat(packs)
  local next_job = p
  local resuming = job == 1 and resume_bucket >= 0
  local a, b = list_state(ARGV[i + 1]), list_state(ARGV[i + 2])
  local written, everyone, pruned = {}, 0, 0  -- timelines that took each tweet, or all of them
  for t = 1, count do written[t] = 0 end
  if a == false or b == false then
    for t = 1, count do out[#out + 1] = {0, 0, 1, -1} end
  else
    if not resuming then
      for t, tweet in ipairs(tweets) do
        local keys, channels = {}, {}
        for h = tweet.homes_at, tweet.homes_at + tweet.homes - 1 do
          keys[#keys + 1] = home_prefix .. ARGV[h]
          channels[#channels + 1] = live_prefix .. ARGV[h]
        end
        for _, exists in ipairs(touch(kind, keys, channels, tweet.packed, {tweet.message})) do
          if exists then written[t] = written[t] + 1 end
        end
        keys, channels = {}, {}
        for o = tweet.others_at, tweet.others_at + 2 * tweet.others - 1, 2 do
          keys[#keys + 1] = ARGV[o]
          channels[#channels + 1] = ARGV[o + 1]
        end
        touch(kind, keys, channels, tweet.packed, {tweet.message})
        if tweet.announce ~= '' then redis.call('PUBLISH', tweet.announce, tweet.message) end
        budget = budget - tweet.homes - tweet.others
      end
    end
    local stopped, side, iterated = nil, 'a', a
    if a then
      local other = b
      if resuming then side = resume_side elseif b and b.size < a.size then side = 'b' end
      if side == 'b' then iterated, other = b, a end
      local start = 0
      if resuming and iterated.gen == resume_gen then start = resume_bucket end
      local cost = kind == '-' and 8 or 1
      for bucket = start, iterated.buckets - 1 do
        if budget <= 0 then stopped = bucket; break end
        local members = redis.call('SMEMBERS', list_bucket(iterated.meta, iterated.gen, bucket))
        local ids, keys, channels, mine, messages, numbers = {}, {}, {}, {}, {}, {}
        for _, id in ipairs(members) do
          local theirs = other and list_bucket(other.meta, other.gen, bucket_of(id, other.buckets))
          local packed, which = taken(tweets, count, direct[id])
          if packed and (not other or redis.call('SISMEMBER', theirs, id) == 1) then
            local k = #ids + 1
            ids[k], keys[k], channels[k], mine[k] = id, home_prefix .. id, live_prefix .. id, packed
            numbers[k], messages[k] = which, all_messages
            if which then
              messages[k] = {}
              for _, t in ipairs(which) do messages[k][#messages[k] + 1] = tweets[t].message end
            end
          end
        end
        for k, exists in ipairs(touch(kind, keys, channels, nil, nil, messages, mine)) do
          if exists then
            if numbers[k] then
              for _, t in ipairs(numbers[k]) do written[t] = written[t] + 1 end
            else
              everyone = everyone + 1
            end
          else
            -- Their timeline is gone (inactive, or wiped): no longer in the lists they were in.
            if redis.call('SREM', list_bucket(iterated.meta, iterated.gen, bucket), ids[k]) == 1 then
              redis.call('HINCRBY', iterated.meta, 'size', -1)
            end
            pruned = pruned + 1
          end
        end
        budget = budget - cost * #members
      end
    end
    for t = 1, count do
      written[t] = written[t] + everyone
      out[#out + 1] = {written[t], t == 1 and pruned or 0, 0, a and a.followers or -1}
      if kind == '+' then delivered = delivered + written[t] end
    end
    pruned_all = pruned_all + pruned
    if stopped then
      return finish({job - 1, stopped, side, iterated.gen})
    end
  end
  i = next_job
end
return finish({job, -1, '', ''})
"""
)

# Fan-out on a Redis Cluster, run on one node (meshkit.shards.SpreadScript) by
# TimelineStore._fan_out_by_node, which found the followers in their lists first (on the lists'
# own nodes). KEYS: timelines on this node. ARGV: max bytes, ids kept by a trim, kind ("+", "-",
# "e" as in _FAN_OUT), the publishing command (PUBLISH, or SPUBLISH where pub/sub is sharded: the
# channels are then in their timelines' slots, on this node), then per timeline: its live channel
# ("" for none), the packed ids it takes, m, m live messages. Writes (or takes out) the ids in the
# timelines that exist and publishes the messages. Sharded, as on one server, a new or edited tweet
# only where someone listens (PUBSUB SHARDNUMSUB: the channels are this node's, and the live hub
# listens on masters); classic, every message (PUBSUB NUMSUB counts this node's subscribers only,
# and the cluster's bus carries a message to the node where a stream listens). Returns, per
# timeline, 1 if it exists (an edit: always), else 0.
_DELIVER = (
    _TRIM
    + """
local limit, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
"""
    + _WRITE
    + """
local kind, command = ARGV[3], ARGV[4]
local listening = nil  -- channel -> whether someone listens; nil: publish everywhere
if command == 'SPUBLISH' and kind ~= '-' then
  local channels, at = {}, 5
  for _ = 1, #KEYS do
    if ARGV[at] ~= '' then channels[#channels + 1] = ARGV[at] end
    at = at + 3 + tonumber(ARGV[at + 2])
  end
  listening = {}
  if #channels > 0 then
    local counts = redis.call('PUBSUB', 'SHARDNUMSUB', unpack(channels))
    for i = 1, #counts, 2 do listening[counts[i]] = counts[i + 1] > 0 end
  end
end
local found = {}
local a = 5
for k, key in ipairs(KEYS) do
  local channel, packed, m = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local exists = true  -- an edit: the timeline does not change
  if kind == '+' then exists = add(key, packed) elseif kind == '-' then exists = take_out(key, packed) end
  if channel ~= '' and (not listening or listening[channel]) then
    for i = a + 3, a + 2 + m do redis.call(command, channel, ARGV[i]) end
  end
  found[k] = exists and 1 or 0
  a = a + 3 + m
end
return found
"""
)

# KEYS: timelines. ARGV: max bytes, ids kept by a trim, packed ids. Appends the ids to each
# existing timeline (a demoted celebrity's recent tweets); returns how many timelines took them.
_MERGE_INTO = (
    _TRIM
    + """
local took = 0
for _, key in ipairs(KEYS) do
  if redis.call('STRLEN', key) > 0 then
    -- Some of an author's tweets, not necessarily all: a COMPLETE timeline no longer is.
    if redis.call('GETRANGE', key, 0, 0) == 'C' then redis.call('SETRANGE', key, 0, '\0') end
    if redis.call('APPEND', key, ARGV[3]) > tonumber(ARGV[1]) then trim(key, tonumber(ARGV[2])) end
    took = took + 1
  end
end
return took
"""
)

# KEYS: timelines. ARGV: the packed marker, "+" to add it or "-" to take it out, the live message,
# the channel prefix, the key prefix length, "1" to tell every channel (a classic cluster's PUBSUB
# NUMSUB counts one node's subscribers only) or "0" to tell those someone listens on, "s" where
# pub/sub is sharded (the channels named in_slot_of their timelines, told by SPUBLISH where PUBSUB
# SHARDNUMSUB finds a listener) or "". Existing timelines change; their open streams are told.
_MARK = """
local skip, sharded = tonumber(ARGV[5]), ARGV[7] == 's'
local command = sharded and 'SPUBLISH' or 'PUBLISH'
local channels = {}
for i, key in ipairs(KEYS) do
  channels[i] = ARGV[4] .. string.sub(key, skip + 1)
  if sharded then channels[i] = channels[i] .. '{' .. key .. '}' end
end
local listeners = false
if sharded then
  listeners = redis.call('PUBSUB', 'SHARDNUMSUB', unpack(channels))
elseif ARGV[6] ~= '1' then
  listeners = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
end
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
  if not listeners or listeners[2 * i] > 0 then redis.call(command, channels[i], ARGV[3]) end
end
return changed
"""


def key_start(prefix: str) -> str:
    """What every key of the timelines under `prefix` starts with (the scripts add the id)."""
    return f"{prefix}:"


def timeline_key(prefix: str, ident: int) -> str:
    return f"{key_start(prefix)}{ident}"


def home_key(user_id: int) -> str:
    return timeline_key(HOME_PREFIX, user_id)


# The timelines whose channels are published by the scripts that write them: channel prefix -> key prefix.
_TIMELINE_OF_CHANNEL = {USER_CHANNEL_PREFIX: HOME_PREFIX, CELEBRITY_CHANNEL_PREFIX: CELEBRITY_LIST_PREFIX}


def in_slot_of(channel: str, key: str) -> str:
    """`channel` named into the slot of `key`: followed by the key as hash tag (`live:5{home:5}`).
    _MARK builds the same names."""
    return f"{channel}{{{key}}}"


def sharded_channel(name: str) -> str:
    """A live channel's name where pub/sub is sharded (the slot of the name picks the node that
    carries it): a timeline's channel (`live:<id>`, `celebrity:<id>`) in the slot of its timeline
    (`live:<id>{home:<id>}`), where the scripts that write the timeline publish it; any other
    channel keeps its name."""
    for prefix, key_prefix in _TIMELINE_OF_CHANNEL.items():
        ident = name.removeprefix(prefix)
        if ident != name and ident.isdigit():
            return in_slot_of(name, timeline_key(key_prefix, int(ident)))
    return name


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
    # Every id of its sources is here: nothing lies below the oldest (COMPLETE).
    complete: bool = False

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
        data[:1] == COMPLETE[:1],
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def unpack(data: bytes) -> list[int]:
    """The tweet ids of a stored timeline, newest first, each once."""
    return decode(data).tweet_ids


@dataclass(frozen=True, slots=True)
class FanoutJob:
    """One tweet to write into timelines (or, deleted, to take out of them): TimelineStore.fan_out."""

    tweet_id: int
    deleted: bool = False
    # Edited: nothing is written, the streams of the timelines named below are told.
    edited: bool = False
    # Users whose home timeline takes it whoever they follow (its author, the users it mentions).
    homes: tuple[int, ...] = ()
    # Other timelines, by key, with their live channel (a celebrity's own list).
    others: tuple[tuple[str, str], ...] = ()
    # The followers of this author take it (those in the follower lists: with a home timeline)...
    followers_of: int | None = None
    # ... only those who also follow this author, when one is named.
    among: int | None = None
    # A channel told of it too (the global timeline's).
    announce: str = ""
    # The W3C traceparent of the handling of its event, carried by its live messages (meshkit.tracing).
    trace: str | None = None


@dataclass(slots=True)
class JobOutcome:
    """What a FanoutJob did."""

    written: int = 0  # home timelines that took the tweet (or, for a deletion, held it)
    pruned: int = 0  # followers found without a home timeline (taken out of the lists)
    missing: bool = False  # a follower list it needs is missing or being built: it did nothing
    followers: int | None = None  # followers_of's followers in PostgreSQL, as its list counts them


def _groups(jobs: Sequence[FanoutJob]) -> list[list[int]]:
    """The jobs (their indexes) as the fan-out script takes them: new tweets for the same followers
    (of one author, or of one reply's two) go together, in the place of the first, so that their
    lists are gone through once and each follower's timeline written once; other jobs go alone, in
    their place. (A new tweet written before an earlier job's deletion of it stays deleted.)"""
    groups: list[list[int]] = []
    together: dict[tuple[int, int | None], list[int]] = {}
    for n, job in enumerate(jobs):
        if job.deleted or job.edited or job.followers_of is None:
            groups.append([n])
        elif (same := together.get((job.followers_of, job.among))) is not None:
            same.append(n)
        else:
            together[(job.followers_of, job.among)] = group = [n]
            groups.append(group)
    return groups


def _group_arguments(jobs: Sequence[FanoutJob]) -> list[str | int | bytes]:
    """A group of jobs (same kind and followers) as the fan-out script reads it from ARGV."""
    first = jobs[0]
    arguments: list[str | int | bytes] = [
        "-" if first.deleted else "e" if first.edited else "+",
        "" if first.followers_of is None else first.followers_of,
        "" if first.among is None else first.among,
        len(jobs),
    ]
    for job in jobs:
        arguments += [
            pack([job.tweet_id]),
            tweet_message(job.tweet_id, deleted=job.deleted, edited=job.edited, trace=job.trace),
            job.announce,
            len(job.homes),
            *job.homes,
            len(job.others),
            *(part for pair in job.others for part in pair),
        ]
    return arguments


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
        pruned_counter: str = "",
        list_prefix: str = LIST_PREFIX,
    ) -> None:
        self._redis = redis
        self.max_entries = max_entries
        self._keep = max(max_entries // 2, 1)
        self._max_bytes = 8 + 8 * max_entries
        self._ttl = ttl_seconds
        self._prefix = key_prefix
        self._channel_prefix = channel_prefix
        # What the scripts strip from a key to name its channel: the prefix and its colon.
        self._skip = len(key_start(key_prefix))
        self._counter = delivered_counter
        self._pruned_counter = pruned_counter
        self._list_prefix = list_prefix
        self._cluster = is_cluster(redis)
        self._finish_rebuild = redis.register_script(_FINISH_REBUILD)
        self._read_touch = redis.register_script(_READ_TOUCH)
        self._mark = SpreadScript(redis, _MARK)
        self._merge_into = SpreadScript(redis, _MERGE_INTO)
        self._fan_out = redis.register_script(_FAN_OUT)
        self._deliver = SpreadScript(redis, _DELIVER)

    def key(self, ident: int) -> str:
        return timeline_key(self._prefix, ident)

    def channel(self, ident: int) -> str:
        """The live channel of a timeline."""
        return channel(self._channel_prefix, ident)

    async def fan_out(self, jobs: Sequence[FanoutJob], budget: int = CALL_BUDGET) -> list[JobOutcome]:
        """Writes each job (the fan-out script; new tweets for the same followers together), in
        calls that each go through about `budget` timelines, so that Redis never stalls for long;
        returns what each job did."""
        if self._cluster:
            return await self._fan_out_by_node(jobs, budget)
        outcomes = [JobOutcome() for _ in jobs]
        groups = _groups(jobs)
        start = 0
        resume: list[int | str] = [-1, "", ""]
        while start < len(groups):
            reply = await self._fan_out(
                args=[
                    key_start(self._prefix),
                    self._channel_prefix,
                    self._list_prefix,
                    self._max_bytes,
                    self._keep,
                    self._counter,
                    self._pruned_counter,
                    budget,
                    *resume,
                    *(a for group in groups[start:] for a in _group_arguments([jobs[n] for n in group])),
                ]
            )
            done, bucket = int(reply[0]), int(reply[1])
            figures = reply[4:]
            gone_through = [n for group in groups[start:] for n in group]
            for at in range(0, len(figures), 4):
                outcome = outcomes[gone_through[at // 4]]
                outcome.written += int(figures[at])
                outcome.pruned += int(figures[at + 1])
                outcome.missing = outcome.missing or bool(int(figures[at + 2]))
                if int(figures[at + 3]) >= 0:
                    outcome.followers = int(figures[at + 3])
            if bucket < 0:
                break
            start += done
            resume = [bucket, _text(reply[2]), _text(reply[3])]
        return outcomes

    async def _fan_out_by_node(self, jobs: Sequence[FanoutJob], budget: int) -> list[JobOutcome]:
        """fan_out on a Redis Cluster, whose timelines and follower lists live on many nodes: for
        each group of jobs (as the script takes them, in order), the follower lists read on their
        own node, then the timelines written node by node (_DELIVER, about `budget` a call),
        then the followers found without a timeline taken out of the lists. Every step can run
        again: an id appended twice is dropped on read, a second take-out or prune finds nothing."""
        outcomes = [JobOutcome() for _ in jobs]
        for group in _groups(jobs):
            await self._fan_out_group([jobs[n] for n in group], [outcomes[n] for n in group], budget)
        return outcomes

    async def _fan_out_group(
        self, jobs: Sequence[FanoutJob], outcomes: Sequence[JobOutcome], budget: int
    ) -> None:
        first = jobs[0]
        lists = []
        for author in (first.followers_of, first.among):
            if author is not None:
                found = await built_list(self._redis, author, self._list_prefix)
                if found is None:  # missing or being built: the job runs again once it is built
                    for outcome in outcomes:
                        outcome.missing = True
                    return
                lists.append((author, *found))
        followers: set[int] = set.intersection(*(members for _, _, members in lists)) if lists else set()
        sharded = await sharded_pubsub(self._redis)
        takes, homes = self._what_each_takes(jobs, followers, sharded)
        kind = "-" if first.deleted else "e" if first.edited else "+"
        messages = [
            tweet_message(job.tweet_id, deleted=job.deleted, edited=job.edited, trace=job.trace)
            for job in jobs
        ]
        tweet_ids = [job.tweet_id for job in jobs]
        command = "SPUBLISH" if sharded else "PUBLISH"
        exists = await self._deliver_by_node(kind, command, tweet_ids, messages, takes, budget)
        for job, message in zip(jobs, messages, strict=True):
            if job.announce:
                await publish(self._redis, job.announce, message)
        gone = sorted(user for key, user in homes.items() if not exists[key] and user in followers)
        for author, state, _ in lists:
            await prune(self._redis, author, state, gone, self._list_prefix)
        for t, outcome in enumerate(outcomes):
            outcome.written += sum(1 for key in homes if exists[key] and t in takes[key][1])
            outcome.pruned += len(gone) if t == 0 else 0
            if lists:
                outcome.followers = lists[0][1].followers
        delivered = sum(o.written for o in outcomes) if kind == "+" else 0
        if self._counter and delivered:
            await self._redis.incrby(self._counter, delivered)
        if self._pruned_counter and gone:
            await self._redis.incrby(self._pruned_counter, len(gone))

    def _what_each_takes(
        self, jobs: Sequence[FanoutJob], followers: set[int], sharded: bool
    ) -> tuple[dict[str, tuple[str, list[int]]], dict[str, int]]:
        """Each timeline a group writes: its key -> its live channel (`sharded` pub/sub: in the
        timeline's slot) and the jobs (positions) it takes; and the home timelines among them:
        key -> user."""

        def named(channel: str, key: str) -> str:
            return in_slot_of(channel, key) if sharded else channel

        takes: dict[str, tuple[str, list[int]]] = {}
        homes: dict[str, int] = {}
        for t, job in enumerate(jobs):
            for user in (*job.homes, *followers):
                key = self.key(user)
                homes[key] = user
                taken = takes.setdefault(key, (named(self.channel(user), key), []))[1]
                if not taken or taken[-1] != t:
                    taken.append(t)
            for key, told in job.others:
                takes.setdefault(key, (named(told, key), []))[1].append(t)
        return takes, homes

    async def _deliver_by_node(
        self,
        kind: str,
        command: str,
        tweet_ids: Sequence[int],
        messages: Sequence[str],
        takes: dict[str, tuple[str, list[int]]],
        budget: int,
    ) -> dict[str, bool]:
        """_DELIVER on each node, about `budget` timelines a call, publishing by `command`; whether
        each timeline exists."""
        packed = [pack([t]) for t in tweet_ids]
        keys = list(takes)
        exists: dict[str, bool] = {}
        for node, positions in nodes_of(self._redis, keys):
            for start in range(0, len(positions), budget):
                chunk = [keys[n] for n in positions[start : start + budget]]
                args: list[str | int | bytes] = [self._max_bytes, self._keep, kind, command]
                for key in chunk:
                    told, taken = takes[key]
                    args += [
                        told,
                        b"".join(packed[t] for t in taken),
                        len(taken),
                        *(messages[t] for t in taken),
                    ]
                found = await self._deliver.run_on(node, chunk, args)
                exists.update((key, bool(int(f))) for key, f in zip(chunk, found, strict=True))
        return exists

    async def mark_celebrity(
        self, author_id: int, user_ids: Sequence[int], following: bool, chunk: int = 1000
    ) -> int:
        """Adds (or takes out) the marker of celebrity `author_id` in the existing timelines of
        `user_ids` and tells their open streams; returns how many timelines changed."""
        changed = 0
        marker = pack([-author_id])
        message = celebrity_message(author_id, following=following)
        everyone = "1" if self._cluster else "0"
        sharded = "s" if await sharded_pubsub(self._redis) else ""
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            args = (
                marker,
                "+" if following else "-",
                message,
                self._channel_prefix,
                self._skip,
                everyone,
                sharded,
            )
            changed += sum(int(n) for _, n in await self._mark.run(keys, args))
        return changed

    async def merge_into(self, user_ids: Sequence[int], tweet_ids: Iterable[int], chunk: int = 1000) -> int:
        """Adds the same tweets to the existing timelines of `user_ids`, telling no stream."""
        packed = pack(tweet_ids)
        took = 0
        for start in range(0, len(user_ids), chunk):
            keys = [self.key(u) for u in user_ids[start : start + chunk]]
            took += sum(
                int(n) for _, n in await self._merge_into.run(keys, [self._max_bytes, self._keep, packed])
            )
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
        self,
        user_id: int,
        tweet_ids: Iterable[int],
        celebrities: Iterable[int],
        begun: bytes,
        *,
        complete: bool = False,
    ) -> bool:
        """Adds what the rebuild found, clears the flag and gives the timeline its full lifetime;
        False (nothing done) when the rebuild `begun` is no longer the timeline's: another began
        since, or the timeline expired. `complete`: the rebuild found every id of the timeline's
        sources (the owners had fewer than it asked for), so readers need not look below it."""
        packed = pack([*tweet_ids, *(-c for c in celebrities)])
        args = (self._max_bytes, self._keep, self._ttl, begun, COMPLETE if complete else BUILT, packed)
        return bool(await self._finish_rebuild(keys=[self.key(user_id)], args=args))

    @property
    def trimmed_to(self) -> int:
        """How many of the newest tweet ids a trim keeps (celebrity markers are kept besides)."""
        return self._keep

    async def store_built(self, timelines: Iterable[tuple[int, bytes]], chunk: int = 2000) -> int:
        """Stores each (id, packed) as a built timeline (not marked COMPLETE, as a home timeline's
        rebuild leaves it) with its full lifetime, replacing what was there, in pipelines of
        `chunk` writes; returns how many. `packed` is what finish_rebuild adds to an empty
        timeline: pack() of the tweet ids, then of the celebrities' markers (negative ids), no more
        than a trim keeps. For bulk loads (the benchmark's warm timelines), where nothing else
        writes meanwhile; a live rebuild goes through begin_rebuild and finish_rebuild."""
        stored = 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for ident, packed in timelines:
                pipe.set(self.key(ident), BUILT + packed, ex=self._ttl)
                stored += 1
                if stored % chunk == 0:
                    await pipe.execute()
            await pipe.execute()
        return stored

    async def read(self, user_id: int, *, touch: bool = True) -> Snapshot | None:
        """The timeline, None when absent. A read counts as activity: it renews the lifetime,
        unless the timeline is being rebuilt (_READ_TOUCH)."""
        key = self.key(user_id)
        found: bytes | None
        if touch:
            found = await self._read_touch(keys=[key], args=[self._ttl, REBUILDING[:1]])
        else:
            found = await self._redis.get(key)  # type: ignore[assignment]
        return None if found is None else decode(found)

    async def read_many(self, user_ids: Sequence[int]) -> list[Snapshot | None]:
        """Several timelines in one round trip (celebrities' own, for a merge)."""
        if not user_ids:
            return []
        found: list[bytes | None] = await get_many(self._redis, [self.key(u) for u in user_ids])
        return [None if data is None else decode(data) for data in found]


def home_timelines(
    redis: aioredis.Redis, max_entries: int, ttl_seconds: int, *, list_prefix: str = LIST_PREFIX
) -> TimelineStore:
    """Each user's home timeline, `home:<user_id>`, announced on `live:<user_id>`; fan-out finds
    followers in the follower lists under `list_prefix` (social.follower_lists)."""
    return TimelineStore(
        redis,
        max_entries,
        ttl_seconds,
        key_prefix=HOME_PREFIX,
        channel_prefix=USER_CHANNEL_PREFIX,
        delivered_counter=DELIVERED_COUNTER,
        pruned_counter=PRUNED_COUNTER,
        list_prefix=list_prefix,
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
