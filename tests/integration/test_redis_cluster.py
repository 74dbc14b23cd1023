"""The mesh on a local Redis Cluster (three masters, a replica each): the cluster devstack makes,
the kit's cluster paths against it (reads and scripts over keys of every node, rate limits), and
the wipe of one node, which the mesh survives as it survives a wipe of its one Redis, and live
streams on sharded pub/sub where the cluster runs Redis 7.
(The story suites run on the cluster too: tests/helpers.py ON_BOTH_REDIS.)"""

from __future__ import annotations

import asyncio
import itertools
import queue
from typing import Any, cast

import grpc
import pytest
import redis
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from redis.asyncio.cluster import RedisCluster

from devstack.mesh import Mesh
from meshkit.ratelimit import RateLimiter
from meshkit.rpc_details import error_details
from meshkit.settings import Rate
from meshkit.shards import SHARDED_PUBSUB_SINCE, SpreadScript, connect, get_many, key_on, nodes_of, primaries
from social import LiveTweet
from social.live import live_channel
from social.timelines import home_key, sharded_channel
from tests.helpers import REDIS_CLUSTER, LiveStream, Stubs, eventually, held_in_redis, redis_client
from timeline_svc.live_hub import LiveHub
from timeline_svc.stream import Delivery, FeedEnded

ON_THE_CLUSTER = pytest.mark.parametrize("mesh", [REDIS_CLUSTER], indirect=True)


async def _cluster(mesh: Mesh) -> RedisCluster:
    """A cluster client as the services make one, once it knows the slots (they PING at start)."""
    client = connect(mesh.redis_url, cluster=True, timeout=5, max_connections=10)
    assert isinstance(client, RedisCluster)
    await client.initialize()
    return client


def _keys_on_every_node(client: RedisCluster, count: int = 30) -> list[str]:
    keys = [f"cluster-test:{n}" for n in range(count)]
    assert len(nodes_of(client, keys)) == 3, "the keys should spread over the three masters"
    return keys


@ON_THE_CLUSTER
def test_the_local_cluster_has_three_masters_with_a_replica_each_covering_every_slot(mesh: Mesh) -> None:
    assert mesh.redis_cluster
    client = redis.RedisCluster.from_url(mesh.redis_url)
    try:
        nodes: dict[str, Any] = client.cluster_nodes()
        masters = [n for n in nodes.values() if "master" in n["flags"]]
        replicas = [n for n in nodes.values() if "slave" in n["flags"]]
        assert len(masters) == 3 and len(replicas) == 3
        assert {r["master_id"] for r in replicas} == {m["node_id"] for m in masters}
        covered = sum(int(end) - int(start) + 1 for m in masters for start, end in m["slots"])
        assert covered == 16384
        assert sorted(mesh.redis_node_urls) == sorted(
            f"redis://{n}/0" for n, m in nodes.items() if m in masters
        )
    finally:
        client.close()


@ON_THE_CLUSTER
def test_reads_and_scripts_over_keys_of_every_node_reach_each_key(mesh: Mesh) -> None:
    async def scenario() -> None:
        client = await _cluster(mesh)
        try:
            keys = _keys_on_every_node(client)
            for k in keys[::2]:
                await client.set(k, f"value of {k}")
            assert await get_many(client, keys) == [
                f"value of {k}".encode() if n % 2 == 0 else None for n, k in enumerate(keys)
            ]
            # Each node's call touches its keys (undeclared, one command at a time), and the
            # answers come back with the positions of the keys each was given.
            script = SpreadScript(
                client, "for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1]) end return #KEYS"
            )
            answers = await script.run(keys, ["written"])
            assert len(answers) == 3
            assert sorted(n for positions, _ in answers for n in positions) == list(range(len(keys)))
            assert all(len(positions) == count for positions, count in answers)
            assert await get_many(client, keys) == [b"written"] * len(keys)
            await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@ON_THE_CLUSTER
def test_a_rate_limit_over_buckets_on_different_nodes_refuses_when_any_is_spent(mesh: Mesh) -> None:
    async def scenario() -> None:
        client = await _cluster(mesh)
        try:
            roomy, tight = Rate(100, 60), Rate(2, 60)
            keys = _keys_on_every_node(client)
            first = keys[0]
            other = next(k for k in keys if len(nodes_of(client, [first, k])) == 2)
            limiter = RateLimiter(cast(aioredis.Redis, client), object())
            charges = [await limiter.charge([(first, roomy), (other, tight)]) for _ in range(3)]
            assert charges[:2] == [0, 0] and charges[2] > 0
            await client.delete(first, other)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@ON_THE_CLUSTER
def test_a_canary_key_is_placed_on_each_master(mesh: Mesh) -> None:
    async def scenario() -> None:
        client = await _cluster(mesh)
        try:
            masters = [m for m in primaries(client) if m is not None]
            keys = [key_on(client, "cluster-test:canary", node) for node in masters]
            assert len(set(keys)) == 3
            assert {n.name for n in (client.get_node_from_key(k) for k in keys) if n} == {
                m.name for m in masters
            }
        finally:
            await client.aclose()

    asyncio.run(scenario())


def _feed_lost(stream: LiveStream, timeout: float) -> bool:
    """Whether the stream ends (skipping its heartbeats) with UNAVAILABLE / FEED_LOST."""
    while True:
        try:
            event = stream.next_event(timeout)
        except queue.Empty:
            return False
        except grpc.RpcError as error:
            reasons = {info.reason for info in error_details(error, error_details_pb2.ErrorInfo)}
            return error.code() == grpc.StatusCode.UNAVAILABLE and "FEED_LOST" in reasons
        assert event.WhichOneof("event") in ("heartbeat", "tweet")


@ON_THE_CLUSTER
def test_a_wiped_node_ends_open_streams_and_its_timelines_come_back(stubs: Stubs, mesh: Mesh) -> None:
    reader, author = stubs.sign_up("nodewiped"), stubs.sign_up("author")
    stubs.follow(reader, author)
    stubs.home(reader)
    posted = [stubs.post(author, f"before the wipe {i}").tweet_id for i in range(3)]
    expected = list(reversed(posted))
    eventually(lambda: stubs.home_ids(reader) == expected)
    stream = LiveStream(stubs.timeline, reader).wait_open()

    r = redis_client(mesh.redis_url)
    home = home_key(int(reader.user_id))
    node = r.get_node_from_key(home)  # type: ignore[attr-defined]
    kept = next(
        key
        for n in itertools.count()
        if r.get_node_from_key(key := f"cluster-test:kept:{n}").name != node.name  # type: ignore[attr-defined]
    )
    r.set(kept, b"1")
    with redis.Redis.from_url(f"redis://{node.host}:{node.port}/0") as wiped:
        wiped.flushall()
    assert not r.exists(home)
    assert r.exists(kept), "a wipe of one node took a key of another"

    assert _feed_lost(stream, timeout=10), "the open stream did not end when its Redis node lost its data"
    stream.close()
    assert stubs.home_ids(reader) == expected  # rebuilt through the owners' APIs
    after = stubs.post(author, "after the wipe").tweet_id
    eventually(lambda: stubs.home_ids(reader) == [after, *expected])
    eventually(lambda: after in (held_in_redis(r, reader.user_id) or []))
    r.delete(kept)


def _versions(r: redis.Redis) -> list[tuple[int, ...]]:
    """The Redis version of each master."""
    infos = r.info("server", target_nodes=redis.RedisCluster.PRIMARIES)
    return [tuple(int(p) for p in str(i["redis_version"]).split(".")[:2]) for i in infos.values()]


def _channels_on_each_master(r: redis.Redis, command: str) -> dict[str, set[bytes]]:
    """PUBSUB CHANNELS or SHARDCHANNELS on each master: its name -> the channels."""
    return {
        node.name: set(r.execute_command(f"PUBSUB {command}", target_nodes=node))  # type: ignore[no-untyped-call]
        for node in r.get_primaries()  # type: ignore[attr-defined]
    }


@ON_THE_CLUSTER
def test_a_home_stream_listens_and_is_told_on_the_node_of_its_timeline(stubs: Stubs, mesh: Mesh) -> None:
    reader, author = stubs.sign_up("sharded"), stubs.sign_up("author")
    stubs.follow(reader, author)
    stubs.home(reader)
    # Open: timeline_svc's subscription to the stream's channel was confirmed.
    stream = LiveStream(stubs.timeline, reader).wait_open()
    r = redis_client(mesh.redis_url)
    classic = live_channel(int(reader.user_id)).encode()
    oldest = min(_versions(r))
    if oldest >= SHARDED_PUBSUB_SINCE:
        owner = r.get_node_from_key(home_key(int(reader.user_id))).name  # type: ignore[attr-defined]
        name = sharded_channel(classic.decode()).encode()
        shard_channels = _channels_on_each_master(r, "SHARDCHANNELS")
        assert [node for node, channels in shard_channels.items() if name in channels] == [owner]
        assert not any(classic in c for c in _channels_on_each_master(r, "CHANNELS").values())
    else:
        print(f"Redis {oldest} before {SHARDED_PUBSUB_SINCE}: no sharded pub/sub, its check skipped")
        assert any(classic in c for c in _channels_on_each_master(r, "CHANNELS").values())
    posted = stubs.post(author, "told on its node").tweet_id
    assert stream.next_tweet(timeout=10).tweet_id == posted
    stream.close()


@ON_THE_CLUSTER
def test_a_broken_live_connection_to_a_node_ends_the_streams_which_reopen_and_hear_the_next_tweet(
    stubs: Stubs, mesh: Mesh
) -> None:
    reader, author = stubs.sign_up("cut"), stubs.sign_up("author")
    stubs.follow(reader, author)
    stubs.home(reader)
    stream = LiveStream(stubs.timeline, reader).wait_open()
    r = redis_client(mesh.redis_url)
    # Sharded: the hub listens for this stream on the node of its timeline (as a restart of that
    # node would, its connections there break). Classic: on one node, whichever.
    nodes = (
        [r.get_node_from_key(home_key(int(reader.user_id)))]  # type: ignore[attr-defined]
        if min(_versions(r)) >= SHARDED_PUBSUB_SINCE
        else r.get_primaries()  # type: ignore[attr-defined]
    )
    killed = 0
    for node in nodes:
        with redis.Redis(host=node.host, port=node.port) as owner:
            killed += owner.client_kill_filter(_type="pubsub")
    assert killed >= 1, "timeline_svc did not listen where the test looked"
    assert _feed_lost(stream, timeout=10), "the open stream did not end when its live connection broke"
    stream.close()
    again = LiveStream(stubs.timeline, reader).wait_open()
    posted = stubs.post(author, "after the break").tweet_id
    assert again.next_tweet(timeout=10).tweet_id == posted
    again.close()


@ON_THE_CLUSTER
def test_a_sharded_channel_whose_slot_moves_ends_its_streams_which_reopen_on_its_new_node(mesh: Mesh) -> None:
    async def scenario() -> None:
        client = await _cluster(mesh)
        hub = LiveHub(cast(aioredis.Redis, client), confirm_timeout_seconds=5)
        # A user nobody is, whose timeline's slot holds no key: moving it disturbs no other test.
        user = 10**15
        while await client.cluster_countkeysinslot(client.keyslot(home_key(user))):
            user += 1
        slot, owner = client.keyslot(home_key(user)), client.get_node_from_key(home_key(user))
        assert owner is not None
        target = next(n for n in client.get_primaries() if n.name != owner.name)
        ids = {n.name: await client.execute_command("CLUSTER MYID", target_nodes=n) for n in (owner, target)}

        async def give_slot_to(name: str) -> None:
            for master in client.get_primaries():
                await client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[name], target_nodes=master)

        stream: asyncio.Queue[Delivery] = asyncio.Queue()
        try:
            await hub.attach(live_channel(user), stream)
            await give_slot_to(target.name)
            ended = await asyncio.wait_for(stream.get(), 10)
            assert isinstance(ended, FeedEnded) and ended.reason == "FEED_LOST"
            # Reopened until one stays open: while the nodes learn the new owner, a reopened stream
            # may end again (its SSUBSCRIBE went to the old one), as a client's would.
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                reopened: asyncio.Queue[Delivery] = asyncio.Queue()
                await hub.attach(live_channel(user), reopened)
                if reopened.empty() and await client.spublish(sharded_channel(live_channel(user)), "77"):
                    break
                assert asyncio.get_running_loop().time() < deadline, "no reopened stream stayed open"
                await hub.detach(live_channel(user), reopened)
                await asyncio.sleep(0.1)
            assert await asyncio.wait_for(reopened.get(), 10) == LiveTweet(77, False)
            await hub.check()  # a move is no failure of the reader: health stays up
        finally:
            await hub.close()
            await give_slot_to(owner.name)
            await client.aclose()

    r = redis_client(mesh.redis_url)
    if min(_versions(r)) < SHARDED_PUBSUB_SINCE:
        pytest.skip(f"Redis {min(_versions(r))} has no sharded pub/sub (since {SHARDED_PUBSUB_SINCE})")
    asyncio.run(scenario())
