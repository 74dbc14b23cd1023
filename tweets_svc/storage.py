"""tweets_svc's SQL (schema `tweets`) and its Redis cache of tweets and counts (social.caches);
nothing else writes them."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from meshkit import tracing
from meshkit.batching import GroupCommit
from meshkit.errors import DEPENDENCY_ERRORS, NotFound, PermissionDenied, not_found
from meshkit.outbox import Event, Outbox
from meshkit.reads import Reads
from social import LIKES_STREAM, TWEETS_STREAM, TweetRef
from social.caches import (
    OwnerCache,
    deleted,
    live,
    stale,
    tweet_key,
    tweet_payload,
    tweets_count_key,
    tweets_count_payload,
)
from social.rules import IS_PUBLIC_SQL
from tweets_svc.service import (
    Editable,
    LikeChange,
    MediaTaken,
    Mention,
    NewTweet,
    QuoteTargetMissing,
    ReplyTargetMissing,
    ThreadNode,
    Tweet,
    TweetChange,
    TweetEdit,
    TweetMedia,
    TweetState,
    TweetVersion,
)

_NO_UPPER_BOUND = 2**63 - 1
_LIVE = "delete_time IS NULL"
# The global timeline's rows; the same predicate as the partial index tweets_public.
_LIVE_PUBLIC = f"{_LIVE} AND {IS_PUBLIC_SQL}"
# A tweet's media in its order, as JSON objects with TweetMedia's fields.
_MEDIA = """
COALESCE((SELECT json_agg(json_build_object(
            'media_id', m.media_id, 'content_type', m.content_type, 'width', m.width,
            'height', m.height, 'duration_ms', m.duration_ms, 'url', m.url,
            'thumbnail_url', m.thumbnail_url, 'alt_text', m.alt_text) ORDER BY u.position)
          FROM unnest(t.media_ids) WITH ORDINALITY AS u(media_id, position)
          JOIN tweet_media m ON m.media_id = u.media_id), '[]')
"""
# One row per live tweet with everything a Tweet shows, mentions, hashtags and media included,
# and its author's tweet count (read with it: hydration then needs no second query for the
# counts), with the versions of both (social.caches; a missing count row is version 0).
_HYDRATE = f"""
SELECT t.id, t.author_id, t.text, t.create_time, t.reply_to_id, t.reply_count, t.reply_to_author_id,
       p.delete_time IS NOT NULL, t.retweet_of_id, t.like_count, t.retweet_count,
       ARRAY(SELECT m.user_id FROM mentions m WHERE m.tweet_id = t.id AND NOT m.implicit ORDER BY m.position),
       ARRAY(SELECT m.handle FROM mentions m WHERE m.tweet_id = t.id AND NOT m.implicit ORDER BY m.position),
       ARRAY(SELECT h.tag FROM hashtags h WHERE h.tweet_id = t.id ORDER BY h.position),
       COALESCE(s.tweets_count, 0), {_MEDIA}, t.quote_of_id, t.quote_count, t.version, COALESCE(s.version, 0),
       t.edit_count, t.edit_time
FROM tweets t LEFT JOIN tweets p ON p.id = t.reply_to_id LEFT JOIN author_stats s ON s.author_id = t.author_id
WHERE t.id = ANY(%s) AND t.delete_time IS NULL
"""
# A live tweet's versions, newest first: the current one (from the row), then those edits replaced.
_HISTORY = f"""
SELECT t.text, t.write_time, {_MEDIA} FROM (
    SELECT text, media_ids, COALESCE(edit_time, create_time) AS write_time, edit_count AS version_no
    FROM tweets WHERE id = %(id)s AND {_LIVE}
    UNION ALL
    SELECT text, media_ids, write_time, version_no FROM tweet_versions
    WHERE tweet_id = %(id)s AND EXISTS (SELECT 1 FROM tweets WHERE id = %(id)s AND {_LIVE})
) t ORDER BY t.version_no DESC
"""
# The unique index that makes a retried CreateTweet find its first tweet.
_REQUEST_ID_INDEX = "tweets_by_request_id"


# A tweet and those it replies to, nearest first, deleted ones too (a deleted tweet keeps its place).
_THREAD_UP = """
WITH RECURSIVE up (id, author_id, reply_to_id, depth, deleted) AS (
    SELECT id, author_id, reply_to_id, 0, delete_time IS NOT NULL FROM tweets WHERE id = %s
    UNION ALL
    SELECT t.id, t.author_id, t.reply_to_id, up.depth + 1, t.delete_time IS NOT NULL
    FROM tweets t JOIN up ON t.id = up.reply_to_id
    WHERE up.depth + 1 < %s
)
SELECT id, author_id, reply_to_id, depth, deleted FROM up ORDER BY depth
"""

# The replies below a tweet in reading order. Each reply's path is its parent's and then (0 for the
# given author, else 1; its id): sorting the paths puts every reply right after its parent and
# before its parent's next sibling, the author's replies first among siblings, then oldest first.
# A deleted reply stays only where it has replies, as a placeholder holding the tree together.
_THREAD_DOWN = """
WITH RECURSIVE down (id, author_id, reply_to_id, depth, deleted, path) AS (
    SELECT id, author_id, reply_to_id, 1, delete_time IS NOT NULL,
           ARRAY[CASE WHEN author_id = %s THEN 0 ELSE 1 END, id]::bigint[]
    FROM tweets WHERE reply_to_id = %s
    UNION ALL
    SELECT t.id, t.author_id, t.reply_to_id, down.depth + 1, t.delete_time IS NOT NULL,
           down.path || ARRAY[CASE WHEN t.author_id = %s THEN 0 ELSE 1 END, t.id]::bigint[]
    FROM tweets t JOIN down ON t.reply_to_id = down.id
    WHERE down.depth < %s
)
SELECT id, author_id, reply_to_id, depth, deleted, path FROM down
WHERE path > %s::bigint[] AND (NOT deleted OR EXISTS (SELECT 1 FROM tweets c WHERE c.reply_to_id = down.id))
ORDER BY path LIMIT %s
"""


def _tweet(row: Sequence[Any]) -> Tweet:
    return Tweet(
        tweet_id=int(row[0]),
        author_id=int(row[1]),
        text=row[2],
        create_time=row[3],
        reply_to_tweet_id=_opt(row[4]),
        reply_count=int(row[5]),
        reply_to_author_id=_opt(row[6]),
        reply_to_deleted=bool(row[7]),
        retweet_of_tweet_id=_opt(row[8]),
        like_count=int(row[9]),
        retweet_count=int(row[10]),
        mentions=tuple(Mention(int(u), h) for u, h in zip(row[11], row[12], strict=True)),
        hashtags=tuple(row[13]),
        author_tweets_count=int(row[14]),
        media=tuple(TweetMedia(**m) for m in row[15]),
        quote_of_tweet_id=_opt(row[16]),
        quote_count=int(row[17]),
        version=int(row[18]),
        author_tweets_count_version=int(row[19]),
        edit_count=int(row[20]),
        edit_time=row[21],
    )


def _mention_rows(
    tweet_id: int, author_id: int, mentions: Sequence[Mention], implicit: Sequence[int]
) -> tuple[list[tuple[int, int, str, int, bool]], tuple[int, ...]]:
    """A tweet's rows of `mentions` (the `implicit` ones, the quoted and replied-to authors, after
    those it names), and who it mentions (its author left out)."""
    rows = [(tweet_id, m.user_id, m.handle, i, False) for i, m in enumerate(mentions)]
    mentioned = [m.user_id for m in mentions]
    for author in implicit:
        if author not in mentioned:
            rows.append((tweet_id, author, "", len(rows), True))
            mentioned.append(author)
    return rows, tuple(u for u in mentioned if u != author_id)


def _request_deleted() -> NotFound:
    """The answer to a post whose request_id made a tweet that has been deleted since."""
    return NotFound("the tweet this request_id created has been deleted", reason="DELETED")


def _retry_alone(error: Exception) -> bool:
    """Whether a batch that failed with `error` is worth retrying one post at a time: yes when
    the database refused something (a post breaking a constraint, a deadlock), no when it could
    not be reached (each post alone would only wait for it again)."""
    if isinstance(error, psycopg.errors.TransactionRollback):
        return True
    return isinstance(error, psycopg.Error) and not isinstance(error, DEPENDENCY_ERRORS)


@dataclass
class _Batch:
    """The rows one group commit writes, built from what its first round trip found."""

    now: datetime
    tweets: list[tuple[int, int, str, int | None, int | None, str | None]] = field(default_factory=list)
    mentions: list[tuple[int, int, str, int, bool]] = field(default_factory=list)
    hashtags: list[tuple[int, str, int]] = field(default_factory=list)
    replies: dict[int, int] = field(default_factory=dict)  # parent id -> replies added
    posts: dict[int, int] = field(default_factory=dict)  # author id -> tweets added
    events: list[bytes] = field(default_factory=list)
    traces: list[str | None] = field(default_factory=list)  # each event's trace context


@dataclass(frozen=True, slots=True)
class _Post:
    """A post waiting for its group commit, with the trace context of the call that made it (its
    event's: the batch runs in one call's context, not in each one's)."""

    new: NewTweet
    trace: str | None


@dataclass
class _Written:
    """The cursors of a group commit's writes, whose results are read once it has committed."""

    replied: psycopg.AsyncCursor[Any] | None  # (id, version) of the replied-to tweets
    inserted: psycopg.AsyncCursor[Any]  # (id, version) of the new tweets
    counted: psycopg.AsyncCursor[Any]  # (author, count, version) of the authors' counts
    outbox: psycopg.AsyncCursor[Any]  # the outbox events (Outbox.added)


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def _below(before: int | None) -> int:
    return _NO_UPPER_BOUND if before is None else before


def _above(after: int | None) -> int:
    return -1 if after is None else after


class TweetCache:
    """tweets_svc's cache (social.caches): `tweet:<id>` and `tweets_count:<author>` entries. Every
    read from PostgreSQL fills it; every commit that changes a row writes the row's new form or
    marks it stale at its new version."""

    def __init__(self, cache: OwnerCache, own_fields: Callable[[Tweet], bytes]) -> None:
        self._cache = cache
        # Serializes a tweet's own fields (server.py: only it imports *_pb2).
        self._own_fields = own_fields

    def shown(self, tweets: Iterable[Tweet]) -> dict[str, bytes]:
        """Live entries of tweets as read (a retweet's original too) and of their authors' counts.
        A quote tweet is not cached: it shows the tweet it quotes (with its author, or that it is
        gone), which only tweets_svc assembles; readers always ask it for one."""
        entries = {}
        for tweet in tweets:
            for read in (tweet, tweet.retweeted):
                if read is None or read.quote_of_tweet_id is not None:
                    continue
                payload = tweet_payload(read.author_id, read.retweet_of_tweet_id, self._own_fields(read))
                entries[tweet_key(read.tweet_id)] = live(read.version, payload)
                if read.author_tweets_count is not None:
                    entries[tweets_count_key(read.author_id)] = live(
                        read.author_tweets_count_version, tweets_count_payload(read.author_tweets_count)
                    )
        return entries

    @staticmethod
    def changed(versions: Mapping[int, int]) -> dict[str, bytes]:
        """Stale entries of tweets changed by a commit (tweet id -> its new version)."""
        return {tweet_key(t): stale(v) for t, v in versions.items()}

    @staticmethod
    def counted(counts: Iterable[tuple[int, int, int]]) -> dict[str, bytes]:
        """Live entries of authors' counts as a commit left them (author, count, version)."""
        return {tweets_count_key(a): live(v, tweets_count_payload(c)) for a, c, v in counts}

    @staticmethod
    def deletion(tweet_id: int) -> dict[str, bytes]:
        return {tweet_key(tweet_id): deleted()}

    async def put_in(self, pipe: Any, entries: Mapping[str, bytes]) -> None:
        await self._cache.put_in(pipe, entries)

    async def put(self, entries: Mapping[str, bytes]) -> None:
        await self._cache.put(entries)


class PostgresTweetStore:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        outbox: Outbox,
        tweet_event: Callable[[TweetChange], bytes],
        like_event: Callable[[LikeChange], bytes],
        cache: TweetCache,
        *,
        batch_max: int = 64,
        batches_in_flight: int = 2,
        reads: Reads | None = None,
    ) -> None:
        self._pool = pool
        # The reads that may show a moment-old state go through `reads` (the replica, when there is
        # one): the id lists of search and hashtag pages, and an author's tweets as others see them
        # (`lag_ok`). Their tweets are hydrated from the primary (by_ids), so what such a page shows
        # is never deleted or an old version; it may only miss what was posted a moment ago.
        # Everything else reads its own writes, or feeds a writer or a resume point: the primary.
        self._reads = reads or Reads(pool)
        self._outbox = outbox
        # Build the serialized TweetEvent and LikeEvent; passed in so that only server.py imports *_pb2.
        self._tweet_event = tweet_event
        self._like_event = like_event
        self._cache = cache
        # Concurrent posts are committed together (meshkit.batching).
        self._posts: GroupCommit[_Post, Tweet] = GroupCommit(
            "posts", self._create_batch, max_batch=batch_max, max_in_flight=batches_in_flight
        )

    async def _ids(self, sql: str, params: Sequence[Any], *, lag_ok: bool = False) -> list[int]:
        async def read(conn: psycopg.AsyncConnection[Any]) -> list[int]:
            cur = await conn.execute(sql, params)
            return [int(r[0]) for r in await cur.fetchall()]

        if lag_ok:
            return await self._reads.run(read)
        async with self._pool.connection() as conn:
            return await read(conn)

    async def _pairs(self, sql: str, params: Sequence[Any]) -> list[tuple[int, int]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]

    # -- writes ---------------------------------------------------------------------------------

    async def create(self, new: NewTweet) -> Tweet:
        """Stores a post in a group commit with the posts made at the same time; a post with media
        or a quote in a transaction of its own (its `tweet_media` rows make PostgreSQL refuse a
        media that another tweet holds: MediaTaken, for that post alone; a quote locks the tweet
        it quotes with the replied-to one, in id order)."""
        if new.media or new.quote_of_tweet_id is not None:
            return await self._create_once(new)
        return await self._posts(_Post(new, tracing.traceparent()))

    async def _create_batch(self, posts: Sequence[_Post]) -> list[Tweet | Exception]:
        """Posts in one transaction: one insert of all the tweets, one of their mentions, one of
        their hashtags, one count update per author and per replied-to tweet, their outbox rows;
        then one relay. Each post keeps its own outcome: its tweet (the one stored before, for a
        request_id seen already, even earlier in the same batch) or its error. A batch that the
        database refuses is retried one post at a time, so that only a bad post fails."""
        news = [post.new for post in posts]
        first: dict[tuple[int, str], int] = {}
        same_as = [
            i if new.request_id is None else first.setdefault((new.author_id, new.request_id), i)
            for i, new in enumerate(news)
        ]
        distinct = sorted(set(same_as))
        outcomes: list[Tweet | Exception]
        try:
            outcomes, events, entries = await self._insert_batch([posts[i] for i in distinct])
        except Exception as error:
            if not _retry_alone(error):
                raise
            outcomes = list(await asyncio.gather(*(self._create_alone(news[i]) for i in distinct)))
        else:
            # The new tweets, their authors' counts and the replied-to tweets' stale entries enter
            # the cache with the events.
            await self._outbox.relay(events, also=functools.partial(self._cache.put_in, entries=entries))
        outcome_of = dict(zip(distinct, outcomes, strict=True))
        return [outcome_of[i] for i in same_as]

    async def _insert_batch(
        self, posts: Sequence[_Post]
    ) -> tuple[list[Tweet | Exception], list[Event], dict[str, bytes]]:
        """The batch's transaction in three round trips, the statements of each pipelined: what
        exists already (request_ids, replied-to tweets, locked in id order) with the new ids;
        then every write and the commit; then (only for request_ids seen before) their tweets.
        Returns each post's outcome, the events to relay and the cache entries the batch changed."""
        news = [post.new for post in posts]
        keys = [(n.author_id, n.request_id) for n in news if n.request_id is not None]
        parents = sorted({n.reply_to_tweet_id for n in news if n.reply_to_tweet_id is not None})
        async with self._pool.connection() as conn, conn.pipeline():
            # The writes' results (versions, counts, outbox events) are read after the commit, which sends
            # them and the COMMIT in one round trip.
            async with conn.transaction():
                now_cursor = await conn.execute("SELECT now()")
                ids_cursor = await conn.execute(
                    "SELECT tm_next_id('tweets_id_seq') FROM generate_series(1, %s)", (len(news),)
                )
                seen_cursor = await conn.execute(
                    "SELECT t.author_id, t.request_id, t.id FROM tweets t"
                    " JOIN unnest(%s::bigint[], %s::text[]) AS k(author_id, request_id)"
                    " ON t.author_id = k.author_id AND t.request_id = k.request_id"
                    " WHERE t.request_id IS NOT NULL",
                    ([a for a, _ in keys], [r for _, r in keys]),
                )
                # Locked in id order, as every writer of replies locks them: no deadlock.
                parents_cursor = await conn.execute(
                    f"SELECT id, author_id FROM tweets WHERE id = ANY(%s) AND {_LIVE}"
                    " AND retweet_of_id IS NULL ORDER BY id FOR UPDATE",
                    (parents,),
                )
                now_row = await now_cursor.fetchone()
                assert now_row is not None
                now = now_row[0]
                new_ids = sorted(int(r[0]) for r in await ids_cursor.fetchall())
                seen = {(int(a), str(r)): int(t) for a, r, t in await seen_cursor.fetchall()}
                live_parents = {int(p): int(a) for p, a in await parents_cursor.fetchall()}
                batch = _Batch(now)
                outcomes: list[Tweet | Exception | int] = []
                for post, tweet_id in zip(posts, new_ids, strict=True):
                    new = post.new
                    if new.request_id is not None and (new.author_id, new.request_id) in seen:
                        outcomes.append(seen[(new.author_id, new.request_id)])  # hydrated below
                    elif new.reply_to_tweet_id is not None and new.reply_to_tweet_id not in live_parents:
                        outcomes.append(ReplyTargetMissing(new.reply_to_tweet_id))
                    else:
                        reply_to_author = live_parents.get(new.reply_to_tweet_id or 0)
                        outcomes.append(self._add_to_batch(batch, tweet_id, post, reply_to_author))
                written = await self._write_batch(conn, batch)
                before = [o for o in outcomes if isinstance(o, int)]
                found = {t.tweet_id: t for t in await self._hydrate(conn.cursor(), before)} if before else {}
            changed: dict[int, int] = {}
            versions: dict[int, int] = {}
            counts: dict[int, tuple[int, int]] = {}
            events: list[Event] = []
            if written is not None:
                if written.replied is not None:
                    changed = {int(t): int(v) for t, v in await written.replied.fetchall()}
                versions = {int(t): int(v) for t, v in await written.inserted.fetchall()}
                counts = {int(a): (int(c), int(v)) for a, c, v in await written.counted.fetchall()}
                events = await Outbox.added(written.outbox)
        answers: list[Tweet | Exception] = []
        created: list[Tweet] = []
        for outcome in outcomes:
            if isinstance(outcome, int):
                answers.append(found[outcome] if outcome in found else _request_deleted())
            elif isinstance(outcome, Tweet):
                count, count_version = counts[outcome.author_id]
                tweet = replace(
                    outcome,
                    version=versions[outcome.tweet_id],
                    author_tweets_count=count,
                    author_tweets_count_version=count_version,
                )
                created.append(tweet)
                answers.append(tweet)
            else:
                answers.append(outcome)
        return answers, events, self._cache.shown(created) | self._cache.changed(changed)

    def _add_to_batch(self, batch: _Batch, tweet_id: int, post: _Post, reply_to_author: int | None) -> Tweet:
        """Adds a new tweet's rows to the batch; returns the tweet as stored."""
        new = post.new
        tweet = Tweet(
            tweet_id=tweet_id,
            author_id=new.author_id,
            text=new.text,
            create_time=batch.now,
            reply_to_tweet_id=new.reply_to_tweet_id,
            reply_count=0,
            reply_to_author_id=reply_to_author,
            mentions=new.mentions,
            hashtags=new.hashtags,
        )
        batch.tweets.append(
            (tweet_id, new.author_id, new.text, new.reply_to_tweet_id, reply_to_author, new.request_id)
        )
        mention_rows, mentioned = _mention_rows(
            tweet_id, new.author_id, new.mentions, [] if reply_to_author is None else [reply_to_author]
        )
        batch.mentions.extend(mention_rows)
        batch.hashtags.extend((tweet_id, tag, i) for i, tag in enumerate(new.hashtags))
        if new.reply_to_tweet_id is not None:
            batch.replies[new.reply_to_tweet_id] = batch.replies.get(new.reply_to_tweet_id, 0) + 1
        batch.posts[new.author_id] = batch.posts.get(new.author_id, 0) + 1
        batch.events.append(self._tweet_event(TweetChange(tweet, False, mentioned)))
        batch.traces.append(post.trace)
        return tweet

    async def _write_batch(self, conn: psycopg.AsyncConnection[Any], batch: _Batch) -> _Written | None:
        """Queues the batch's writes (in the pipeline: nothing waits for them before the commit);
        returns the cursors that will hold their results (None: nothing to write)."""
        if not batch.tweets:
            return None
        replied = None
        if batch.replies:
            replies = sorted(batch.replies.items())
            replied = await conn.execute(
                "UPDATE tweets t SET reply_count = t.reply_count + r.n"
                " FROM unnest(%s::bigint[], %s::bigint[]) AS r(id, n) WHERE t.id = r.id"
                " RETURNING t.id, t.version",
                ([p for p, _ in replies], [n for _, n in replies]),
            )
        columns = list(zip(*batch.tweets, strict=True))
        inserted = await conn.execute(
            "INSERT INTO tweets (id, author_id, text, reply_to_id, reply_to_author_id, request_id)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[],"
            " %s::text[]) RETURNING id, version",
            [list(c) for c in columns],
        )
        if batch.mentions:
            await conn.execute(
                "INSERT INTO mentions (tweet_id, user_id, handle, position, implicit)"
                " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::smallint[],"
                " %s::boolean[])",
                [list(c) for c in zip(*batch.mentions, strict=True)],
            )
        if batch.hashtags:
            await conn.execute(
                "INSERT INTO hashtags (tweet_id, tag, position)"
                " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::smallint[])",
                [list(c) for c in zip(*batch.hashtags, strict=True)],
            )
        posts = sorted(batch.posts.items())
        # In author order, as every writer of the counts locks them.
        counts = await conn.execute(
            "INSERT INTO author_stats (author_id, tweets_count)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[]) ORDER BY 1"
            " ON CONFLICT (author_id)"
            " DO UPDATE SET tweets_count = author_stats.tweets_count + excluded.tweets_count"
            " RETURNING author_id, tweets_count, version",
            ([a for a, _ in posts], [n for _, n in posts]),
        )
        outbox = conn.cursor()
        await Outbox.add_all(outbox, TWEETS_STREAM, batch.events, batch.traces)
        return _Written(replied, inserted, counts, outbox)

    async def _create_alone(self, new: NewTweet) -> Tweet | Exception:
        """One post in a transaction of its own (a batch the database refused is retried so):
        its tweet, or the error it alone gets."""
        try:
            return await self._create_once(new)
        except Exception as error:
            return error

    async def _create_once(self, new: NewTweet) -> Tweet:
        """One post in a transaction of its own."""
        try:
            return await self._create(new)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name != _REQUEST_ID_INDEX:
                raise
            # A concurrent call with the same request_id committed first: answer with its tweet.
            return await self._create(new)

    async def by_request_id(self, author_id: int, request_id: str) -> Tweet | None:
        async with self._pool.connection() as conn, conn.cursor() as cur:
            return await self._by_request_id(cur, author_id, request_id)

    async def _by_request_id(
        self, cur: psycopg.AsyncCursor[Any], author_id: int, request_id: str
    ) -> Tweet | None:
        await cur.execute(
            "SELECT id FROM tweets WHERE author_id = %s AND request_id = %s", (author_id, request_id)
        )
        if (row := await cur.fetchone()) is None:
            return None
        existing = await self._hydrate(cur, [int(row[0])])
        if not existing:
            raise _request_deleted()
        return existing[0]

    async def _create(self, new: NewTweet) -> Tweet:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if new.request_id is not None and (
                existing := await self._by_request_id(cur, new.author_id, new.request_id)
            ):
                return existing
            # The replied-to and quoted tweets count one more, each locked in id order (as every
            # writer of two tweets' counters locks them), and their authors are told; their cached
            # forms are stale from this commit on.
            authors: dict[str, int] = {}
            changed: dict[int, int] = {}
            targets = [("reply_count", new.reply_to_tweet_id), ("quote_count", new.quote_of_tweet_id)]
            for counter, target in sorted((t for t in targets if t[1] is not None), key=lambda t: t[1] or 0):
                await cur.execute(
                    f"UPDATE tweets SET {counter} = {counter} + 1"
                    f" WHERE id = %s AND {_LIVE} AND retweet_of_id IS NULL RETURNING author_id, id, version",
                    (target,),
                )
                if (row := await cur.fetchone()) is None:
                    raise (
                        ReplyTargetMissing(target) if counter == "reply_count" else QuoteTargetMissing(target)
                    )
                authors[counter] = int(row[0])
                changed[int(row[1])] = int(row[2])
            reply_to_author = authors.get("reply_count")
            await cur.execute(
                "INSERT INTO tweets (author_id, text, reply_to_id, reply_to_author_id, request_id, media_ids,"
                " quote_of_id) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    new.author_id,
                    new.text,
                    new.reply_to_tweet_id,
                    reply_to_author,
                    new.request_id,
                    [m.media_id for m in new.media],
                    new.quote_of_tweet_id,
                ),
            )
            tweet_id = int((await cur.fetchone() or [0])[0])
            implicit = [authors[c] for c in sorted(authors)]
            mentioned = await self._attach(cur, tweet_id, new.author_id, new.mentions, new.hashtags, implicit)
            await self._attach_media(cur, tweet_id, new.media)
            await self._count(cur, [new.author_id], +1)
            (tweet,) = await self._hydrate(cur, [tweet_id])
            media_ids = tuple(m.media_id for m in tweet.media)
            event = await self._outbox.add(
                cur, TWEETS_STREAM, self._tweet_event(TweetChange(tweet, False, mentioned, media_ids))
            )
        # The new tweet (and its author's count, read after the update) enter the cache with its event.
        entries = self._cache.shown([tweet]) | self._cache.changed(changed)
        await self._outbox.relay([event], also=functools.partial(self._cache.put_in, entries=entries))
        return tweet

    async def _attach_media(
        self, cur: psycopg.AsyncCursor[Any], tweet_id: int, media: Sequence[TweetMedia]
    ) -> None:
        """Records that the tweet holds these media; MediaTaken if another tweet holds one."""
        for item in media:
            try:
                await cur.execute(
                    "INSERT INTO tweet_media (media_id, tweet_id, content_type, width, height, duration_ms,"
                    " url, thumbnail_url, alt_text) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        item.media_id,
                        tweet_id,
                        item.content_type,
                        item.width,
                        item.height,
                        item.duration_ms,
                        item.url,
                        item.thumbnail_url,
                        item.alt_text,
                    ),
                )
            except psycopg.errors.UniqueViolation:
                raise MediaTaken(item.media_id) from None  # the transaction rolls back

    async def _attach(
        self,
        cur: psycopg.AsyncCursor[Any],
        tweet_id: int,
        author_id: int,
        mentions: Sequence[Mention],
        hashtags: Sequence[str],
        implicit: Sequence[int],
    ) -> tuple[int, ...]:
        """Stores mentions (the quoted and replied-to authors as implicit ones, in that order) and
        hashtags; returns who is mentioned."""
        rows, mentioned = _mention_rows(tweet_id, author_id, mentions, implicit)
        if rows:
            await cur.executemany(
                "INSERT INTO mentions (tweet_id, user_id, handle, position, implicit)"
                " VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        if hashtags:
            await cur.executemany(
                "INSERT INTO hashtags (tweet_id, tag, position) VALUES (%s, %s, %s)",
                [(tweet_id, tag, i) for i, tag in enumerate(hashtags)],
            )
        return mentioned

    async def _mentioned(
        self, cur: psycopg.AsyncCursor[Any], tweet_id: int, author_id: int
    ) -> tuple[int, ...]:
        """Who the tweet mentions (implicitly too), but its author, in order."""
        await cur.execute("SELECT user_id FROM mentions WHERE tweet_id = %s ORDER BY position", (tweet_id,))
        return tuple(int(r[0]) for r in await cur.fetchall() if int(r[0]) != author_id)

    async def _count(
        self, cur: psycopg.AsyncCursor[Any], author_ids: Sequence[int], delta: int
    ) -> list[tuple[int, int, int]]:
        """Changes the authors' counts; returns (author, count, version) of each as changed."""
        counted = []
        # In id order, so that concurrent writers lock the counters in the same order.
        for author_id in sorted(author_ids):
            await cur.execute(
                "INSERT INTO author_stats (author_id, tweets_count) VALUES (%s, %s)"
                " ON CONFLICT (author_id) DO UPDATE SET tweets_count = author_stats.tweets_count + %s"
                " RETURNING tweets_count, version",
                (author_id, max(delta, 0), delta),
            )
            row = await cur.fetchone()
            assert row is not None
            counted.append((author_id, int(row[0]), int(row[1])))
        return counted

    async def delete(self, tweet_id: int, actor_id: int) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                f"SELECT author_id FROM tweets WHERE id = %s AND {_LIVE} FOR UPDATE", (tweet_id,)
            )
            row = await cur.fetchone()
            if row is None:
                raise not_found("tweet", str(tweet_id), "tweet_id")
            if int(row[0]) != actor_id:
                raise PermissionDenied("only its author can delete a tweet", reason="NOT_AUTHOR")
            await cur.execute(
                f"SELECT id FROM tweets WHERE retweet_of_id = %s AND {_LIVE} ORDER BY id FOR UPDATE",
                (tweet_id,),
            )
            doomed = [tweet_id, *[int(r[0]) for r in await cur.fetchall()]]
            # Read before any is deleted: a retweet whose original is gone no longer hydrates.
            changed: dict[int, int] = {}
            counted: list[tuple[int, int, int]] = []
            events = [
                await self._delete_one(cur, t, changed, counted) for t in await self._hydrate(cur, doomed)
            ]
        # The deleted tweets' own entries go with their events (server.cache_on_relay); here the
        # tweets whose counts or reply_to_deleted changed, and the authors' counts.
        entries = self._cache.changed(changed) | self._cache.counted(counted)
        await self._outbox.relay(events, also=functools.partial(self._cache.put_in, entries=entries))

    async def _delete_one(
        self,
        cur: psycopg.AsyncCursor[Any],
        tweet: Tweet,
        changed: dict[int, int],
        counted: list[tuple[int, int, int]],
    ) -> Event:
        """Deletes one locked live tweet with its attachments and counts; returns its outbox event.
        Adds the other tweets it changes to `changed` (id -> version) and its author's count to
        `counted`."""
        tweet_id = tweet.tweet_id
        mentioned = await self._mentioned(cur, tweet_id, tweet.author_id)
        for table in ("mentions", "hashtags", "likes", "bookmarks", "tweet_versions"):
            await cur.execute(f"DELETE FROM {table} WHERE tweet_id = %s", (tweet_id,))
        # Every media it ever held goes with it (media_svc deletes them on the event).
        await cur.execute("DELETE FROM tweet_media WHERE tweet_id = %s RETURNING media_id", (tweet_id,))
        media_ids = tuple(sorted(int(r[0]) for r in await cur.fetchall()))
        await cur.execute(
            "UPDATE tweets SET delete_time = now(), text = '', like_count = 0, media_ids = '{}'"
            " WHERE id = %s",
            (tweet_id,),
        )
        changes = [
            # Its replies now show reply_to_deleted: their cached form is stale too.
            ("UPDATE tweets SET version = version WHERE reply_to_id = %s AND {live}", tweet_id),
            ("UPDATE tweets SET reply_count = reply_count - 1 WHERE id = %s", tweet.reply_to_tweet_id),
            ("UPDATE tweets SET retweet_count = retweet_count - 1 WHERE id = %s", tweet.retweet_of_tweet_id),
            ("UPDATE tweets SET quote_count = quote_count - 1 WHERE id = %s", tweet.quote_of_tweet_id),
        ]
        for sql, target in changes:
            if target is not None:
                await cur.execute(sql.format(live=_LIVE) + " RETURNING id, version", (target,))
                changed.update((int(r[0]), int(r[1])) for r in await cur.fetchall())
        counted.extend(await self._count(cur, [tweet.author_id], -1))
        return await self._outbox.add(
            cur, TWEETS_STREAM, self._tweet_event(TweetChange(tweet, True, mentioned, media_ids))
        )

    async def editable(self, tweet_id: int) -> Editable | None:
        async with self._pool.connection() as conn, conn.cursor() as cur:
            return await self._editable(cur, tweet_id, lock=False)

    async def _editable(self, cur: psycopg.AsyncCursor[Any], tweet_id: int, *, lock: bool) -> Editable | None:
        await cur.execute(
            "SELECT author_id, retweet_of_id IS NOT NULL, extract(epoch FROM now() - create_time), edit_count"
            f" FROM tweets WHERE id = %s AND {_LIVE}" + (" FOR UPDATE" if lock else ""),
            (tweet_id,),
        )
        row = await cur.fetchone()
        return None if row is None else Editable(int(row[0]), bool(row[1]), float(row[2]), int(row[3]))

    async def edited_with(self, tweet_id: int, request_id: str) -> bool:
        async with self._pool.connection() as conn, conn.cursor() as cur:
            return await self._edited_with(cur, tweet_id, request_id)

    async def edit(self, edit: TweetEdit, allowed: Callable[[Editable], None]) -> Tweet:
        try:
            return await self._edit(edit, allowed)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name != "tweet_versions_by_request_id":
                raise
            return await self._edit(edit, allowed)  # a concurrent retry committed first

    async def _edit(self, edit: TweetEdit, allowed: Callable[[Editable], None]) -> Tweet:
        tweet_id = edit.tweet_id
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The row lock orders edits of a tweet, and an edit against its deletion.
            locked = await self._editable(cur, tweet_id, lock=True)
            if locked is None:
                raise not_found("tweet", str(tweet_id), "tweet_id")
            key = edit.request_id if locked.author_id == edit.author_id else None  # the author's retry
            if key is not None and await self._edited_with(cur, tweet_id, key):
                (tweet,) = await self._hydrate(cur, [tweet_id])
                return tweet
            allowed(locked)
            (before,) = await self._hydrate(cur, [tweet_id])
            # The version it replaces is kept, with the key of the edit that replaced it.
            await cur.execute(
                "INSERT INTO tweet_versions (tweet_id, version_no, text, media_ids, write_time, request_id)"
                " SELECT id, edit_count, text, media_ids, COALESCE(edit_time, create_time), %s"
                " FROM tweets WHERE id = %s",
                (edit.request_id, tweet_id),
            )
            media = before.media if edit.media is None else edit.media
            await self._attach_media(cur, tweet_id, [m for m in media if m.media_id in edit.attached])
            await cur.executemany(
                "UPDATE tweet_media SET alt_text = %s WHERE media_id = %s AND tweet_id = %s",
                [(m.alt_text, m.media_id, tweet_id) for m in media if m.media_id not in edit.attached],
            )
            await cur.execute(
                "UPDATE tweets SET text = %s, media_ids = %s, edit_count = edit_count + 1, edit_time = now()"
                " WHERE id = %s RETURNING reply_to_author_id,"
                " (SELECT q.author_id FROM tweets q WHERE q.id = tweets.quote_of_id)",
                (edit.text, [m.media_id for m in media], tweet_id),
            )
            row = await cur.fetchone()
            assert row is not None
            # Mentions and hashtags follow the new text (the quoted and replied-to authors stay).
            previous = await self._mentioned(cur, tweet_id, edit.author_id)
            for table in ("mentions", "hashtags"):
                await cur.execute(f"DELETE FROM {table} WHERE tweet_id = %s", (tweet_id,))
            implicit = [int(a) for a in (row[1], row[0]) if a is not None]
            mentioned = await self._attach(
                cur, tweet_id, edit.author_id, edit.mentions, edit.hashtags, implicit
            )
            (tweet,) = await self._hydrate(cur, [tweet_id])
            change = TweetChange(tweet, False, mentioned, edit.attached, True, before.hashtags, previous)
            event = await self._outbox.add(cur, TWEETS_STREAM, self._tweet_event(change))
        # Its new form enters the cache with its event, at the row's new version: no reader sees the
        # old text after this (unless Redis misses this write: then for at most the entry's life).
        entries = self._cache.shown([tweet])
        await self._outbox.relay([event], also=functools.partial(self._cache.put_in, entries=entries))
        return tweet

    async def _edited_with(self, cur: psycopg.AsyncCursor[Any], tweet_id: int, request_id: str) -> bool:
        await cur.execute(
            "SELECT 1 FROM tweet_versions WHERE tweet_id = %s AND request_id = %s", (tweet_id, request_id)
        )
        return await cur.fetchone() is not None

    async def history(self, tweet_id: int) -> list[TweetVersion]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_HISTORY, {"id": tweet_id})
            rows = await cur.fetchall()
        return [TweetVersion(r[0], tuple(TweetMedia(**m) for m in r[2]), r[1]) for r in rows]

    async def retweet_of(self, original_id: int, actor_id: int) -> int | None:
        ids = await self._ids(
            f"SELECT id FROM tweets WHERE author_id = %s AND retweet_of_id = %s AND {_LIVE}",
            (actor_id, original_id),
        )
        return ids[0] if ids else None

    async def retweet(self, original_id: int, actor_id: int) -> int:
        try:
            return await self._retweet(original_id, actor_id)
        except psycopg.errors.UniqueViolation:
            # The same retweet committed concurrently: it is the answer.
            return await self._retweet(original_id, actor_id)

    async def _retweet(self, original_id: int, actor_id: int) -> int:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                f"SELECT id FROM tweets WHERE author_id = %s AND retweet_of_id = %s AND {_LIVE}",
                (actor_id, original_id),
            )
            if (row := await cur.fetchone()) is not None:
                return int(row[0])
            await cur.execute(
                "UPDATE tweets SET retweet_count = retweet_count + 1"
                f" WHERE id = %s AND {_LIVE} AND retweet_of_id IS NULL RETURNING id",
                (original_id,),
            )
            if await cur.fetchone() is None:
                raise not_found("tweet", str(original_id), "tweet_id")
            await cur.execute(
                "INSERT INTO tweets (author_id, text, retweet_of_id) VALUES (%s, '', %s) RETURNING id",
                (actor_id, original_id),
            )
            retweet_id = int((await cur.fetchone() or [0])[0])
            await self._count(cur, [actor_id], +1)
            (tweet,) = await self._hydrate(cur, [retweet_id])
            event = await self._outbox.add(cur, TWEETS_STREAM, self._tweet_event(TweetChange(tweet, False)))
        # The retweet, its original (with its new count) and both authors' counts, as just read.
        entries = self._cache.shown([tweet])
        await self._outbox.relay([event], also=functools.partial(self._cache.put_in, entries=entries))
        return retweet_id

    async def like(self, tweet_id: int, user_id: int) -> bool:
        try:
            return await self._change_like(tweet_id, user_id, liked=True)
        except _Rollback:
            return False

    async def unlike(self, tweet_id: int, user_id: int) -> bool:
        return await self._change_like(tweet_id, user_id, liked=False)

    async def _change_like(self, tweet_id: int, user_id: int, *, liked: bool) -> bool:
        """Adds or removes the like; the count and the LikeEvent change only if the like did, in one
        transaction, and the cached tweet goes stale at its new version. Whether the tweet is live."""
        change = (
            "INSERT INTO likes (tweet_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id"
            if liked
            else "DELETE FROM likes WHERE tweet_id = %s AND user_id = %s RETURNING id"
        )
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(change, (tweet_id, user_id))
            if (like := await cur.fetchone()) is None:
                return await self._is_live(cur, tweet_id)  # nothing changes
            # The row lock taken here orders this like after a concurrent delete, which it sees.
            await cur.execute(
                "UPDATE tweets SET like_count = like_count + %s"
                f" WHERE id = %s AND {_LIVE} RETURNING author_id, version",
                (1 if liked else -1, tweet_id),
            )
            if (tweet := await cur.fetchone()) is None:
                if liked:
                    raise _Rollback
                return False  # deleted: its likes went with it
            event = await self._outbox.add(
                cur,
                LIKES_STREAM,
                self._like_event(LikeChange(tweet_id, user_id, int(tweet[0]), int(like[0]), liked)),
            )
        entries = self._cache.changed({tweet_id: int(tweet[1])})
        await self._outbox.relay([event], also=functools.partial(self._cache.put_in, entries=entries))
        return True

    async def bookmark(self, tweet_id: int, user_id: int) -> bool:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The share lock orders this after a concurrent delete (which locks the row to update
            # it, and deletes the tweet's bookmarks): a deleted tweet is never bookmarked.
            await cur.execute(f"SELECT 1 FROM tweets WHERE id = %s AND {_LIVE} FOR SHARE", (tweet_id,))
            if await cur.fetchone() is None:
                return False
            await cur.execute(
                "INSERT INTO bookmarks (user_id, tweet_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, tweet_id),
            )
            return True

    async def unbookmark(self, tweet_id: int, user_id: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM bookmarks WHERE user_id = %s AND tweet_id = %s", (user_id, tweet_id)
            )

    async def bookmarked(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._pairs(
            "SELECT id, tweet_id FROM bookmarks WHERE user_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (user_id, _below(before), limit),
        )

    async def _is_live(self, cur: psycopg.AsyncCursor[Any], tweet_id: int) -> bool:
        await cur.execute(f"SELECT 1 FROM tweets WHERE id = %s AND {_LIVE}", (tweet_id,))
        return await cur.fetchone() is not None

    # -- reads ----------------------------------------------------------------------------------

    async def state(self, tweet_id: int) -> TweetState | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT author_id, delete_time IS NOT NULL, retweet_of_id FROM tweets WHERE id = %s",
                (tweet_id,),
            )
            row = await cur.fetchone()
        return TweetState(int(row[0]), bool(row[1]), _opt(row[2])) if row else None

    async def by_ids(self, tweet_ids: Sequence[int]) -> dict[int, Tweet]:
        if not tweet_ids:
            return {}
        async with self._pool.connection() as conn, conn.cursor() as cur:
            found = await self._hydrate(cur, tweet_ids)
        await self._cache.put(self._cache.shown(found))  # a reader's miss is rebuilt here
        return {t.tweet_id: t for t in found}

    async def _hydrate(self, cur: psycopg.AsyncCursor[Any], tweet_ids: Sequence[int]) -> list[Tweet]:
        """Live tweets by id; retweets with their live original (a retweet of a gone one is gone);
        quotes (retweeted ones too) with the tweet they quote when it is live. At most three
        queries: the tweets, the originals and quoted tweets they name, the tweets those quote."""
        tweets = await self._rows(cur, tweet_ids)
        named = {t.retweet_of_tweet_id or t.quote_of_tweet_id for t in tweets}
        found = {t.tweet_id: t for t in await self._rows(cur, [i for i in named if i is not None])}
        originals = [found[t.retweet_of_tweet_id] for t in tweets if t.retweet_of_tweet_id in found]
        quoted = {o.quote_of_tweet_id for o in originals} - set(found)
        found |= {t.tweet_id: t for t in await self._rows(cur, [i for i in quoted if i is not None])}

        def with_quoted(tweet: Tweet) -> Tweet:
            if tweet.quote_of_tweet_id is None:
                return tweet
            quoted = found.get(tweet.quote_of_tweet_id)
            return replace(tweet, quoted=quoted, quoted_deleted=quoted is None)

        out = []
        for tweet in tweets:
            if tweet.retweet_of_tweet_id is None:
                out.append(with_quoted(tweet))
            elif (original := found.get(tweet.retweet_of_tweet_id)) is not None:
                out.append(replace(tweet, retweeted=with_quoted(original)))
        return out

    async def _rows(self, cur: psycopg.AsyncCursor[Any], tweet_ids: Sequence[int]) -> list[Tweet]:
        if not tweet_ids:
            return []
        await cur.execute(_HYDRATE, (list(tweet_ids),))
        return [_tweet(r) for r in await cur.fetchall()]

    async def by_author(
        self, author_id: int, before: int | None, limit: int, *, lag_ok: bool = False
    ) -> list[int]:
        return await self._ids(
            f"SELECT id FROM tweets WHERE author_id = %s AND id < %s AND {_LIVE} ORDER BY id DESC LIMIT %s",
            (author_id, _below(before), limit),
            lag_ok=lag_ok,
        )

    async def quotes(self, tweet_id: int, before: int | None, limit: int) -> list[int]:
        return await self._ids(
            f"SELECT id FROM tweets WHERE quote_of_id = %s AND id < %s AND {_LIVE} ORDER BY id DESC LIMIT %s",
            (tweet_id, _below(before), limit),
        )

    async def thread_up(self, tweet_id: int, limit: int) -> list[ThreadNode]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_THREAD_UP, (tweet_id, limit))
            rows = await cur.fetchall()
        return [ThreadNode(int(r[0]), int(r[1]), _opt(r[2]), -int(r[3]), bool(r[4])) for r in rows]

    async def thread_down(
        self, tweet_id: int, author_id: int, max_depth: int, after: tuple[int, ...], limit: int
    ) -> list[ThreadNode]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _THREAD_DOWN, (author_id, tweet_id, author_id, max_depth, list(after), limit)
            )
            rows = await cur.fetchall()
        return [
            ThreadNode(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bool(r[4]), tuple(int(p) for p in r[5]))
            for r in rows
        ]

    async def replies(self, tweet_id: int, after: int | None, limit: int) -> list[int]:
        return await self._ids(
            f"SELECT id FROM tweets WHERE reply_to_id = %s AND id > %s AND {_LIVE} ORDER BY id LIMIT %s",
            (tweet_id, _above(after), limit),
        )

    async def liking_users(self, tweet_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._pairs(
            "SELECT id, user_id FROM likes WHERE tweet_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (tweet_id, _below(before), limit),
        )

    async def liked_tweets(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        return await self._pairs(
            "SELECT id, tweet_id FROM likes WHERE user_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (user_id, _below(before), limit),
        )

    async def mentioning(self, user_id: int, before: int | None, after: int | None, limit: int) -> list[int]:
        return await self._ids(
            "SELECT tweet_id FROM mentions WHERE user_id = %s AND tweet_id < %s AND tweet_id > %s"
            " ORDER BY tweet_id DESC LIMIT %s",
            (user_id, _below(before), _above(after), limit),
        )

    async def tagged(self, tag: str, before: int | None, limit: int) -> list[int]:
        return await self._ids(
            "SELECT tweet_id FROM hashtags WHERE tag = %s AND tweet_id < %s ORDER BY tweet_id DESC LIMIT %s",
            (tag, _below(before), limit),
            lag_ok=True,
        )

    async def public(self, before: int | None, after: int | None, limit: int) -> list[int]:
        return await self._ids(
            f"SELECT id FROM tweets WHERE {_LIVE_PUBLIC} AND id < %s AND id > %s ORDER BY id DESC LIMIT %s",
            (_below(before), _above(after), limit),
        )

    async def searchable(self, query: str) -> bool:
        async def read(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute("SELECT numnode(websearch_to_tsquery('english', %s)) > 0", (query,))
            row = await cur.fetchone()
            return bool(row and row[0])

        return await self._reads.run(read)

    async def search(
        self, query: str, after: tuple[float, int] | None, limit: int
    ) -> list[tuple[float, int]]:
        """Ranked matches in (rank, id) descending order, strictly below `after`. The rank is a
        float4 in SQL; its Python float round-trips exactly, so the cursor compares equal."""
        rank, tweet_id = after if after is not None else (float("inf"), _NO_UPPER_BOUND)

        async def read(conn: psycopg.AsyncConnection[Any]) -> list[tuple[float, int]]:
            cur = await conn.execute(
                "SELECT rank, id FROM ("
                "  SELECT ts_rank_cd(search, q) AS rank, id"
                "  FROM tweets, websearch_to_tsquery('english', %s) AS q"
                f"  WHERE search @@ q AND {_LIVE}"
                ") AS m WHERE (rank, id) < (%s::real, %s) ORDER BY rank DESC, id DESC LIMIT %s",
                (query, rank, tweet_id, limit),
            )
            return [(float(r[0]), int(r[1])) for r in await cur.fetchall()]

        return await self._reads.run(read)

    async def ids_by_authors(
        self, author_ids: Sequence[int], before: int | None, after: int | None, limit: int
    ) -> list[TweetRef]:
        """The newest `limit` live tweets of any of the authors in the id window. Each author
        contributes at most `limit` rows through its own index range, so the work is bounded by
        authors x limit however long their histories are."""
        if not author_ids:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT t.id, t.author_id, t.reply_to_author_id FROM unnest(%s::bigint[]) AS a(author_id)"
                " CROSS JOIN LATERAL (SELECT id, author_id, reply_to_author_id FROM tweets"
                f"   WHERE author_id = a.author_id AND id < %s AND id > %s AND {_LIVE}"
                "   ORDER BY id DESC LIMIT %s) t"
                " ORDER BY t.id DESC LIMIT %s",
                (list(author_ids), _below(before), _above(after), limit, limit),
            )
            return [TweetRef(int(r[0]), int(r[1]), _opt(r[2])) for r in await cur.fetchall()]

    async def media_tweets(self, media_ids: Sequence[int]) -> dict[int, int]:
        if not media_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT media_id, tweet_id FROM tweet_media WHERE media_id = ANY(%s)", (list(media_ids),)
            )
            return {int(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def tweet_counts(self, author_ids: Sequence[int]) -> dict[int, int]:
        if not author_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT author_id, tweets_count FROM author_stats WHERE author_id = ANY(%s)",
                (list(author_ids),),
            )
            return {int(r[0]): int(r[1]) for r in await cur.fetchall()}


class _Rollback(Exception):
    """Raised inside a transaction to undo it (psycopg rolls back on any exception)."""
