"""In-memory fakes of the protocols the services' rules depend on, for the unit tests of pure logic
(tests that cross a process use the real PostgreSQL, Redis and services). One fake per protocol,
shared by every unit test; each keeps what it was told in plain attributes a test can read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence

from meshkit.auth import Session
from social import Relation, Snapshot, State, TweetRef
from social.timelines import FanoutJob, JobOutcome
from timeline_svc.stream import Delivery
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb


class FakeFollowGraph:
    """users_svc's follow graph: `followers[user]` lists who follows `user`, paged `page` at a time."""

    def __init__(self, followers: dict[int, list[int]] | None = None, *, page: int = 2) -> None:
        self.followers = followers if followers is not None else {}
        self._page = page

    @classmethod
    def of_following(cls, following: dict[int, list[int]]) -> FakeFollowGraph:
        """The graph in which each user follows the users listed for them."""
        followers: dict[int, list[int]] = {}
        for follower, followees in following.items():
            for followee in followees:
                followers.setdefault(followee, []).append(follower)
        return cls(followers)

    async def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]:
        # Like users_svc, at least one page, empty for a user nobody follows.
        ids = self.followers.get(user_id, [])
        for start in range(0, max(len(ids), 1), self._page):
            yield ids[start : start + self._page]

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        return [c for c in candidates if c in self.followers.get(user_id, [])]

    async def following(self, user_id: int) -> list[int]:
        return [u for u, followers in self.followers.items() if user_id in followers]

    async def followers_count(self, user_id: int) -> int:
        return len(self.followers.get(user_id, []))

    async def join_follower_lists(self, user_id: int) -> None:
        pass  # the lists follow the graph: see FakeFollowerLists


class FakeFollowerLists:
    """users_svc's follower lists as fan-out sees them (social.follower_lists): each author's list
    is their followers in `graph`, except the lists in `missing` until ensure_follower_lists builds
    them; `ensured` and `synced` record what was asked."""

    def __init__(self, graph: FakeFollowGraph, missing: Iterable[int] = ()) -> None:
        self.graph = graph
        self.missing = set(missing)
        self.ensured: list[list[int]] = []
        self.synced: list[tuple[int, int]] = []

    def of(self, author_id: int) -> list[int]:
        return self.graph.followers.get(author_id, [])

    async def ensure_follower_lists(self, author_ids: Sequence[int]) -> None:
        self.ensured.append(list(author_ids))
        self.missing.difference_update(author_ids)

    async def sync_follow(self, follower_id: int, followee_id: int) -> None:
        self.synced.append((follower_id, followee_id))


class FakeTweetIndex:
    """tweets_svc as its peers see it: tweets by author (ids), `replies_to` a reply's replied-to
    author, `retweets` a retweet's original, `mentions` the tweets mentioning a user, `deleted`
    the ids that are gone. Hydrated tweets are the strings "tweet-<id>"; `hydrated` records how
    many ids each hydration asked for."""

    def __init__(
        self,
        by_author: dict[int, list[int]],
        *,
        replies_to: dict[int, int] | None = None,
        retweets: dict[int, int] | None = None,
        mentions: dict[int, list[int]] | None = None,
        deleted: Iterable[int] = (),
    ) -> None:
        self.by_author = by_author
        self.replies_to = replies_to or {}
        self.retweets = retweets or {}
        self.mentions = mentions or {}
        self.deleted = set(deleted)
        self.hydrated: list[int] = []

    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]:
        refs = sorted(
            (TweetRef(t, a, self.replies_to.get(t)) for a in author_ids for t in self.by_author.get(a, [])),
            key=lambda r: -r.tweet_id,
        )
        return [r for r in refs if _between(r.tweet_id, before, after)][:limit]

    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        refs = await self.refs_by_authors(author_ids, before=before, after=after, limit=limit)
        return [r.tweet_id for r in refs]

    async def mention_ids(
        self, user_id: int, *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        ids = sorted(self.mentions.get(user_id, []), reverse=True)
        return [t for t in ids if _between(t, before, after)][:limit]

    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, str]:
        self.hydrated.append(len(tweet_ids))
        return {t: f"tweet-{t}" for t in tweet_ids if t not in self.deleted}

    def original_of(self, tweet: str) -> int | None:
        return self.retweets.get(int(tweet.removeprefix("tweet-")))


def _between(tweet_id: int, before: int | None, after: int | None) -> bool:
    return (before is None or tweet_id < before) and (after is None or tweet_id > after)


class FakeTimelineStore:
    """social.timelines.TimelineStore: `lines[user]` the tweet ids of each timeline that exists,
    `markers[user]` the celebrities it merges, `rebuilding` those flagged; at most `max_entries`
    ids are kept (the oldest go). Fan-out (`fan_out`, what the script does, on the followers in
    `follower_lists`): `retracted` lists the timelines told of a deletion, `edited` (tweet id, user)
    those told of an edit, `others` the other timelines written as (key, tweet id, deleted),
    `announced` what announce channels were told as (tweet id, deleted), `announced_edits` the ids
    announced as edited; `rebuilds` counts the rebuilds begun."""

    def __init__(
        self,
        existing: Iterable[int] = (),
        *,
        max_entries: int = 800,
        follower_lists: FakeFollowerLists | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.follower_lists = follower_lists
        self.lines: dict[int, set[int]] = {u: set() for u in existing}
        self.markers: dict[int, set[int]] = {u: set() for u in self.lines}
        self.rebuilding: set[int] = set()
        self.complete: set[int] = set()  # timelines that hold every id of their sources
        self.rebuilds = 0
        self.retracted: list[int] = []
        self.others: list[tuple[str, int, bool]] = []
        self.announced: list[tuple[int, bool]] = []
        self.edited: list[tuple[int, int]] = []
        self.announced_edits: list[int] = []
        self._begun: dict[int, bytes] = {}

    async def fan_out(self, jobs: Sequence[FanoutJob], budget: int = 2000) -> list[JobOutcome]:
        return [self._fan_out(job) for job in jobs]

    def _fan_out(self, job: FanoutJob) -> JobOutcome:
        lists = self.follower_lists
        needed = [a for a in (job.followers_of, job.among) if a is not None]
        if any(lists is None or a in lists.missing for a in needed):
            return JobOutcome(missing=True)
        followers: list[int] = []
        if lists is not None and job.followers_of is not None:
            followers = [
                f for f in lists.of(job.followers_of) if job.among is None or f in lists.of(job.among)
            ]
        written = 0
        for user_id in dict.fromkeys([*job.homes, *followers]):
            if job.edited:
                self.edited.append((job.tweet_id, user_id))
            elif (line := self.lines.get(user_id)) is not None:
                written += 1
                if job.deleted:
                    line.discard(job.tweet_id)
                else:
                    line.add(job.tweet_id)
                    for oldest in sorted(line)[: max(len(line) - self.max_entries, 0)]:
                        line.discard(oldest)
            if job.deleted:
                self.retracted.append(user_id)
        self.others.extend((key, job.tweet_id, job.deleted) for key, _ in job.others)
        if job.announce and job.edited:
            self.announced_edits.append(job.tweet_id)
        elif job.announce:
            self.announced.append((job.tweet_id, job.deleted))
        counted = None if lists is None or job.followers_of is None else len(lists.of(job.followers_of))
        return JobOutcome(written=written, followers=counted)

    def key(self, ident: int) -> str:
        return f"list:{ident}"

    def channel(self, ident: int) -> str:
        return f"channel:{ident}"

    async def exists(self, user_id: int) -> bool:
        return user_id in self.lines

    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int:
        line = self.lines.get(user_id)
        if line is None:
            return 0
        ids = list(tweet_ids)
        line.update(ids)
        for oldest in sorted(line)[: max(len(line) - self.max_entries, 0)]:
            line.discard(oldest)
            self.complete.discard(user_id)  # the oldest are gone: no longer every id
        return len(ids)

    async def merge_into(self, user_ids: Sequence[int], tweet_ids: Iterable[int]) -> int:
        ids = list(tweet_ids)
        present = [u for u in user_ids if u in self.lines]
        self.complete.difference_update(present)  # some of an author's tweets, not necessarily all
        for user_id in present:
            await self.merge(user_id, ids)
        return len(present)

    async def remove(self, user_id: int, tweet_ids: Iterable[int]) -> None:
        self.lines.get(user_id, set()).difference_update(tweet_ids)

    async def oldest(self, user_id: int) -> int | None:
        line = self.lines.get(user_id)
        return min(line) if line else None

    async def mark_celebrity(self, author_id: int, user_ids: Sequence[int], following: bool) -> int:
        changed = 0
        for user_id in user_ids:
            if (markers := self.markers.get(user_id)) is not None and (author_id in markers) != following:
                (markers.add if following else markers.discard)(author_id)
                changed += 1
        return changed

    async def begin_rebuild(self, user_id: int) -> bytes:
        self.rebuilds += 1
        self.lines[user_id] = set()
        self.markers[user_id] = set()
        self.rebuilding.add(user_id)
        self._begun[user_id] = f"rebuild {self.rebuilds}".encode()
        return self._begun[user_id]

    async def finish_rebuild(
        self,
        user_id: int,
        tweet_ids: Iterable[int],
        celebrities: Iterable[int],
        begun: bytes,
        *,
        complete: bool = False,
    ) -> bool:
        if self._begun.get(user_id) != begun or user_id not in self.lines:
            return False  # a later rebuild began since
        (self.complete.add if complete else self.complete.discard)(user_id)
        await self.merge(user_id, tweet_ids)
        self.markers.setdefault(user_id, set()).update(celebrities)
        self.rebuilding.discard(user_id)
        self._begun.pop(user_id)
        return True

    async def read(self, user_id: int, *, touch: bool = True) -> Snapshot | None:
        line = self.lines.get(user_id)
        if line is None:
            return None
        return Snapshot(
            sorted(line, reverse=True),
            sorted(self.markers.get(user_id, ())),
            user_id in self.rebuilding,
            user_id in self.complete,
        )

    async def read_many(self, user_ids: Sequence[int]) -> list[Snapshot | None]:
        return [await self.read(u, touch=False) for u in user_ids]


class FakeRegistry:
    """social.celebrities.CelebrityRegistry: `entries` the states now, `history` every change."""

    def __init__(self) -> None:
        self.entries: dict[int, State] = {}
        self.history: list[tuple[int, State | None]] = []

    async def state(self, author_id: int) -> State | None:
        return self.entries.get(author_id)

    async def states(self, author_ids: Sequence[int]) -> dict[int, State]:
        return {a: self.entries[a] for a in author_ids if a in self.entries}

    async def set(self, author_id: int, state: State) -> None:
        self.entries[author_id] = state
        self.history.append((author_id, state))

    async def remove(self, author_id: int) -> None:
        self.entries.pop(author_id, None)
        self.history.append((author_id, None))


class FakeLiveFeed:
    """timeline_svc's live hub: a subscription's queue holds `events` (in order: messages, and the
    heartbeats the hub would send) and then whatever a test puts in it; `attached` lists the
    channels streams listened to beside their own."""

    def __init__(self, events: Iterable[Delivery] = ()) -> None:
        self.events = list(events)
        self.attached: list[str] = []

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[Delivery]]:
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        for event in self.events:
            queue.put_nowait(event)
        yield queue

    async def attach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None:
        self.attached.append(channel)

    async def detach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None:
        pass


class FakeTweetStub:
    """tweets_svc's generated stub for ListTweetIdsByAuthors: each author i has one tweet, id
    10 * i, replying to nobody; `calls` lists how many authors each call asked for."""

    def __init__(self, max_authors: int) -> None:
        self._max_authors = max_authors
        self.calls: list[int] = []

    async def ListTweetIdsByAuthors(
        self, request: tweets_pb.ListTweetIdsByAuthorsRequest
    ) -> tweets_pb.ListTweetIdsByAuthorsResponse:
        assert len(request.author_ids) <= self._max_authors
        self.calls.append(len(request.author_ids))
        refs = sorted((int(a) * 10 for a in request.author_ids), reverse=True)[: request.limit]
        return tweets_pb.ListTweetIdsByAuthorsResponse(
            tweets=[tweets_pb.TweetRef(tweet_id=str(t), author_id=str(t // 10)) for t in refs]
        )


class FakeUserStub:
    """users_svc's generated stub for AuthenticateTokens: knows `sessions` (token -> user id);
    `calls` lists the tokens of each call. While `gate` is clear, calls wait for it; with
    `failure` set, calls raise it."""

    def __init__(self, sessions: Mapping[str, int]) -> None:
        self.sessions = dict(sessions)
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None

    async def AuthenticateTokens(
        self, request: users_pb.AuthenticateTokensRequest
    ) -> users_pb.AuthenticateTokensResponse:
        self.calls.append(list(request.tokens))
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        reply = users_pb.AuthenticateTokensResponse()
        for token in request.tokens:
            if token in self.sessions:
                session = reply.sessions.add(token=token, user_id=str(self.sessions[token]))
                session.expire_time.FromSeconds(4_000_000_000)
        return reply


class FakeSessionCache:
    """users_svc's session cache: `entries` maps each cached token to its session."""

    def __init__(self, entries: dict[str, Session] | None = None) -> None:
        self.entries = entries if entries is not None else {}

    async def remember(self, token: str, session: Session) -> None:
        self.entries[token] = session

    async def refill(self, sessions: Mapping[str, Session]) -> None:
        self.entries.update(sessions)


class FakeRelationsCache:
    """social.relations.RelationsCache in memory; `down` makes every read fail as Redis would."""

    def __init__(self) -> None:
        self.entries: dict[int, dict[int, Relation]] = {}
        self.down = False

    async def read(self, viewer: int, others: Sequence[int]) -> dict[int, Relation] | None:
        if self.down:
            raise ConnectionError("redis is down")
        held = self.entries.get(viewer)
        return None if held is None else {o: held[o] for o in others if o in held}

    async def read_all(self, viewer: int) -> dict[int, Relation] | None:
        if self.down:
            raise ConnectionError("redis is down")
        held = self.entries.get(viewer)
        return None if held is None else dict(held)

    async def write(self, viewer: int, version: int, relations: Mapping[int, Relation]) -> None:
        self.entries[viewer] = dict(relations)

    async def forget(self, user_ids: Iterable[int]) -> None:
        for user_id in user_ids:
            self.entries.pop(user_id, None)


class FakeSessionRedis:
    """What meshkit.auth and meshkit.ratelimit ask of Redis: the session cache (`sessions`, by cache
    key) and the rate-limit script (always allowing; when it names the caller's buckets, it reads
    the session in KEYS[1] as the real one does). `gets` counts every session cache read."""

    def __init__(self, sessions: dict[str, bytes] | None = None) -> None:
        self.sessions = sessions if sessions is not None else {}
        self.gets = 0
        self.charges = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.sessions.get(key)

    def register_script(self, script: str) -> Callable[..., Awaitable[list[bytes | int | None]]]:
        async def allow(keys: Sequence[str], args: Sequence[object]) -> list[bytes | int | None]:
            if not int(str(args[0])):  # no caller's buckets
                self.charges += 1
                return [None, 0]
            session = await self.get(keys[0])
            self.charges += session is not None
            return [session, 0]

        return allow


class FakeConnection:
    """A connection of a FakePool: it names its pool, keeps the statements it was given, and
    answers each with one row holding its pool's `answer`."""

    def __init__(self, pool: FakePool) -> None:
        self.pool = pool.name
        self._answer = pool.answer
        self.statements: list[str] = []

    async def execute(self, statement: str, params: Sequence[object] = ()) -> FakeConnection:
        self.statements.append(statement)
        return self

    async def fetchone(self) -> tuple[object]:
        return (self._answer,)


class FakePool:
    """A PostgreSQL pool as meshkit.reads uses it: `connection()` lends a FakeConnection that names
    the pool (`name`) and answers `answer` to any statement, unless `failure` is set (raised as the
    connection is lent); with `hang`, the connection is lent only after that many seconds. `lent`
    counts the loans."""

    def __init__(self, name: str, answer: object = True) -> None:
        self.name = name
        self.answer = answer
        self.failure: BaseException | None = None
        self.hang = 0.0
        self.lent = 0

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[FakeConnection]:  # noqa: ASYNC109 (psycopg_pool's name)
        self.lent += 1
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.failure is not None:
            raise self.failure
        yield FakeConnection(self)
