"""A follower list rebuilt while its follower's home timeline is rebuilt (Redis back empty after a
restart or a wipe): every interleaving of the two, forced step by step, leaves the follower in the
list, so the author's next tweet reaches their timeline and their open stream; a tweet committed
and fanned out at any step of the home's rebuild ends up in it. On a Redis Cluster,
where the lists' writers look at a timeline before their script runs, a look that found no timeline
and a prune after a delivery that found none do not undo a join that came in between."""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import redis
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.asyncio.cluster import RedisCluster

from devstack.mesh import Mesh
from fanout_svc.service import Fanout, TweetChanged
from meshkit.shards import connect, sharded_pubsub
from social.follower_lists import FollowerLists, prune
from social.homes import HomeSource
from social.peers import TweetsPeer
from social.timelines import REBUILDING, TimelineStore, home_key, in_slot_of, key_start, unpack
from tests.helpers import ON_BOTH_REDIS, REDIS_CLUSTER, Account, Stubs, eventually, redis_client
from users_svc.follower_lists import FollowerListKeeper
from users_svc.storage import PostgresUserStore

# Ids of tweets fanned out here only: no owner knows them, so a timeline holds one only if fan-out
# wrote it there.
FIRST_ID = 7_300_000_000_000_000_000
# Reaching a pause or a message takes milliseconds; this is the deadline of a stuck step.
STEP_SECONDS = 10.0

HOME_STEPS = ("home created", "joins", "reads owners")
BUILD_STEPS = ("list begun", "reads PostgreSQL", "fills", "finishes")


class Pause:
    """One step of a writer held until the test lets it run: the steps of two writers then run in
    the order the test chooses."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._go = asyncio.Event()

    async def hold(self) -> None:
        """Holds the first caller only: one step of one writer (another passes)."""
        if self.reached.is_set():
            return
        self.reached.set()
        await self._go.wait()

    def release(self) -> None:
        self._go.set()


@dataclass
class Pauses:
    steps: dict[str, Pause] = field(default_factory=dict)

    async def before(self, step: str) -> None:
        pause = self.steps.get(step)
        if pause is not None:
            await pause.hold()


class PausedGraph:
    """users_svc's follow graph in PostgreSQL, for the list's build and for the home's rebuild
    (whose join is users_svc's JoinFollowerLists), each step held where the test says."""

    def __init__(self, store: PostgresUserStore, pauses: Pauses) -> None:
        self._store = store
        self._pauses = pauses
        self.keeper: FollowerListKeeper | None = None

    async def followers(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        await self._pauses.before("reads PostgreSQL")
        return await self._store.followers(user_id, before, limit)

    async def follow_state(self, follower_id: int, followee_id: int) -> tuple[bool, int]:
        return await self._store.follow_state(follower_id, followee_id)

    async def followee_ids(self, user_id: int) -> set[int]:
        return await self._store.followee_ids(user_id)

    async def followers_count(self, user_id: int) -> int:
        return await self._store.followers_count(user_id)

    async def following(self, user_id: int) -> list[int]:
        await self._pauses.before("reads owners")
        return sorted(await self._store.followee_ids(user_id))

    async def join_follower_lists(self, user_id: int) -> None:
        await self._pauses.before("joins")
        assert self.keeper is not None
        await self.keeper.join(user_id)


class PausedLists(FollowerLists):
    """The lists' writes, a build's steps held where the test says."""

    def __init__(self, pauses: Pauses, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pauses = pauses

    async def begin_build(self, author_id: int, followers: int) -> str | None:
        await self._pauses.before("list begun")
        return await super().begin_build(author_id, followers)

    async def _with_timelines(self, user_ids: Sequence[int]) -> tuple[str, list[int]]:
        found = await super()._with_timelines(user_ids)
        await self._pauses.before("looked")  # on a cluster, at the timelines; the script next
        return found

    async def fill(self, author_id: int, gen: str, follower_ids: Sequence[int]) -> int:
        await self._pauses.before("fills")
        return await super().fill(author_id, gen, follower_ids)

    async def finish_build(self, author_id: int, gen: str) -> None:
        await self._pauses.before("finishes")
        await super().finish_build(author_id, gen)


class KeeperAsPeer:
    """fan-out's view of users_svc's lists (social.peers.UsersPeer), served by the keeper itself."""

    def __init__(self, keeper: FollowerListKeeper) -> None:
        self._keeper = keeper

    async def ensure_follower_lists(self, author_ids: Sequence[int]) -> None:
        await self._keeper.ensure(author_ids)

    async def sync_follow(self, follower_id: int, followee_id: int) -> None:
        await self._keeper.sync(follower_id, followee_id)


@dataclass
class Space:
    """The lists, home timelines and live channels of one case, in a key space of its own, with the
    real follow graph and tweets of the mesh's PostgreSQL."""

    pauses: Pauses
    graph: PausedGraph
    lists: PausedLists
    keeper: FollowerListKeeper
    timelines: TimelineStore
    homes: HomeSource
    fanout: Fanout
    channel_prefix: str


@dataclass
class Parts:
    """The mesh's Redis (a client, and a node to listen on) and the owners, which every case shares."""

    redis: aioredis.Redis
    listener: aioredis.Redis
    store: PostgresUserStore
    tweets: TweetsPeer

    def space(self) -> Space:
        name = f"gap-{uuid.uuid4().hex[:8]}-"
        pauses = Pauses()
        graph = PausedGraph(self.store, pauses)
        lists = PausedLists(pauses, self.redis, key_start(f"{name}home"), 3600, prefix=f"{name}followers:")
        keeper = FollowerListKeeper(graph, lists)
        graph.keeper = keeper
        timelines = TimelineStore(
            self.redis, 30, 3600, key_prefix=f"{name}home", channel_prefix=f"{name}live:",
            list_prefix=f"{name}followers:",
        )  # fmt: skip
        homes = HomeSource(graph, self.tweets, timelines, None)
        fanout = Fanout(None, KeeperAsPeer(keeper), timelines, homes)  # type: ignore[arg-type]
        return Space(pauses, graph, lists, keeper, timelines, homes, fanout, f"{name}live:")


@pytest.fixture(scope="module")
def pair(stubs: Stubs) -> tuple[Account, Account, Account]:
    """An author, the reader who follows them, and another follower (the list is never empty)."""
    author, reader, other = (stubs.sign_up(p) for p in ("gapa", "gapr", "gapo"))
    stubs.follow(reader, author)
    stubs.follow(other, author)
    stubs.post(author, "before the restart")
    return author, reader, other


@pytest.fixture
async def parts(mesh: Mesh, stubs: Stubs) -> AsyncIterator[Parts]:
    redis = connect(mesh.redis_url, cluster=mesh.redis_cluster, timeout=5, max_connections=20)
    if isinstance(redis, RedisCluster):
        await redis.initialize()
    # Classic PUBLISH reaches every node of a cluster: one node's subscribers are anyone's.
    listener = aioredis.Redis.from_url(mesh.redis_node_urls[0])
    pool = AsyncConnectionPool(
        mesh.database_url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"options": "-c search_path=users,public", "autocommit": True},
    )
    await pool.open()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports.tweets}")
    store = PostgresUserStore(pool, None, None, None, None)  # type: ignore[arg-type]
    try:
        yield Parts(redis, listener, store, TweetsPeer(channel))
    finally:
        await channel.close()
        await pool.close()
        await listener.aclose()
        await redis.aclose()


async def run_in_order(
    actors: Mapping[str, Awaitable[None]], steps: dict[str, str], order: Sequence[str], pauses: Pauses
) -> None:
    """Runs the actors (each held before each of its steps; `steps`: step -> actor) letting one
    step go at a time, in `order`: each step runs until its actor reaches its next pause or ends."""
    for step in order:
        pauses.steps[step] = Pause()
    tasks = {name: asyncio.ensure_future(work) for name, work in actors.items()}
    try:
        for step in order:
            task = tasks[steps[step]]
            await settle(pauses.steps[step], task)
            pauses.steps[step].release()
            following = next((s for s in order[order.index(step) + 1 :] if steps[s] == steps[step]), None)
            if following is None:
                await asyncio.wait_for(asyncio.shield(task), STEP_SECONDS)
            else:
                await settle(pauses.steps[following], task)
    finally:
        for task in tasks.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def settle(pause: Pause, task: asyncio.Future[Any]) -> None:
    """Waits until the actor of `task` is held at `pause` (failing if it ended or failed first)."""
    reached: asyncio.Future[Any] = asyncio.ensure_future(pause.reached.wait())
    done, _ = await asyncio.wait([reached, task], timeout=STEP_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    if reached not in done:
        reached.cancel()
        if task in done:
            task.result()  # raises what the actor failed with
            raise AssertionError("the actor ended before the step it was to be held at")
        raise AssertionError("the actor did not reach its step in time")


async def rebuild_home(space: Space, reader: int) -> None:
    """timeline_svc's rebuild of a home that is missing (social.homes.HomeSource.rebuild)."""
    await space.pauses.before("home created")
    await space.homes.rebuild(reader)


async def delivered(parts: Parts, space: Space, author: int, reader: int, tweet_id: int) -> None:
    """Fans out a new tweet of `author` (fan-out asks for a missing list to be built) and asserts
    that the reader's timeline and open stream got it."""
    channel = f"{space.channel_prefix}{reader}"
    node_client = None
    if await sharded_pubsub(parts.redis):
        # Sharded pub/sub (a Redis 7 cluster): the channel lives in its timeline's slot, heard on
        # the node that holds it, as the live hub listens.
        assert isinstance(parts.redis, RedisCluster)
        channel = in_slot_of(channel, space.timelines.key(reader))
        node = parts.redis.get_node_from_key(channel)
        node_client = aioredis.Redis(host=node.host, port=node.port)
        listener = node_client.pubsub()
        await listener.ssubscribe(channel)
    else:
        listener = parts.listener.pubsub()
        await listener.subscribe(channel)
    try:
        await listener.get_message(timeout=STEP_SECONDS)  # the subscription's confirmation
        (written,) = await space.fanout.tweets_changed([TweetChanged(tweet_id, author)])
        assert not isinstance(written, Exception), written
        data: bytes | None = await parts.redis.get(space.timelines.key(reader))  # type: ignore[assignment]
        assert data is not None, "the reader's home timeline is gone"
        members = await space.lists.members(author)
        assert tweet_id in unpack(data), f"not delivered: the author's list holds {members}"
        heard: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + STEP_SECONDS
        while str(tweet_id).encode() not in heard:
            assert asyncio.get_running_loop().time() < deadline, f"not on the stream: {heard}"
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                heard.append(message["data"].split(b" ")[0])
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
        if node_client is not None:
            await node_client.aclose()


def interleavings(first: Sequence[str], second: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Every order of the steps of both that keeps each one's own order."""
    size = len(first) + len(second)
    for at in itertools.combinations(range(size), len(first)):
        mine, theirs = iter(first), iter(second)
        yield tuple(next(mine) if n in at else next(theirs) for n in range(size))


ON_THE_CLUSTER = pytest.mark.parametrize("mesh", [REDIS_CLUSTER], indirect=True)
ORDERS = list(interleavings(HOME_STEPS, BUILD_STEPS))


@ON_BOTH_REDIS
async def test_every_interleaving_of_a_home_rebuild_and_its_authors_list_build_keeps_the_reader(
    mesh: Mesh, parts: Parts, pair: tuple[Account, Account, Account]
) -> None:
    """The home is created, joins the lists, reads the owners; the author's list is begun, reads
    PostgreSQL, is filled, finishes: in each of the 35 orders, the author's next tweet reaches the
    reader."""
    author, reader, _ = (int(a.user_id) for a in pair)
    assert len(ORDERS) == 35
    for number, order in enumerate(ORDERS):
        space = parts.space()
        steps = {s: "home" for s in HOME_STEPS} | {s: "list" for s in BUILD_STEPS}
        actors = {"home": rebuild_home(space, reader), "list": space.keeper.ensure([author])}
        try:
            await run_in_order(actors, steps, order, space.pauses)
            space.pauses.steps.clear()
            await delivered(parts, space, author, reader, FIRST_ID + number)
        except AssertionError as failure:
            raise AssertionError(f"in the order {order}: {failure}") from failure


async def home_with_the_reader_in_the_list(parts: Parts, space: Space, author: int, reader: int) -> None:
    """The reader's home rebuilt and the author's list built with them in it; then the home gone
    (expired, or wiped with its node) while the list stays."""
    await space.homes.rebuild(reader)
    await space.keeper.ensure([author])
    assert reader in (await space.lists.members(author) or set())
    await parts.redis.delete(space.timelines.key(reader))


@pytest.mark.parametrize("writer", ["join", "sync"])
@ON_BOTH_REDIS
async def test_a_write_that_found_no_timeline_does_not_undo_a_join_that_came_after(
    mesh: Mesh, parts: Parts, pair: tuple[Account, Account, Account], writer: str
) -> None:
    """A join from a rebuild begun before a wipe (or a follow event's sync) finds the reader's home
    gone; before its script runs, the home is rebuilt and joins the list. The reader stays in
    the list."""
    author, reader, _ = (int(a.user_id) for a in pair)
    space = parts.space()
    await home_with_the_reader_in_the_list(parts, space, author, reader)
    space.pauses.steps["looked"] = looked = Pause()
    late = asyncio.ensure_future(
        space.keeper.join(reader) if writer == "join" else space.keeper.sync(reader, author)
    )
    await settle(looked, late)
    await space.homes.rebuild(reader)  # its own join passes the pause (held once)
    looked.release()
    await asyncio.wait_for(late, STEP_SECONDS)
    await delivered(parts, space, author, reader, FIRST_ID + 100)


@ON_THE_CLUSTER
async def test_a_prune_after_a_delivery_that_found_no_timeline_does_not_undo_a_join_that_came_after(
    mesh: Mesh, parts: Parts, pair: tuple[Account, Account, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster fan-out reads the list, delivers on the timelines' nodes, then prunes who had
    no timeline: a home rebuilt (and joined) between the delivery and the prune stays in the list."""
    author, reader, _ = (int(a.user_id) for a in pair)
    space = parts.space()
    await home_with_the_reader_in_the_list(parts, space, author, reader)
    space.pauses.steps["prunes"] = prunes = Pause()

    async def paused_prune(*args: Any, **kwargs: Any) -> int:
        await space.pauses.before("prunes")
        return await prune(*args, **kwargs)

    monkeypatch.setattr("social.timelines.prune", paused_prune)
    first = asyncio.ensure_future(space.fanout.tweets_changed([TweetChanged(FIRST_ID + 200, author)]))
    await settle(prunes, first)
    await space.homes.rebuild(reader)
    prunes.release()
    await asyncio.wait_for(first, STEP_SECONDS)
    await delivered(parts, space, author, reader, FIRST_ID + 201)


ROUNDS = 12


def in_the_home(whole: redis.Redis, key: str, posted: int) -> bool:
    """Whether the home timeline at `key`, built (not being rebuilt), holds `posted`."""
    data: bytes | None = whole.get(key)  # type: ignore[assignment]
    assert data is not None, "the reader's home timeline is missing"
    assert not data.startswith(REBUILDING), "still being rebuilt"
    assert posted in unpack(data), f"{posted} not in {unpack(data)}"
    return True


@ON_BOTH_REDIS
def test_a_post_right_after_the_reader_comes_back_to_a_wiped_redis_reaches_their_home_timeline(
    mesh: Mesh, stubs: Stubs
) -> None:
    """Redis wiped (as a restart of a memory-only Redis leaves it); the reader reads (their home is
    rebuilt and joins the lists again, the author's list is built again on the post's fan-out);
    the author posts at once. Each time, the post is in the reader's home timeline in Redis, the
    part of it a read serves without asking the owners."""
    author, reader, other = (stubs.sign_up(p) for p in ("gapwa", "gapwr", "gapwo"))
    stubs.follow(reader, author)
    stubs.follow(other, author)
    nodes = [redis.Redis.from_url(url) for url in mesh.redis_node_urls]
    whole = redis_client(mesh.redis_url)
    key = home_key(int(reader.user_id))
    try:
        for round_ in range(ROUNDS):
            for node in nodes:
                node.flushall()
            stubs.home(reader)  # the home is missing: rebuilt in the background
            posted = int(stubs.post(author, f"right after wipe {round_}").tweet_id)

            eventually(functools.partial(in_the_home, whole, key, posted), timeout=60, interval=0.1)
    finally:
        whole.close()
        for node in nodes:
            node.close()


AUTHOR_STEPS = ("commits", "fans out")


@ON_BOTH_REDIS
async def test_a_tweet_committed_and_fanned_out_at_any_step_of_a_home_rebuild_ends_up_in_it(
    mesh: Mesh, stubs: Stubs, parts: Parts, pair: tuple[Account, Account, Account]
) -> None:
    """The author's list is built while the reader has no home (so without them); then the
    author's tweet is committed and fanned out, each before or after any step of the home's
    rebuild (10 orders): the rebuilt home holds it, read from the owners (committed before they
    were read) or delivered (after)."""
    author, reader, _ = (int(a.user_id) for a in pair)
    orders = list(interleavings(HOME_STEPS, AUTHOR_STEPS))
    assert len(orders) == 10
    for order in orders:
        space = parts.space()
        await space.keeper.ensure([author])
        assert reader not in (await space.lists.members(author) or set())
        posted: list[int] = []

        async def write(
            space: Space = space, posted: list[int] = posted, order: Sequence[str] = order
        ) -> None:
            await space.pauses.before("commits")
            posted.append(int(stubs.post(pair[0], f"at {order}").tweet_id))  # the others are held
            await space.pauses.before("fans out")
            (written,) = await space.fanout.tweets_changed([TweetChanged(posted[0], author)])
            assert not isinstance(written, Exception), written

        actors = {"home": rebuild_home(space, reader), "author": write()}
        steps = {s: "home" for s in HOME_STEPS} | {s: "author" for s in AUTHOR_STEPS}
        await run_in_order(actors, steps, order, space.pauses)
        data: bytes | None = await parts.redis.get(space.timelines.key(reader))  # type: ignore[assignment]
        assert data is not None and not data.startswith(REBUILDING), (order, data)
        assert posted[0] in unpack(data), f"in the order {order}: {posted} not in {unpack(data)}"
