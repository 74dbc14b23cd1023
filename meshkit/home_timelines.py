"""Home timelines in Redis: the one representation fanout_svc writes and timeline_svc reads.

`home:<user_id>` is a sorted set whose members are tweet ids as 19-digit decimal strings, all with
score 0, so Redis orders them by their bytes, which is by id, which is by time. Redis stores such
members as 8-byte integers in a listpack (with `zset-max-listpack-entries` >= the cap + 1), about
12 bytes per entry. The member "0" is a sentinel that sorts first and marks a timeline as built:
fan-out writes only into timelines that exist (an absent one is rebuilt from PostgreSQL on the next
read, which covers inactive users and a wiped Redis), and a rebuild creates the sentinel before it
queries PostgreSQL, so no tweet fanned out during the rebuild is lost. Adding a member twice
changes nothing, which makes redelivered events harmless. Every delivery is also PUBLISHed on
`live:<user_id>` for open streams, as the tweet id; a deletion as the tweet id prefixed with "-".
The global timeline's stream is the channel `live:global`, in the same format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from meshkit.peers import TweetRef

SENTINEL = b"0"
DELIVERED_COUNTER = "fanout:delivered"

# KEYS: home timeline keys. ARGV: tweet id, max entries. Returns how many timelines got the tweet.
_DELIVER = """
local delivered = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', key, 0, ARGV[1])
    redis.call('ZREMRANGEBYRANK', key, 1, -(tonumber(ARGV[2]) + 1))
    delivered = delivered + 1
  end
  redis.call('PUBLISH', 'live:' .. string.sub(key, 6), ARGV[1])
end
if delivered > 0 then redis.call('INCRBY', 'fanout:delivered', delivered) end
return delivered
"""

# KEYS: home timeline keys. ARGV: tweet id. Takes the tweet out and tells the live streams.
_RETRACT = """
for _, key in ipairs(KEYS) do
  redis.call('ZREM', key, ARGV[1])
  redis.call('PUBLISH', 'live:' .. string.sub(key, 6), '-' .. ARGV[1])
end
return #KEYS
"""

# KEYS[1]: one timeline. ARGV: max entries, ttl seconds, ids... Adds only if the timeline exists.
_MERGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 0, ARGV[i]) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 1, -(tonumber(ARGV[1]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return #ARGV - 2
"""


def belongs_in_home(ref: TweetRef, viewer: int, following: set[int]) -> bool:
    """Whether a tweet of someone the viewer follows (or of the viewer) is in their home timeline:
    a reply to someone else only if the viewer follows them too or is them (Mastodon's rule, applied
    by fan-out on write and by timeline_svc when it reads from PostgreSQL). Tweets mentioning the
    viewer come in separately."""
    replied = ref.reply_to_author_id
    return (
        ref.author_id == viewer
        or replied is None
        or replied in (ref.author_id, viewer)
        or replied in following
    )


def home_key(user_id: int) -> str:
    return f"home:{user_id}"


GLOBAL_CHANNEL = "live:global"


def live_channel(user_id: int) -> str:
    return f"live:{user_id}"


def live_message(tweet_id: int, *, deleted: bool) -> str:
    return f"-{tweet_id}" if deleted else str(tweet_id)


def parse_live_message(data: bytes) -> tuple[int, bool]:
    """(tweet id, deleted) from a live channel message."""
    text = data.decode()
    return int(text.removeprefix("-")), text.startswith("-")


def _member(tweet_id: int) -> str:
    return str(tweet_id)


def _bound(tweet_id: int, inclusive: bool = False) -> bytes:
    """A lex range bound; zero-padded so that any id compares right against 19-digit members."""
    return (b"[" if inclusive else b"(") + f"{tweet_id:019d}".encode()


class HomeTimelines:
    def __init__(self, redis: aioredis.Redis, max_entries: int, ttl_seconds: int) -> None:
        self._redis = redis
        self.max_entries = max_entries
        self._ttl = ttl_seconds
        self._deliver = redis.register_script(_DELIVER)
        self._merge = redis.register_script(_MERGE)
        self._retract = redis.register_script(_RETRACT)

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int:
        """Writes `tweet_id` into the existing timelines of `user_ids` and tells their live streams."""
        delivered = 0
        for start in range(0, len(user_ids), chunk):
            keys = [home_key(u) for u in user_ids[start : start + chunk]]
            delivered += int(await self._deliver(keys=keys, args=[_member(tweet_id), self.max_entries]))
        return delivered

    async def retract(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> None:
        """Takes a deleted tweet out of the timelines of `user_ids` and tells their live streams."""
        for start in range(0, len(user_ids), chunk):
            keys = [home_key(u) for u in user_ids[start : start + chunk]]
            await self._retract(keys=keys, args=[_member(tweet_id)])

    async def announce_global(self, tweet_id: int, *, deleted: bool) -> None:
        """Tells the global timeline's live streams of a new or deleted public tweet."""
        await self._redis.publish(GLOBAL_CHANNEL, live_message(tweet_id, deleted=deleted))

    async def exists(self, user_id: int) -> bool:
        return bool(await self._redis.exists(home_key(user_id)))

    async def begin_rebuild(self, user_id: int) -> None:
        """Marks the timeline as existing (empty) so fan-out starts writing into it right away."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(home_key(user_id), {SENTINEL: 0})
            pipe.expire(home_key(user_id), self._ttl)
            await pipe.execute()

    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int:
        """Adds tweets to a timeline if it exists (a follow, a rebuild)."""
        members = [_member(t) for t in tweet_ids]
        total = 0
        for start in range(0, len(members), 1000):
            batch = members[start : start + 1000]
            total += int(
                await self._merge(keys=[home_key(user_id)], args=[self.max_entries, self._ttl, *batch])
            )
        return total

    async def remove(self, user_id: int, tweet_ids: Iterable[int]) -> None:
        members = [_member(t) for t in tweet_ids]
        if members:
            await self._redis.zrem(home_key(user_id), *members)

    async def oldest(self, user_id: int) -> int | None:
        """The oldest tweet id held, None when the timeline is absent or empty."""
        first: list[bytes] = await self._redis.zrange(home_key(user_id), 1, 1)  # type: ignore[assignment]
        return int(first[0]) if first else None

    async def page(self, user_id: int, before: int | None, limit: int) -> list[int] | None:
        """Up to `limit` ids below `before`, newest first; None when the timeline is absent."""
        key = home_key(user_id)
        high = b"+" if before is None else _bound(before)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.zrevrangebylex(key, high, b"(" + SENTINEL, start=0, num=limit)
            pipe.expire(key, self._ttl)
            exists, members, _ = await pipe.execute()
        if not exists:
            return None
        return [int(m) for m in members]

    async def after(self, user_id: int, after: int, limit: int) -> list[int] | None:
        """Up to `limit` ids above `after`, oldest first; None when the timeline is absent."""
        key = home_key(user_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.zrangebylex(key, _bound(after), b"+", start=0, num=limit)
            exists, members = await pipe.execute()
        if not exists:
            return None
        return [int(m) for m in members]
