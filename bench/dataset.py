"""The benchmark's data: a power-law follow graph with a few celebrities, seeded tweets, sessions,
loaded straight into users_svc's and tweets_svc's schemas with COPY, and warm home timelines."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import argon2
import numpy as np
import psycopg

from meshkit.ids import EPOCH_MS, SEQUENCE_BITS
from social import CelebrityRegistry, State, TimelineStore
from social.homes import ID_BATCH

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


SIZES = {
    # Each timed run lasts 3 s: under a loaded machine a 1 s h2load run could end with no call answered.
    "tiny": Size("tiny", 300, (0.9, 0.5), 3, 3.0, 20, 20, 50, 5, 3, 300, celebrity_followers=150, readers=30),
    "small": Size("small", 10_000, (0.999, 0.5, 0.25), 5, 8.0, 1000, 2500, 500, 60, 20, 10_000),
    "medium": Size("medium", 100_000, (0.999, 0.5, 0.2), 5, 12.0, 2000, 5000, 500, 60, 20, 30_000),
    "large": Size("large", 1_000_000, (0.999999, 0.5, 0.1), 5, 15.0, 2000, 5000, 500, 40, 20, 30_000),
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
        return np.asarray(self.follower[self.followee == user], dtype=np.int64)


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
        keys = np.union1d(keys, fans * n + rank)
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
        keys = np.union1d(keys, follower[keep] * n + followee[keep])
    follower, followee = keys // n, keys % n
    keep = follower != followee
    follower, followee = follower[keep], followee[keep]
    tweets = n * size.tweets_per_user
    tweet_ids = snowflakes(now_ms - 7 * _DAY_MS, tweets, 6 * _DAY_MS / max(tweets, 1))
    tweet_authors = rng.integers(0, n, size=tweets, dtype=np.int64)
    return Dataset(size, user_ids, follower, followee, tweet_ids, tweet_authors)


def _copy(conn: psycopg.Connection[tuple[object, ...]], statement: str, lines: Iterator[str]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        while batch := list(itertools.islice(lines, 50_000)):
            copy.write("".join(batch))


def _iso(ident: int) -> str:
    ms = (ident >> SEQUENCE_BITS) + EPOCH_MS
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+00"


def load_postgres(data: Dataset, database_url: str) -> None:
    """COPYs users, follows, tweets and per-author counts into an empty, migrated database."""
    ids = data.user_ids.tolist()
    # One real argon2id hash shared by every account (hashing a million is pointless work).
    password_hash = argon2.PasswordHasher().hash(BENCH_PASSWORD)
    followers_count, following_count = data.followers_count.tolist(), data.following_count.tolist()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        _copy(
            conn,
            "COPY users.users (id, handle, display_name, password_hash, followers_count, following_count)"
            " FROM STDIN",
            (
                f"{ids[u]}\tb{u}\tBench user {u}\t{password_hash}"
                f"\t{followers_count[u]}\t{following_count[u]}\n"
                for u in range(len(ids))
            ),
        )
        follow_ids = snowflakes(int(time.time() * 1000) - 30 * _DAY_MS, len(data.follower), 0.01).tolist()
        _copy(
            conn,
            "COPY users.follows (id, follower_id, followee_id) FROM STDIN",
            (
                f"{f}\t{ids[a]}\t{ids[b]}\n"
                for f, a, b in zip(follow_ids, data.follower.tolist(), data.followee.tolist(), strict=True)
            ),
        )
        _copy(
            conn,
            "COPY tweets.tweets (id, author_id, text, create_time) FROM STDIN",
            (
                f"{t}\t{ids[a]}\tseeded tweet {t}\t{_iso(t)}\n"
                for t, a in zip(data.tweet_ids.tolist(), data.tweet_authors.tolist(), strict=True)
            ),
        )
        counts = np.bincount(data.tweet_authors, minlength=len(ids)).tolist()
        _copy(
            conn,
            "COPY tweets.author_stats (author_id, tweets_count) FROM STDIN",
            (f"{ids[u]}\t{c}\n" for u, c in enumerate(counts) if c),
        )
        conn.execute("ANALYZE users.users, users.follows, tweets.tweets, tweets.author_stats")


async def create_sessions(data: Dataset, users: list[int], database_url: str) -> list[str]:
    """A bearer token for each user number, stored as users_svc stores them (hashed in PostgreSQL).
    The Redis session cache (meshkit.auth) fills itself at first use, as it does in production,
    where an entry lives SESSION_CACHE_SECONDS: a cache written here for days would measure reads
    that never ask users_svc about a token, which is not what the services do."""
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


async def warm_home_timelines(
    data: Dataset,
    timelines: TimelineStore,
    users: Iterable[int],
    *,
    lists: TimelineStore,
    registry: CelebrityRegistry,
    celebrity_followers: int,
) -> int:
    """Builds the home timelines of `users` in Redis through social.timelines, from the generated
    data, as a rebuild from PostgreSQL would find them with hybrid fan-out on: every author with at
    least `celebrity_followers` followers is a celebrity in the registry with its own list, and the
    timelines of its followers hold its marker instead of its tweets. Returns how many entries it
    wrote into the home timelines."""
    n = len(data.user_ids)
    order = np.argsort(data.tweet_authors, kind="stable")
    starts = np.searchsorted(data.tweet_authors[order], np.arange(n + 1))
    by_author = [data.tweet_ids[order[starts[a] : starts[a + 1]]] for a in range(n)]
    follow_order = np.argsort(data.follower, kind="stable")
    follow_starts = np.searchsorted(data.follower[follow_order], np.arange(n + 1))
    celebrities = {int(u) for u in np.flatnonzero(data.followers_count >= celebrity_followers)}
    for author in sorted(celebrities):
        author_id = int(data.user_ids[author])
        await registry.set(author_id, State.CELEBRITY)
        begun = await lists.begin_rebuild(author_id)
        # As a rebuild finds it: complete when the author has fewer tweets than a rebuild asks for.
        own = by_author[author]
        complete = len(own) < min(lists.max_entries, ID_BATCH)
        kept = own[-lists.max_entries :].tolist()
        await lists.finish_rebuild(author_id, kept, (), begun, complete=complete)
    written = 0
    for user in users:
        followed = data.followee[follow_order[follow_starts[user] : follow_starts[user + 1]]].tolist()
        merged = [int(data.user_ids[f]) for f in followed if f in celebrities]
        sources = [user, *(f for f in followed if f not in celebrities)]
        newest = np.sort(np.concatenate([by_author[s] for s in sources]))[-timelines.max_entries :]
        # Built as a rebuild builds it: begun, then finished (which clears the REBUILDING flag; a
        # timeline left flagged is read from PostgreSQL on every read, which is not what warm reads
        # should measure).
        begun = await timelines.begin_rebuild(int(data.user_ids[user]))
        await timelines.finish_rebuild(int(data.user_ids[user]), newest.tolist(), merged, begun)
        written += len(newest)
    return written
