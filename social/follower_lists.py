"""Follower lists in Redis: each author's followers whose home timeline exists, the list fan-out
reads inside Redis (social.timelines.TimelineStore.fan_out) instead of asking users_svc.

users_svc owns them (it owns the follow graph) and is their only writer but one: fan-out drops a
follower whose home timeline it finds gone (the list's own rule, applied where it is noticed).

Layout, every key of one author under the author's hash tag (one Redis Cluster slot per list):

- `followers:{<author_id>}`: a hash, the list's state: `state` (`building`, then `built`), `gen`
  (a token naming this build's buckets), `buckets` (a power of two), `size` (members now),
  `followers` (the author's followers in PostgreSQL, members or not: the celebrity threshold's
  count), `expires` (when the list goes, unix seconds), `joins` (how many times a change made
  someone a member: a prune on a cluster stands down when it moved, see below).
- `followers:{<author_id>}:<gen>:<b>`: bucket b, a Redis set of follower ids. A follower's bucket
  is the last six digits of its decimal id modulo the bucket count (`bucket_of`). Buckets hold
  about 256 ids when built, which Redis keeps as an intset (packed 8-byte integers) up to
  `set-max-intset-entries` (512 by default); a membership test is a binary search.
- `followers:{<author_id>}:<gen>:touched`: while building, the followers whose membership a change
  decided (a build must not overwrite them with what it read earlier).

A list holds a follower when they follow the author in PostgreSQL and their home timeline exists
(`home:<user_id>`); only they can receive a tweet. It is kept so by its writers, each writing what
PostgreSQL says *now* and, after the write, reading PostgreSQL again until the two agree (so
whichever write lands last is right, in any order and however many processes write):

- `sync`: a follow or unfollow (driven by the follow events): member iff following and the
  follower's timeline exists.
- `join`: a user whose home timeline was just created (a rebuild) joins the lists of everyone they
  follow; a timeline that expires or is wiped leaves its lists when fan-out next meets it.
- a build (on a miss: fan-out asks users_svc): the state set to `building` first, then PostgreSQL's
  followers are added if their timeline exists and no change decided them meanwhile; `built`.

On a Redis Cluster a follower's timeline lives on another node than the list, so the writers look
at the timelines first and their scripts run after the look. A timeline can be made (and join)
in between, so what a look that found no timeline may do is narrow: it never takes a follower out
(a follow's sync or a join that found none leaves the membership as it is; a follower whose
timeline is gone leaves when fan-out meets them), and fan-out's prune of the followers a delivery
found without a timeline does nothing if the list's `joins` moved since fan-out read the list (a
join came in between; what it left stays until the next fan-out). One server needs none of this:
there the scripts look at the timelines themselves.

A list lives FOLLOWER_LIST_TTL_SECONDS from its build, then is built again on the next miss: its
bucket count follows the author's size, and nothing can stay wrong longer than that. Redis may be
wiped at any time: a missing list is a miss.

The scripts know no key prefix: each gets the list prefix and the home-timeline prefix; the Lua
that names a list's keys (LIST_KEYS) is here only, shared with the fan-out script, and derives the
bucket keys from the state it reads (a cluster runs each list's scripts on its own slot).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from meshkit.settings import Env
from meshkit.shards import SpreadScript, exist_each, is_cluster

LIST_PREFIX = "followers:"
BUILT, BUILDING = "built", "building"
# Followers a bucket is sized for at a build.
BUCKET_TARGET = 256
# A build that stops (its process died) is given up after this long, and done again.
BUILD_TTL_SECONDS = 60

# The names of a list's keys, from its author, generation and bucket.
LIST_KEYS = """
local function list_meta(prefix, author) return prefix .. '{' .. author .. '}' end
local function list_bucket(meta, gen, b) return meta .. ':' .. gen .. ':' .. b end
local function list_touched(meta, gen) return meta .. ':' .. gen .. ':touched' end
local function bucket_of(id, buckets) return tonumber(string.sub(id, -6)) % buckets end
"""

# KEYS[1]: the list's state. ARGV: generation, buckets, followers, expires, build ttl. Starts a
# build unless the list is built or another build is under way; returns "started", "built", "busy".
_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'built' then return 'built' end
if state == 'building' then return 'busy' end
redis.call('HSET', KEYS[1], 'state', 'building', 'gen', ARGV[1], 'buckets', ARGV[2], 'size', 0,
           'followers', ARGV[3], 'expires', ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return 'started'
"""

# KEYS[1]: the list's state. ARGV: generation, home prefix ("": the caller kept only followers
# whose timeline exists), build ttl, follower ids. Adds the followers whose timeline exists and no
# change decided meanwhile; -1 when the build was lost.
_FILL = (
    LIST_KEYS
    + """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return -1 end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local buckets = tonumber(redis.call('HGET', KEYS[1], 'buckets'))
local touched = list_touched(KEYS[1], ARGV[1])
local added = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local has_timeline = ARGV[2] == '' or redis.call('EXISTS', ARGV[2] .. id) == 1
  if has_timeline and redis.call('SISMEMBER', touched, id) == 0 then
    added = added + redis.call('SADD', list_bucket(KEYS[1], ARGV[1], bucket_of(id, buckets)), id)
  end
end
redis.call('HINCRBY', KEYS[1], 'size', added)
return added
"""
)

# KEYS[1]: the list's state. ARGV: generation, joins (both as fan-out read them with the list),
# follower ids. Takes the followers out of the list (fan-out on a cluster found their timeline
# gone), unless someone joined since the list was read (one of them may have come back); returns
# how many were in it.
_PRUNE = (
    LIST_KEYS
    + """
local state = redis.call('HMGET', KEYS[1], 'gen', 'buckets', 'joins')
if state[1] ~= ARGV[1] or (state[3] or '0') ~= ARGV[2] then return 0 end
local buckets = tonumber(state[2])
local pruned = 0
for i = 3, #ARGV do
  pruned = pruned + redis.call('SREM', list_bucket(KEYS[1], ARGV[1], bucket_of(ARGV[i], buckets)), ARGV[i])
end
if pruned > 0 then redis.call('HINCRBY', KEYS[1], 'size', -pruned) end
return pruned
"""
)

# KEYS[1]: the list's state. ARGV: generation. Ends the build: built, every key expiring at
# `expires`; 0 when the build was lost.
_FINISH = (
    LIST_KEYS
    + """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
local buckets = tonumber(redis.call('HGET', KEYS[1], 'buckets'))
local expires = redis.call('HGET', KEYS[1], 'expires')
redis.call('HSET', KEYS[1], 'state', 'built')
redis.call('EXPIREAT', KEYS[1], expires)
for b = 0, buckets - 1 do redis.call('EXPIREAT', list_bucket(KEYS[1], ARGV[1], b), expires) end
redis.call('DEL', list_touched(KEYS[1], ARGV[1]))
return 1
"""
)

# Sets one follower's membership in a list (the list's state in `meta`), as a change decided it:
# a member iff `following` and their timeline exists (the caller checked when the home prefix is
# "": on a cluster the timeline lives on another node). Returns the change in size.
_SET_MEMBER = """
local function set_member(meta, id, following, home_prefix)
  local state = redis.call('HMGET', meta, 'state', 'gen', 'buckets', 'expires')
  if not state[1] then return 0 end
  local bucket = list_bucket(meta, state[2], bucket_of(id, tonumber(state[3])))
  local change
  if following and (home_prefix == '' or redis.call('EXISTS', home_prefix .. id) == 1) then
    change = redis.call('SADD', bucket, id)
    redis.call('EXPIREAT', bucket, state[4])
    redis.call('HINCRBY', meta, 'joins', 1)
  else
    change = -redis.call('SREM', bucket, id)
  end
  if state[1] == 'building' then
    local touched = list_touched(meta, state[2])
    redis.call('SADD', touched, id)
    redis.call('EXPIRE', touched, redis.call('TTL', meta))
  end
  if change ~= 0 then redis.call('HINCRBY', meta, 'size', change) end
  return change
end
"""

# KEYS[1]: the author's list. ARGV: follower id, "1" if following ("" to leave the membership as
# it is: following, with no timeline at the look on a cluster), home prefix, the author's
# followers in PostgreSQL. A follow or unfollow; returns the change in size.
_SYNC = (
    LIST_KEYS
    + _SET_MEMBER
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'followers', ARGV[4])
if ARGV[2] == '' then return 0 end
return set_member(KEYS[1], ARGV[1], ARGV[2] == '1', ARGV[3])
"""
)

# KEYS: lists. ARGV: a user id, "1" to join (if their timeline exists) or "0" to leave, home
# prefix. Returns how many lists changed.
_JOIN = (
    LIST_KEYS
    + _SET_MEMBER
    + """
local changed = 0
for _, meta in ipairs(KEYS) do
  if set_member(meta, ARGV[1], ARGV[2] == '1', ARGV[3]) ~= 0 then changed = changed + 1 end
end
return changed
"""
)


def meta_key(author_id: int, prefix: str = LIST_PREFIX) -> str:
    """The key of a list's state (LIST_KEYS' list_meta)."""
    return f"{prefix}{{{author_id}}}"


def bucket_key(author_id: int, gen: str, bucket: int, prefix: str = LIST_PREFIX) -> str:
    """The key of one bucket of a list (LIST_KEYS' list_bucket)."""
    return f"{meta_key(author_id, prefix)}:{gen}:{bucket}"


def bucket_of(user_id: int, buckets: int) -> int:
    """A follower's bucket (LIST_KEYS' bucket_of: the last six digits of the decimal id)."""
    return int(str(user_id)[-6:]) % buckets


def buckets_for(followers: int, target: int = BUCKET_TARGET) -> int:
    """The bucket count of a list built for an author with `followers` followers."""
    buckets = 1
    while buckets * target < followers:
        buckets *= 2
    return buckets


@dataclass(frozen=True, slots=True)
class ListState:
    state: str
    gen: str
    buckets: int
    size: int
    followers: int
    # Times a change made someone a member (a prune stands down when it moved: `prune`).
    joins: int = 0


async def list_state(redis: aioredis.Redis, author_id: int, prefix: str = LIST_PREFIX) -> ListState | None:
    """A list's state; None when there is no list."""
    found: list[bytes | None] = await redis.hmget(  # type: ignore[assignment]
        meta_key(author_id, prefix), ["state", "gen", "buckets", "size", "followers", "joins"]
    )
    if found[0] is None:
        return None
    state, gen, buckets, size, followers, joins = (v.decode() if v is not None else "0" for v in found)
    return ListState(state, gen, int(buckets), int(size), int(followers), int(joins))


async def built_list(
    redis: aioredis.Redis, author_id: int, prefix: str = LIST_PREFIX
) -> tuple[ListState, set[int]] | None:
    """A built list's state and every member (one pipeline: the list is one slot); None when it
    is missing or being built."""
    state = await list_state(redis, author_id, prefix)
    if state is None or state.state != BUILT:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for b in range(state.buckets):
            pipe.smembers(bucket_key(author_id, state.gen, b, prefix))
        found: list[set[bytes]] = await pipe.execute()
    return state, {int(m) for bucket in found for m in bucket}


async def prune(
    redis: aioredis.Redis,
    author_id: int,
    read: ListState,
    follower_ids: Sequence[int],
    prefix: str = LIST_PREFIX,
) -> int:
    """Takes followers whose timeline was found gone out of the list, unless it changed since it
    was `read` (built again, or someone joined: maybe one of them, back); returns how many left it."""
    if not follower_ids:
        return 0
    script = redis.register_script(_PRUNE)
    return int(await script(keys=[meta_key(author_id, prefix)], args=[read.gen, read.joins, *follower_ids]))


class BuildLost(Exception):
    """A build's list was wiped, expired or taken over before it finished."""


class FollowerLists:
    """The lists' writes (users_svc) and reads for inspection; fan-out reads them in its script."""

    def __init__(
        self,
        redis: aioredis.Redis,
        home_prefix: str,
        ttl_seconds: int,
        *,
        prefix: str = LIST_PREFIX,
        bucket_target: int = BUCKET_TARGET,
    ) -> None:
        self._redis = redis
        self._home_prefix = home_prefix
        self._ttl = ttl_seconds
        self._prefix = prefix
        self._bucket_target = bucket_target
        # On a cluster, the scripts cannot look at followers' timelines (other nodes): the
        # timelines are looked at first, and the scripts told so (an empty home prefix).
        self._cluster = is_cluster(redis)
        self._begin = redis.register_script(_BEGIN)
        self._fill = redis.register_script(_FILL)
        self._finish = redis.register_script(_FINISH)
        self._sync = redis.register_script(_SYNC)
        self._join = SpreadScript(redis, _JOIN)

    async def _with_timelines(self, user_ids: Sequence[int]) -> tuple[str, list[int]]:
        """The home prefix to give a script and the users it is to consider: on one server, the
        prefix (the script looks) and all of them; on a cluster, "" and those whose timeline
        exists now. A timeline made after the look joins the lists itself (`join`), so a look
        that found none takes no one out; one gone after it is pruned by fan-out."""
        if not self._cluster:
            return self._home_prefix, list(user_ids)
        found = await exist_each(self._redis, [f"{self._home_prefix}{u}" for u in user_ids])
        return "", [u for u, exists in zip(user_ids, found, strict=True) if exists]

    def _meta(self, author_id: int) -> str:
        return meta_key(author_id, self._prefix)

    async def state(self, author_id: int) -> ListState | None:
        return await list_state(self._redis, author_id, self._prefix)

    async def members(self, author_id: int) -> set[int] | None:
        """Every member of a built list; None when it is missing or being built."""
        found = await built_list(self._redis, author_id, self._prefix)
        return None if found is None else found[1]

    async def begin_build(self, author_id: int, followers: int) -> str | None:
        """Marks the list as being built; returns the build's generation, or None when the list
        is built already. BuildBusy when another build is under way."""
        gen = secrets.token_hex(4)
        expires = int(time.time()) + self._ttl
        outcome = await self._begin(
            keys=[self._meta(author_id)],
            args=[gen, buckets_for(followers, self._bucket_target), followers, expires, BUILD_TTL_SECONDS],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome == "built":
            return None
        if outcome == "busy":
            raise BuildBusy(author_id)
        return gen

    async def fill(self, author_id: int, gen: str, follower_ids: Sequence[int]) -> int:
        """Adds followers read from PostgreSQL to a list being built (those whose timeline exists
        and whose membership no change decided meanwhile); returns how many joined."""
        home_prefix, follower_ids = await self._with_timelines(follower_ids)
        added = int(
            await self._fill(
                keys=[self._meta(author_id)],
                args=[gen, home_prefix, BUILD_TTL_SECONDS, *follower_ids],
            )
        )
        if added < 0:
            raise BuildLost(author_id)
        return added

    async def finish_build(self, author_id: int, gen: str) -> None:
        if not int(await self._finish(keys=[self._meta(author_id)], args=[gen])):
            raise BuildLost(author_id)

    async def sync(self, author_id: int, follower_id: int, following: bool, followers: int) -> None:
        """Applies a follow (`following`) or unfollow, as PostgreSQL has it now, to the author's
        list if it exists, with the author's follower count."""
        home_prefix, with_timeline = await self._with_timelines([follower_id])
        # A look that found no timeline decides nothing: one made since may have joined already.
        membership = ("1" if with_timeline else "") if following else "0"
        await self._sync(keys=[self._meta(author_id)], args=[follower_id, membership, home_prefix, followers])

    async def join(
        self, user_id: int, author_ids: Sequence[int], *, joining: bool, chunk: int = 1000
    ) -> None:
        """Adds a user whose timeline exists to the existing lists of `author_ids` (`joining`), or
        takes them out of those lists."""
        home_prefix, with_timeline = await self._with_timelines([user_id])
        if joining and not with_timeline:
            return  # a look that found no timeline decides nothing: one made since joins itself
        for start in range(0, len(author_ids), chunk):
            keys = [self._meta(a) for a in author_ids[start : start + chunk]]
            await self._join.run(keys, [user_id, "1" if joining else "0", home_prefix])


class BuildBusy(Exception):
    """Another process is building the list right now."""


def read_follower_list_ttl_seconds(env: Env) -> int:
    return env.integer("FOLLOWER_LIST_TTL_SECONDS", 24 * 3600, minimum=60)
