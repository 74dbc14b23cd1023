"""The owners' caches of tweets and users in Redis: each written only by its owner, read by any
service (the rule of the house: another service reads an owner's data through its API or a cache
the owner documents; docs/architecture.md, "The owners' caches"):

- `tweet:<tweet_id>` (tweets_svc): a tweet's own fields as it shows them, counts included, without
  its author and original;
- `tweets_count:<user_id>` (tweets_svc, which owns the count): how many tweets a user has posted;
- `user:<user_id>` (users_svc): a user as users_svc shows one, without tweets_count.

An entry is an 8-byte big-endian version, a kind, then a payload:

- `L` (live): a tweet's payload is `<author_id>|<retweet_of_tweet_id or 0>|` then the serialized
  tweetmesh.tweets.v1.Tweet without `author` and `retweeted_tweet`; a user's, the serialized
  tweetmesh.users.v1.User without `tweets_count`; a count's, a serialized User holding only
  `tweets_count`. A reader shows a tweet by appending the author (user + count) and, for a
  retweet, the original: protobuf messages concatenate, so nothing is parsed or encoded again.
- `S` (stale): the row changed at this version and the new form is not written yet: ask the owner.
- `D` (deleted tweet): gone for good, at the highest version, so that no entry replaces it.

The version is the PostgreSQL row's (a trigger counts it up on every update; a missing
`author_stats` row is version 0). Every write is conditional: an entry is never replaced by one of
an older version. So an owner that read a row, was overtaken by a write and filled the cache after
that write's invalidation cannot bring the old state back.

Who writes: the owner fills an entry whenever it reads the row from PostgreSQL (a reader's miss is
rebuilt through the owner's API), and after each commit that changes a row it writes the new form
or an `S` entry with the new version (a new tweet's entry in the pipeline that relays its event; a
deletion's `D` entries whenever its event is relayed, by the request or the outbox sweeper). Every
entry lives `CACHE_TTL_SECONDS` (10 minutes by default) from its write and reads do not extend it:
the bound on a stale entry left by a lost invalidation (Redis unreachable at the moment of the
write). Redis may be wiped at any time: an absent entry is a miss.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from meshkit.errors import DEPENDENCY_ERRORS
from meshkit.settings import Env
from meshkit.shards import SpreadScript, get_many, is_cluster, nodes_of
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

log = logging.getLogger(__name__)

TWEET_PREFIX = "tweet:"
TWEETS_COUNT_PREFIX = "tweets_count:"
USER_PREFIX = "user:"
LIVE, STALE, DELETED = b"L", b"S", b"D"
DELETED_VERSION = 2**63 - 1
_HEADER = 9  # version and kind

# KEYS: entries. ARGV[1]: their lifetime in seconds; ARGV[i + 1]: the entry for KEYS[i]. An entry is
# written unless its key holds one of a newer version (versions compare as numbers: struct, not
# string comparison, which Redis makes locale-dependent).
_PUT = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  local new = ARGV[i + 1]
  local old = redis.call('GET', key)
  if not old or struct.unpack('>I8', old) <= struct.unpack('>I8', new) then
    redis.call('SET', key, new, 'EX', ttl)
  end
end
return #KEYS
"""

# ARGV: the tweet, user and count key prefixes, then the tweet ids, decimal, comma-separated (one
# argument rather than a key each: packing arguments is most of a client's cost). Returns the
# tweets' entries, the originals their retweets show (ids, entries), and the authors of all of them
# (ids, then user and count entries, two per author). The script derives every key it reads (the
# tweets' from their ids, an original's from a retweet, an author's from a tweet): here and only
# here, so that a cluster (keys on many shards) splits this one read into one per shard and step.
_READ = """
local seen, authors, originals = {}, {}, {}
local function author_of(entry)
  if not entry or string.sub(entry, 9, 9) ~= 'L' then return nil end
  local author, original = string.match(entry, '^(%d+)|(%d+)|', 10)
  if not seen[author] then seen[author] = true; authors[#authors + 1] = author end
  return original
end
local keys = {}
for id in string.gmatch(ARGV[4], '%d+') do keys[#keys + 1] = ARGV[1] .. id end
local tweets = redis.call('MGET', unpack(keys))
for _, entry in ipairs(tweets) do
  local original = author_of(entry)
  if original and original ~= '0' and not seen['t' .. original] then
    seen['t' .. original] = true
    originals[#originals + 1] = original
  end
end
local shown = {}
if #originals > 0 then
  local keys = {}
  for i, id in ipairs(originals) do keys[i] = ARGV[1] .. id end
  shown = redis.call('MGET', unpack(keys))
  for _, entry in ipairs(shown) do author_of(entry) end
end
local people = {}
for i, author in ipairs(authors) do
  people[2 * i - 1] = ARGV[2] .. author
  people[2 * i] = ARGV[3] .. author
end
if #people > 0 then people = redis.call('MGET', unpack(people)) end
return {tweets, originals, shown, authors, people}
"""


def tweet_key(tweet_id: int) -> str:
    return f"{TWEET_PREFIX}{tweet_id}"


def tweets_count_key(user_id: int) -> str:
    return f"{TWEETS_COUNT_PREFIX}{user_id}"


def user_key(user_id: int) -> str:
    return f"{USER_PREFIX}{user_id}"


def live(version: int, payload: bytes) -> bytes:
    return version.to_bytes(8, "big") + LIVE + payload


def stale(version: int) -> bytes:
    return version.to_bytes(8, "big") + STALE


def deleted() -> bytes:
    return DELETED_VERSION.to_bytes(8, "big") + DELETED


def tweet_payload(author_id: int, retweet_of: int | None, own_fields: bytes) -> bytes:
    """A live tweet's payload: its author and original (for readers' lookups), then its own fields."""
    return b"%d|%d|" % (author_id, retweet_of or 0) + own_fields


def tweets_count_payload(count: int) -> bytes:
    return users_pb.User(tweets_count=count).SerializeToString()


def read_cache_ttl_seconds(env: Env) -> int:
    return env.integer("CACHE_TTL_SECONDS", 600, minimum=1)


class OwnerCache:
    """An owner's writes to its cache: each entry unless a newer one is there, with the cache's
    lifetime. A cache is never the truth: a write that fails is logged and dropped (the entry
    expires, or is replaced by the next write)."""

    def __init__(self, redis: aioredis.Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._put = SpreadScript(redis, _PUT)

    async def put_in(self, pipe: Any, entries: Mapping[str, bytes]) -> None:
        """Queues the writes in `pipe` (a pipeline the caller executes, e.g. the outbox's relay)."""
        if not entries:
            return
        if is_cluster(self._redis):
            # A cluster's pipeline sends each command to its key's node: one write per entry, the
            # script's text with it (EVAL), as a pipeline cannot load a script a node lacks.
            for key, entry in entries.items():
                pipe.eval(_PUT, 1, key, self._ttl, entry)
            return
        await self._put.run_on(None, list(entries), [self._ttl, *entries.values()], client=pipe)

    async def put(self, entries: Mapping[str, bytes]) -> None:
        if not entries:
            return
        keys, values = list(entries), list(entries.values())
        with contextlib.suppress(*DEPENDENCY_ERRORS):
            for node, positions in nodes_of(self._redis, keys):
                await self._put.run_on(
                    node, [keys[n] for n in positions], [self._ttl, *(values[n] for n in positions)]
                )


# Tags of the Tweet fields a reader appends: the author and a retweet's original.
_AUTHOR = bytes([tweets_pb.Tweet.DESCRIPTOR.fields_by_name["author"].number << 3 | 2])
_ORIGINAL = bytes([tweets_pb.Tweet.DESCRIPTOR.fields_by_name["retweeted_tweet"].number << 3 | 2])


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited field (an embedded message or a string): tag, length, bytes."""
    return tag + varint(len(payload)) + payload


@dataclass(frozen=True, slots=True)
class CachedTweet:
    """A tweet as it shows, assembled from the caches: `data` is a serialized Tweet, its author
    and (for a retweet) its original included; `authors`: whose it is, as blocks and mutes see it
    (its author, and a retweet's original's)."""

    tweet_id: int
    retweet_of: int | None
    data: bytes
    authors: tuple[int, ...]

    @classmethod
    def of(cls, tweet: tweets_pb.Tweet) -> CachedTweet:
        """A tweet as its owner answered it."""
        if not tweet.retweet_of_tweet_id:
            return cls(int(tweet.tweet_id), None, tweet.SerializeToString(), (int(tweet.author_id),))
        authors = (int(tweet.author_id), int(tweet.retweeted_tweet.author_id))
        return cls(int(tweet.tweet_id), int(tweet.retweet_of_tweet_id), tweet.SerializeToString(), authors)


@dataclass(frozen=True, slots=True)
class CachedTweets:
    """What one read of the caches found: the tweets it could assemble, those it knows are
    deleted, and the rest (missing or stale somewhere), which only the owner can answer."""

    found: dict[int, CachedTweet]
    deleted: set[int]
    missing: list[int]


class TweetCacheReader:
    """Reads tweets with their authors and originals from the owners' caches in one round trip."""

    _PREFIXES = (TWEET_PREFIX.encode(), USER_PREFIX.encode(), TWEETS_COUNT_PREFIX.encode())

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._read = redis.register_script(_READ)

    async def read(self, tweet_ids: Sequence[int]) -> CachedTweets:
        ids = list(dict.fromkeys(tweet_ids))
        if not ids:
            return CachedTweets({}, set(), [])
        if is_cluster(self._redis):
            entries, originals, shown, authors, people = await self._read_by_step(ids)
        else:
            entries, originals, shown, authors, people = await self._read(
                args=[*self._PREFIXES, ",".join(map(str, ids)).encode()]
            )
        users = {author: (people[2 * i], people[2 * i + 1]) for i, author in enumerate(authors)}
        original_entries = dict(zip(originals, shown, strict=True))
        result = CachedTweets({}, set(), [])
        for tweet_id, entry in zip(ids, entries, strict=True):
            kind = entry[8:9] if entry else STALE
            if kind == DELETED:
                result.deleted.add(tweet_id)
                continue
            assembled = _assemble(entry, users, original_entries) if kind == LIVE else None
            if assembled is None:
                result.missing.append(tweet_id)
            elif assembled is DELETED:
                result.deleted.add(tweet_id)  # a retweet of a deleted tweet is gone with it
            elif isinstance(assembled, tuple):
                data, original, authors = assembled
                result.found[tweet_id] = CachedTweet(tweet_id, original, data, authors)
        return result

    async def _read_by_step(self, ids: Sequence[int]) -> tuple[Any, ...]:
        """What _READ answers, on a Redis Cluster (the entries live on many nodes): its three
        reads one after the other (the tweets, their originals, the authors), each one read per node."""
        authors: dict[bytes, None] = {}

        def author_of(entry: bytes | None) -> bytes | None:
            if not entry or entry[8:9] != LIVE:
                return None
            author, original, _ = entry[_HEADER:].split(b"|", 2)
            authors.setdefault(author)
            return original

        entries = await get_many(self._redis, [tweet_key(i) for i in ids])
        originals: dict[bytes, None] = {}
        for entry in entries:
            original = author_of(entry)
            if original and original != b"0":
                originals.setdefault(original)
        shown = await get_many(self._redis, [f"{TWEET_PREFIX}{o.decode()}" for o in originals])
        for entry in shown:
            author_of(entry)
        people = await get_many(
            self._redis,
            [f"{prefix}{a.decode()}" for a in authors for prefix in (USER_PREFIX, TWEETS_COUNT_PREFIX)],
        )
        return entries, list(originals), shown, list(authors), people


class UserCacheReader:
    """Users as users_svc shows them, from its cache (`user:<id>`): what a service that shows an
    author reads before asking users_svc for the ones it misses."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def read(self, user_ids: Sequence[int]) -> dict[int, bytes]:
        """The serialized User (without tweets_count) of each user whose entry is live; the rest
        (absent, stale, or Redis unreachable) are the owner's to answer."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        try:
            entries = await get_many(self._redis, [user_key(u) for u in ids])
        except DEPENDENCY_ERRORS:
            return {}
        return {u: e[_HEADER:] for u, e in zip(ids, entries, strict=True) if e and e[8:9] == LIVE}


def _author(author: bytes, users: Mapping[bytes, tuple[bytes | None, bytes | None]]) -> bytes | None:
    user, count = users.get(author, (None, None))
    if not user or not count or user[8:9] != LIVE or count[8:9] != LIVE:
        return None
    return user[_HEADER:] + count[_HEADER:]


def _assemble(
    entry: bytes,
    users: Mapping[bytes, tuple[bytes | None, bytes | None]],
    originals: Mapping[bytes, bytes | None],
) -> tuple[bytes, int | None, tuple[int, ...]] | bytes | None:
    """A live entry's serialized tweet, original and authors (CachedTweet.authors); DELETED if
    its original is; None on a miss."""
    author, original, own = entry[_HEADER:].split(b"|", 2)
    shown_by = _author(author, users)
    if shown_by is None:
        return None
    data = own + length_delimited(_AUTHOR, shown_by)
    if original == b"0":
        return data, None, (int(author),)
    original_entry = originals.get(original)
    if not original_entry or original_entry[8:9] == STALE:
        return None
    if original_entry[8:9] == DELETED:
        return DELETED
    inner = _assemble(original_entry, users, originals)
    if not isinstance(inner, tuple):
        return inner
    return data + length_delimited(_ORIGINAL, inner[0]), int(original), (int(author), *inner[2])
