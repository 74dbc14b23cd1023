"""The benchmark's data: a power-law follow graph with a few celebrities, seeded tweets, sessions,
loaded straight into users_svc's and tweets_svc's schemas with COPY, and warm home timelines."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import LiteralString

import argon2
import numpy as np
import psycopg
from psycopg import sql

from meshkit.ids import EPOCH_MS, SEQUENCE_BITS
from social import CelebrityRegistry, State, TimelineStore
from social.homes import ID_BATCH

log = logging.getLogger("bench")

MEAN_FOLLOWING = 74  # the Pew figure DESIGN.md cites: the mean account follows 74 others
MAX_FOLLOWING = 5000  # Twitter's historic follow limit
_DAY_MS = 86_400_000
BENCH_PASSWORD = "bench password"


@dataclass(frozen=True, slots=True)
class Size:
    name: str
    users: int
    # Follower counts of the celebrities, largest first (a fraction of all users each).
    celebrity_shares: tuple[float, ...]
    tweets_per_user: int
    seconds: float  # how long each throughput workload runs
    streams: int  # open live streams in the delivery workload
    live_posts: int  # posts in the live-delivery workload (at `live_rate` per second)
    live_rate: int
    fanout_posts: int  # posts by well-followed authors in the fan-out workload
    celebrity_posts: int
    warm_users: int  # home timelines built in Redis before the workloads (the rest start cold)
    # CELEBRITY_FOLLOWERS for the mesh, when the service default is out of this size's reach.
    celebrity_followers: int | None = None
    readers: int = 1000  # distinct viewers of the home-read workload
    # When set, instead of the first warm_users: home timelines are built for these shares of all
    # users, one after another, and Redis's used_memory is taken after each.
    warm_shares: tuple[float, ...] = ()


SIZES = {
    # Each timed run lasts 3 s: under a loaded machine a 1 s h2load run could end with no call answered.
    # tiny builds its timelines share by share as large does (the smoke test goes that way).
    "tiny": Size(
        "tiny",
        300,
        (0.9, 0.5),
        3,
        3.0,
        20,
        20,
        50,
        5,
        3,
        300,
        celebrity_followers=150,
        readers=30,
        warm_shares=(0.1, 0.3, 1.0),
    ),
    "small": Size("small", 10_000, (0.999, 0.5, 0.25), 5, 8.0, 1000, 2500, 500, 60, 20, 10_000),
    "medium": Size("medium", 100_000, (0.999, 0.5, 0.2), 5, 12.0, 2000, 5000, 500, 60, 20, 30_000),
    # Every home timeline warm in the end (10% and 30% on the way, for Redis's memory at each).
    "large": Size(
        "large",
        1_000_000,
        (0.999999, 0.5, 0.1),
        5,
        15.0,
        2000,
        5000,
        500,
        40,
        20,
        1_000_000,
        warm_shares=(0.1, 0.3, 1.0),
    ),
}


def snowflakes(start_ms: int, count: int, spacing_ms: float) -> np.ndarray:
    """`count` increasing ids in the project's layout (meshkit.ids), `spacing_ms` apart on average,
    in the past so that they can never collide with ids the services make from now on."""
    offsets = np.arange(count, dtype=np.float64) * spacing_ms
    ms = (start_ms - EPOCH_MS + offsets.astype(np.int64)).astype(np.int64)
    return (ms << SEQUENCE_BITS) | (np.arange(count, dtype=np.int64) & ((1 << SEQUENCE_BITS) - 1))


@dataclass
class Dataset:
    size: Size
    user_ids: np.ndarray  # int64, index = user number
    follower: np.ndarray  # edge arrays (user numbers)
    followee: np.ndarray
    tweet_ids: np.ndarray  # int64, increasing
    tweet_authors: np.ndarray  # user numbers
    followers_count: np.ndarray = field(init=False)
    following_count: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        self.followers_count = np.bincount(self.followee, minlength=n)
        self.following_count = np.bincount(self.follower, minlength=n)
        if np.any(np.diff(self.tweet_ids) <= 0):
            raise ValueError("tweet ids must increase: a tweet's position is then its order")

    def celebrities(self) -> list[int]:
        """User numbers of the celebrities, most followed first."""
        count = len(self.size.celebrity_shares)
        return [int(i) for i in np.argsort(-self.followers_count, kind="stable")[:count]]

    def user_with_followers(self, wanted: int, exclude: Iterable[int] = ()) -> int:
        """The user whose follower count is closest to `wanted`."""
        gap = np.abs(self.followers_count - wanted).astype(np.float64)
        for u in exclude:
            gap[u] = np.inf
        return int(np.argmin(gap))

    def well_followed(self, count: int, below: int) -> list[int]:
        """The `count` most followed users with fewer than `below` followers (ordinary authors)."""
        order = np.argsort(-self.followers_count, kind="stable")
        return [int(u) for u in order if self.followers_count[u] < below][:count]

    def followers_of(self, user: int) -> np.ndarray:
        order, starts = self._by_followee
        return np.asarray(self.follower[order[starts[user] : starts[user + 1]]], dtype=np.int64)

    @functools.cached_property
    def _by_followee(self) -> tuple[np.ndarray, np.ndarray]:
        return _grouped(self.followee, len(self.user_ids))

    @functools.cached_property
    def by_follower(self) -> tuple[np.ndarray, np.ndarray]:
        """The follows grouped by follower: (edge numbers, where each follower's begin)."""
        return _grouped(self.follower, len(self.user_ids))

    @functools.cached_property
    def by_author(self) -> tuple[np.ndarray, np.ndarray]:
        """The tweets grouped by author, oldest first: (tweet numbers, where each author's begin)."""
        return _grouped(self.tweet_authors, len(self.user_ids))


def _grouped(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions of `keys` ordered by key (stable: each key's in their order), and where each of
    the keys 0..count-1 begins among them (count + 1 offsets)."""
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(count + 1))


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: starts[i], starts[i] + 1, ... (counts[i] of them), for every i."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(int(ends[-1]) if len(ends) else 0)


def _union(keys: np.ndarray, more: np.ndarray) -> np.ndarray:
    """np.union1d of sorted, distinct `keys` and `more`, without sorting `keys` again: a stable
    sort of the two sorted runs merges them in linear time (union1d sorted all 74M keys each round,
    minutes at the large size). No np.unique: its hash table is slower than a sort at 74M."""
    merged = np.concatenate([keys, np.sort(more)])
    merged.sort(kind="stable")
    distinct = np.ones(len(merged), dtype=bool)
    distinct[1:] = merged[1:] != merged[:-1]
    return merged[distinct]


def generate(size: Size, seed: int = 5) -> Dataset:
    """Followings per user are lognormal with a mean of 74 (heavy-tailed, capped at 5,000); whom
    they follow is Zipf-distributed over a random ranking of users (popularity is a power law);
    the celebrities are then followed by their share of everyone."""
    rng = np.random.default_rng(seed)
    n = size.users
    now_ms = int(time.time() * 1000)
    user_ids = snowflakes(now_ms - 60 * _DAY_MS, n, 1.0)
    sigma = 1.0
    mu = np.log(MEAN_FOLLOWING) - sigma**2 / 2
    wanted = np.clip(rng.lognormal(mu, sigma, n).round().astype(np.int64), 1, min(MAX_FOLLOWING, n - 1))
    rank_weight = 1.0 / np.arange(1, n + 1, dtype=np.float64)
    popularity = rank_weight[rng.permutation(n)]
    popularity /= popularity.sum()
    keys = np.zeros(0, dtype=np.int64)
    for rank, share in enumerate(size.celebrity_shares):
        fans = rng.choice(n, size=min(int(share * n), n - 1), replace=False).astype(np.int64)
        keys = _union(keys, fans * n + rank)
    # Popular users are drawn again and again: top each user up until the distinct follows reach
    # what they wanted (a few rounds get within a fraction of a percent).
    for _ in range(6):
        have = np.bincount(keys // n, minlength=n)
        short = np.clip(wanted - have, 0, None)
        if short.sum() == 0:
            break
        follower = np.repeat(np.arange(n, dtype=np.int64), short)
        followee = rng.choice(n, size=len(follower), p=popularity).astype(np.int64)
        keep = follower != followee
        keys = _union(keys, follower[keep] * n + followee[keep])
    follower, followee = keys // n, keys % n
    keep = follower != followee
    follower, followee = follower[keep], followee[keep]
    tweets = n * size.tweets_per_user
    tweet_ids = snowflakes(now_ms - 7 * _DAY_MS, tweets, 6 * _DAY_MS / max(tweets, 1))
    tweet_authors = rng.integers(0, n, size=tweets, dtype=np.int64)
    return Dataset(size, user_ids, follower, followee, tweet_ids, tweet_authors)


@dataclass
class Phases:
    """Seconds spent in each named phase of the setup, logged as each ends."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - started, 2)
        log.info("setup: %s: %.1f s", name, self.seconds[name])


# The tables the load fills. It writes into them right after TRUNCATE in its transaction, so that
# COPY FREEZE can write their rows frozen and all-visible: no later VACUUM rewrites 74M rows to set
# their hint bits, and index-only scans of the follows find their pages all-visible at once.
LOADED_TABLES = ("users.users", "users.follows", "tweets.tweets", "tweets.author_stats")
# Tables whose indexes and keys are built after their rows are in (see _indexes_built_after).
INDEXED_AFTER = ("users.users", "users.follows", "tweets.tweets")
_COPY_ROWS = 1_000_000  # rows per write of a binary COPY (~40 MB)
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_BINARY_TRAILER = b"\xff\xff"


def _copy(conn: psycopg.Connection[tuple[object, ...]], statement: str, lines: Iterator[str]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        while batch := list(itertools.islice(lines, 50_000)):
            copy.write("".join(batch))


def _copy_bigints(
    conn: psycopg.Connection[tuple[object, ...]], statement: str, columns: Sequence[np.ndarray]
) -> None:
    """COPY ... (FORMAT BINARY) of bigint columns straight from numpy arrays: no Python object per
    value (text rows for 74M follows took gigabytes of Python integers and minutes)."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for number in range(len(columns)):
        fields += [(f"length{number}", ">i4"), (f"value{number}", ">i8")]
    row = np.dtype(fields)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(_BINARY_HEADER)
        for start in range(0, len(columns[0]), _COPY_ROWS):
            part = [column[start : start + _COPY_ROWS] for column in columns]
            rows = np.empty(len(part[0]), dtype=row)
            rows["count"] = len(columns)
            for number, values in enumerate(part):
                rows[f"length{number}"] = 8
                rows[f"value{number}"] = values
            copy.write(rows.tobytes())
        copy.write(_BINARY_TRAILER)


def _iso(ident: int) -> str:
    ms = (ident >> SEQUENCE_BITS) + EPOCH_MS
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+00"


def _table(name: str) -> sql.Identifier:
    schema, table = name.split(".")
    return sql.Identifier(schema, table)


def _named_definitions(
    conn: psycopg.Connection[tuple[object, ...]], query: LiteralString, table: str
) -> list[tuple[str, str]]:
    return [(str(name), str(definition)) for name, definition in conn.execute(query, {"t": table})]


@contextlib.contextmanager
def _indexes_built_after(
    conn: psycopg.Connection[tuple[object, ...]], table: str, phases: Phases
) -> Iterator[None]:
    """Drops the indexes of `table` and its keys (primary, unique, foreign) that no other table's
    foreign key depends on, and after the body makes them again from the definitions the catalog
    had: one sort per index instead of an insertion per row into each, and each foreign key
    checked by one join instead of two lookups per row."""
    constraints = _named_definitions(
        conn,
        """
        SELECT c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.conrelid = %(t)s::regclass AND (c.contype = 'f' OR (c.contype IN ('p', 'u') AND NOT EXISTS (
            SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)))
        ORDER BY c.contype = 'f' DESC, c.conname
        """,
        table,
    )
    indexes = _named_definitions(
        conn,
        """
        SELECT x.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
        WHERE i.indrelid = %(t)s::regclass AND NOT EXISTS (
            SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
            AND c.contype IN ('p', 'u', 'x'))
        ORDER BY 1
        """,
        table,
    )
    for name, _ in constraints:  # the foreign keys first: a key that one uses goes after it
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(_table(table), sql.Identifier(name)))
    schema = table.partition(".")[0]
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
    yield
    # The catalog's own definitions, as text: psycopg takes a query from a runtime string as bytes.
    for name, definition in indexes:
        with phases.timed(f"{table}: index {name}"):
            conn.execute(definition.encode())
    for name, definition in reversed(constraints):  # keys first, then the foreign keys using them
        with phases.timed(f"{table}: constraint {name}"):
            query = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(_table(table), sql.Identifier(name))
            conn.execute(query.as_bytes(conn) + definition.encode())


def load_postgres(data: Dataset, database_url: str, phases: Phases) -> None:
    """COPYs users, follows, tweets and per-author counts into an empty, migrated database, in one
    transaction: the tables stay logged, so what is loaded is durable once it commits (UNLOGGED
    tables made LOGGED afterwards would be written twice: SET LOGGED copies the whole table into
    the WAL). The big tables get their indexes and keys after their rows (_indexes_built_after)."""
    ids = data.user_ids.tolist()
    # One real argon2id hash shared by every account (hashing a million is pointless work).
    password_hash = argon2.PasswordHasher().hash(BENCH_PASSWORD)
    followers_count, following_count = data.followers_count.tolist(), data.following_count.tolist()
    with psycopg.connect(database_url) as conn:
        conn.execute("SET synchronous_commit = off")
        # Index builds sort in memory up to this (shared by the parallel workers), and the check of
        # a foreign key that is added hashes with it.
        conn.execute("SET maintenance_work_mem = '1GB'")
        for table in LOADED_TABLES:
            row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(_table(table))).fetchone()
            if row is None or row[0]:
                raise RuntimeError(f"{table} is not empty: the benchmark loads into an empty database")
        # Empty, so CASCADE takes out nothing (it names the tables whose foreign keys point here).
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(map(_table, LOADED_TABLES))))
        with contextlib.ExitStack() as later:
            for table in INDEXED_AFTER:
                later.enter_context(_indexes_built_after(conn, table, phases))
            with phases.timed("COPY users"):
                _copy(
                    conn,
                    "COPY users.users (id, handle, display_name, password_hash, followers_count,"
                    " following_count) FROM STDIN (FREEZE)",
                    (
                        f"{ids[u]}\tb{u}\tBench user {u}\t{password_hash}"
                        f"\t{followers_count[u]}\t{following_count[u]}\n"
                        for u in range(len(ids))
                    ),
                )
            with phases.timed("COPY follows"):
                follow_ids = snowflakes(int(time.time() * 1000) - 30 * _DAY_MS, len(data.follower), 0.01)
                _copy_bigints(
                    conn,
                    "COPY users.follows (id, follower_id, followee_id) FROM STDIN (FORMAT BINARY, FREEZE)",
                    [follow_ids, data.user_ids[data.follower], data.user_ids[data.followee]],
                )
            with phases.timed("COPY tweets"):
                _copy(
                    conn,
                    "COPY tweets.tweets (id, author_id, text, create_time) FROM STDIN (FREEZE)",
                    (
                        f"{t}\t{ids[a]}\tseeded tweet {t}\t{_iso(t)}\n"
                        for t, a in zip(data.tweet_ids.tolist(), data.tweet_authors.tolist(), strict=True)
                    ),
                )
            with phases.timed("COPY author_stats"):
                counts = np.bincount(data.tweet_authors, minlength=len(ids)).tolist()
                _copy(
                    conn,
                    "COPY tweets.author_stats (author_id, tweets_count) FROM STDIN (FREEZE)",
                    (f"{ids[u]}\t{c}\n" for u, c in enumerate(counts) if c),
                )
        with phases.timed("commit"):
            conn.commit()
        conn.autocommit = True
        with phases.timed("ANALYZE"):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(map(_table, LOADED_TABLES))))
        # What the load left dirty is written now, not by a checkpoint during the workloads.
        with phases.timed("CHECKPOINT"):
            conn.execute("CHECKPOINT")


def postgres_bytes(database_url: str) -> dict[str, dict[str, int]]:
    """The on-disk size of every table of the services' schemas: its rows (with TOAST) and indexes."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT n.nspname || '.' || c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1
            """
        ).fetchall()
    return {name: {"table": int(table), "indexes": int(indexes)} for name, table, indexes in rows}


async def create_sessions(data: Dataset, users: list[int], database_url: str) -> list[str]:
    """A bearer token for each user number, stored as users_svc stores them (hashed in PostgreSQL).
    The Redis session cache (meshkit.auth) fills itself at first use, as it does in production,
    where an entry lives SESSION_CACHE_SECONDS: the bench's warm-up makes each reader's and
    author's first call, which asks users_svc."""
    expire = int(time.time()) + 7 * 86_400
    tokens = ["tm_" + secrets.token_urlsafe(32) for _ in users]
    ids = [int(data.user_ids[u]) for u in users]
    copy_sessions = "COPY users.sessions (token_hash, user_id, expire_time) FROM STDIN"
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(copy_sessions) as copy,
    ):
        for token, user_id in zip(tokens, ids, strict=True):
            await copy.write_row((hashlib.sha256(token.encode()).digest(), user_id, _epoch(expire)))
    return tokens


def _epoch(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(seconds))


async def register_celebrities(
    data: Dataset, lists: TimelineStore, registry: CelebrityRegistry, celebrity_followers: int
) -> np.ndarray:
    """Makes every author with at least `celebrity_followers` followers a celebrity in the registry
    with its own list built, as hybrid fan-out would have them; returns who is one (a mask)."""
    celebrity = data.followers_count >= celebrity_followers
    order, starts = data.by_author
    for author in np.flatnonzero(celebrity).tolist():
        author_id = int(data.user_ids[author])
        await registry.set(author_id, State.CELEBRITY)
        newest = data.tweet_ids[order[starts[author] : starts[author + 1]]][-lists.max_entries :]
        begun = await lists.begin_rebuild(author_id)
        # As a rebuild finds it: complete when the author has fewer tweets than a rebuild asks for.
        complete = starts[author + 1] - starts[author] < min(lists.max_entries, ID_BATCH)
        await lists.finish_rebuild(author_id, newest.tolist(), (), begun, complete=bool(complete))
    return celebrity


async def warm_home_timelines(
    data: Dataset, timelines: TimelineStore, users: np.ndarray, celebrity: np.ndarray
) -> int:
    """Stores the home timelines of `users` (user numbers) in Redis as a rebuild from PostgreSQL
    would leave them with hybrid fan-out on: each holds its owner's tweets and those of the
    non-celebrities they follow, the newest a rebuild keeps, and a marker for each celebrity
    (`celebrity`, a mask) they follow (never marked complete: a rebuild does not mark home
    timelines). Built with numpy a chunk of users at a time and written in pipelines (a
    rebuild's two calls per user took minutes for a million). Returns how many tweet entries the
    timelines hold."""
    written = 0
    for start in range(0, len(users), _WARM_CHUNK):
        contents = _home_timelines(data, users[start : start + _WARM_CHUNK], celebrity, timelines)
        await timelines.store_built((owner, packed) for owner, packed, _ in contents)
        written += sum(entries for _, _, entries in contents)
    return written


_WARM_CHUNK = 20_000  # users whose timelines are built at once (a few hundred MB of numpy arrays)


def _home_timelines(
    data: Dataset, users: np.ndarray, celebrity: np.ndarray, timelines: TimelineStore
) -> list[tuple[int, bytes, int]]:
    """(user id, packed contents, tweet entries) of each of `users`' home timelines."""
    count = len(users)
    follow_order, follow_starts = data.by_follower
    tweet_order, tweet_starts = data.by_author
    # Whom each follows (their numbers 0..count-1 here: `owner`), celebrities apart.
    following = follow_starts[users + 1] - follow_starts[users]
    followee = data.followee[follow_order[_ranges(follow_starts[users], following)]]
    owner = np.repeat(np.arange(count), following)
    famous = celebrity[followee]
    markers = np.bincount(owner[famous], minlength=count)
    # Every tweet of each one's sources (themselves and the non-celebrities they follow), ordered
    # by owner, then by age (a tweet's number is its order: Dataset.tweet_ids increase).
    sources = np.concatenate([followee[~famous], users])
    source_owner = np.concatenate([owner[~famous], np.arange(count)])
    tweet_count = np.diff(tweet_starts)
    tweets = tweet_count[sources]
    tweet = tweet_order[_ranges(tweet_starts[sources], tweets)]
    ordered = np.sort(np.repeat(source_owner, tweets) * len(data.tweet_ids) + tweet)
    tweet_owner, tweet = np.divmod(ordered, len(data.tweet_ids))
    # What a rebuild keeps: the newest max_entries; if the markers take it past that, the trim's.
    found = np.bincount(tweet_owner, minlength=count)
    kept = np.minimum(found, timelines.max_entries)
    kept = np.where(kept + markers > timelines.max_entries, np.minimum(kept, timelines.trimmed_to), kept)
    from_newest = np.cumsum(found)[tweet_owner] - np.arange(len(tweet))
    ids = data.tweet_ids[tweet[from_newest <= kept[tweet_owner]]].astype(">i8").tobytes()
    marks = (-data.user_ids[followee[famous]]).astype(">i8").tobytes()
    id_ends, mark_ends = 8 * np.cumsum(kept), 8 * np.cumsum(markers)
    return [
        (
            int(data.user_ids[user]),
            ids[id_end - 8 * k : id_end] + marks[mark_end - 8 * m : mark_end],
            k,
        )
        for user, k, m, id_end, mark_end in zip(
            users.tolist(), kept.tolist(), markers.tolist(), id_ends.tolist(), mark_ends.tolist(), strict=True
        )
    ]
