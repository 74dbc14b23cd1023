"""No event dropped silently: fan-out's dead letters are listed and replayed through its admin API
and `tweetmesh admin dead-letters`; a replayed event is delivered, one that fails again comes back;
the event streams are trimmed of what the consumer group has read and acknowledged, never of what
it has not; a dead consumer's entries are claimed by the living before its name is deleted from
the group; a consumer that reads at most every so often takes a steady flow a batch at a time;
and with OUTBOX_REPLICAS an outbox row stays until a replica has its event."""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import redis.asyncio as aioredis

from devstack.mesh import Mesh, MeshPorts
from devstack.redis import start_redis
from meshkit.metrics import REGISTRY
from meshkit.streams import Entry, StreamConsumer, dead_letter_stream
from social import FOLLOWS_STREAM, TWEETS_STREAM
from tests.helpers import Stubs, eventually, fanned_out, held_in_redis, redis_client, rpc_error
from tweetmesh.fanout.v1 import fanout_service_pb2 as fanout_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh_cli import cli

DEAD_TWEETS = dead_letter_stream(TWEETS_STREAM)


def _dead_ids(stubs: Stubs, stream: str = "") -> dict[str, fanout_pb.DeadLetter]:
    """Every dead letter, read page by page (two at a time), by dead-letter id."""
    found: dict[str, fanout_pb.DeadLetter] = {}
    token = ""
    while True:
        page = stubs.fanout.ListDeadLetters(
            fanout_pb.ListDeadLettersRequest(stream=stream, page_size=2, page_token=token), timeout=10
        )
        found.update({d.dead_letter_id: d for d in page.dead_letters})
        token = page.next_page_token
        if not token:
            return found


def test_a_dead_lettered_tweet_is_listed_replayed_and_delivered(mesh: Mesh, stubs: Stubs) -> None:
    reader, author = stubs.sign_up("dlread"), stubs.sign_up("dlauth")
    stubs.follow(reader, author)
    stubs.home(reader)  # the home timeline exists in Redis: fan-out writes into it
    r = redis_client(mesh.redis_url)
    # The follow applied first (its rebuild of the reader's timeline would bring the tweet too).
    eventually(lambda: fanned_out(r, FOLLOWS_STREAM), timeout=20)
    # Fan-out gives up on the tweet's event, as after FANOUT_MAX_DELIVERIES failed attempts: it
    # leaves the event stream unread and waits in the dead-letter stream.
    mesh.stop_service("fanout")
    try:
        tweet_id = stubs.post(author, "given up on, then replayed").tweet_id
        entries: list[Any] = r.xrevrange(TWEETS_STREAM, count=100)  # type: ignore[assignment]
        entry_id, fields = next(
            (i, f) for i, f in entries if tweets_pb.TweetEvent.FromString(f[b"data"]).tweet_id == tweet_id
        )
        dead_id = r.xadd(DEAD_TWEETS, {**fields, b"entry_id": entry_id, b"reason": b"too many deliveries"})
        r.xdel(TWEETS_STREAM, entry_id)
        poison_id = r.xadd(
            DEAD_TWEETS, {b"data": b"\xff not an event", b"entry_id": b"1-1", b"reason": b"poison"}
        )
    finally:
        mesh.start_service("fanout")
    dead, poison = dead_id.decode(), poison_id.decode()  # type: ignore[union-attr]

    listed = _dead_ids(stubs)
    assert listed[dead].stream == TWEETS_STREAM and listed[dead].entry_id == entry_id.decode()
    assert listed[dead].reason == "too many deliveries" and tweet_id in listed[dead].event
    assert listed[poison].reason == "poison" and listed[poison].event == ""
    assert set(_dead_ids(stubs, TWEETS_STREAM)) >= {dead, poison}
    assert not {dead, poison} & set(_dead_ids(stubs, FOLLOWS_STREAM))
    stats = stubs.fanout.GetFanoutStats(fanout_pb.GetFanoutStatsRequest(), timeout=10)
    assert stats.dead_lettered >= 2
    assert tweet_id not in (held_in_redis(r, reader.user_id) or [])

    # The CLI lists them too, and replays one by its id.
    out = io.StringIO()
    fanout = ["admin", "dead-letters", "--fanout-target", stubs.fanout_addr]
    assert cli.main([*fanout, "list", "--stream", TWEETS_STREAM, "--limit", "100"], out) == 0
    assert f"{TWEETS_STREAM} {dead} (entry {entry_id.decode()}, too many deliveries)" in out.getvalue()
    assert cli.main([*fanout, "replay", "--stream", TWEETS_STREAM, dead], out) == 0
    assert "replayed 1 dead letter(s)" in out.getvalue()

    eventually(lambda: tweet_id in (held_in_redis(r, reader.user_id) or []), timeout=20)
    assert dead not in _dead_ids(stubs)
    # Replaying it again finds nothing: it was taken out with its replay.
    again = stubs.fanout.ReplayDeadLetters(
        fanout_pb.ReplayDeadLettersRequest(stream=TWEETS_STREAM, dead_letter_ids=[dead]), timeout=10
    )
    assert again.replayed == 0

    # The poison event fails again at once: back in the dead-letter stream, under a new id.
    stubs.fanout.ReplayDeadLetters(
        fanout_pb.ReplayDeadLettersRequest(stream=TWEETS_STREAM, dead_letter_ids=[poison]), timeout=10
    )
    eventually(
        lambda: any(
            d.reason == "poison" and d.data == b"\xff not an event" and i != poison
            for i, d in _dead_ids(stubs).items()
        )
    )


@pytest.mark.parametrize(
    "request_",
    [
        fanout_pb.ReplayDeadLettersRequest(stream="events:nope", all=True),
        fanout_pb.ReplayDeadLettersRequest(stream=TWEETS_STREAM),
        fanout_pb.ReplayDeadLettersRequest(stream=TWEETS_STREAM, dead_letter_ids=["1-1"], all=True),
        fanout_pb.ReplayDeadLettersRequest(stream=TWEETS_STREAM, dead_letter_ids=["'; FLUSHALL"]),
        fanout_pb.ListDeadLettersRequest(stream="events:tweets:dead"),
        fanout_pb.ListDeadLettersRequest(page_token="events:tweets/not-an-id"),
        fanout_pb.ListDeadLettersRequest(stream=FOLLOWS_STREAM, page_token="events:tweets/1-1"),
        fanout_pb.ListDeadLettersRequest(page_size=-1),
    ],
)
def test_bad_admin_requests_are_invalid_arguments(stubs: Stubs, request_: Any) -> None:
    call = (
        stubs.fanout.ReplayDeadLetters
        if isinstance(request_, fanout_pb.ReplayDeadLettersRequest)
        else stubs.fanout.ListDeadLetters
    )
    assert rpc_error(lambda: call(request_, timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_is_trimmed_of_what_every_group_acknowledged_and_no_further(mesh: Mesh) -> None:
    stream = f"test:trim:{uuid.uuid4().hex}"
    client = aioredis.Redis.from_url(mesh.redis_url)

    async def handled(_: Any) -> None:
        return None

    consumer = StreamConsumer(
        client,
        stream,
        "g",
        "c",
        handled,
        claim_idle_ms=60_000,
        max_deliveries=3,
        forget_idle_ms=60_000,
        keep_seconds=0,
    )
    try:
        ids = [await client.xadd(stream, {"n": n}) for n in range(1000)]
        assert await consumer.trim() == 0  # no group yet: nobody has read anything
        await consumer.ensure_group()
        await client.xgroup_create(stream, "late", id="0")  # a second group that reads nothing yet
        await client.xreadgroup("g", "c", {stream: ">"}, count=600)
        await client.xack(stream, "g", *ids[:500])  # 500..599 read, not acknowledged
        assert await consumer.trim() == 0  # "late" has read nothing: everything stays
        await client.xgroup_destroy(stream, "late")
        trimmed = await consumer.trim()
        entries: Any = await client.xrange(stream)
        left = [i for i, _ in entries]
        assert trimmed > 0 and left[-500:] == ids[500:]  # entries trimmed, none not yet acknowledged
        assert len(left) == 1000 - trimmed
        # A consumer keeping recent history trims nothing young.
        keeping = StreamConsumer(
            client, stream, "g", "c", handled, claim_idle_ms=60_000, max_deliveries=3, forget_idle_ms=60_000
        )
        await client.xack(stream, "g", *ids[500:])
        assert await keeping.trim() == 0
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_a_dead_consumers_entries_are_claimed_then_its_name_is_forgotten(mesh: Mesh) -> None:
    stream = f"test:forget:{uuid.uuid4().hex}"
    client = aioredis.Redis.from_url(mesh.redis_url)
    handled: list[bytes] = []

    async def handle(entry: Entry) -> None:
        handled.append(entry.entry_id)

    def living(forget_idle_ms: int) -> StreamConsumer:
        return StreamConsumer(
            client,
            stream,
            "g",
            "living",
            handle,
            claim_idle_ms=100,
            max_deliveries=3,
            forget_idle_ms=forget_idle_ms,
        )

    async def consumers() -> set[bytes]:
        found: Any = await client.xinfo_consumers(stream, "g")
        return {c["name"] for c in found}

    async def forgotten_soon(consumer: StreamConsumer) -> list[str]:
        """What `consumer` forgets once someone has been idle past its time (polled up to 10 s)."""
        deadline = time.monotonic() + 10
        while not (found := await consumer.forget_dead_consumers()):
            assert time.monotonic() < deadline, f"nobody forgotten within 10 s: {await consumers()}"
            await asyncio.sleep(0.05)
        return found

    patient, eager = living(forget_idle_ms=60_000), living(forget_idle_ms=100)
    try:
        await eager.ensure_group()
        ids = [await client.xadd(stream, {"n": n}) for n in range(3)]
        await client.xreadgroup("g", "dead", {stream: ">"})  # read, never acknowledged: it died
        await client.xgroup_createconsumer(stream, "g", "idle")  # joined, never got anything
        assert await patient.forget_dead_consumers() == []  # nobody has been idle for a minute
        # Idle and empty: forgotten. Idle but holding entries: kept, however long it has been idle.
        assert await forgotten_soon(eager) == ["idle"]
        assert await consumers() == {b"dead"}
        # The living claims what the dead one held and handles it; then the dead one goes too.
        deadline = time.monotonic() + 10
        while len(handled) < len(ids):
            assert time.monotonic() < deadline, f"not reclaimed within 10 s: {handled}"
            await eager.reclaim()
            await asyncio.sleep(0.05)
        assert sorted(handled) == sorted(ids)
        summary: Any = await client.xpending(stream, "g")
        assert summary["pending"] == 0
        assert await forgotten_soon(eager) == ["dead"]
        assert await consumers() == {b"living"}  # never itself
        labels = {"stream": stream, "group": "g"}
        assert REGISTRY.get_sample_value("tweetmesh_stream_consumers_forgotten_total", labels) == 2
    finally:
        await client.delete(stream)
        await client.aclose()


def test_an_outbox_row_stays_until_a_replica_has_its_event(mesh: Mesh, stubs: Stubs) -> None:
    author = stubs.sign_up("replicas")
    r = redis_client(mesh.redis_url)

    def rows() -> int:
        with psycopg.connect(mesh.database_url, autocommit=True) as conn:
            return int(conn.execute("SELECT count(*) FROM tweets.outbox").fetchone()[0])  # type: ignore[index]

    mesh.start_service("tweets", {"OUTBOX_REPLICAS": "1", "OUTBOX_SWEEP_SECONDS": "0.5"})
    try:
        tweet = stubs.post(author, "safe once a replica has it")  # acknowledged all the same
        assert rows() >= 1  # relayed, but with no replica to hold it: not safe yet
        with tempfile.TemporaryDirectory(prefix="tweetmesh-replica-") as folder:
            replica = start_redis(Path(folder), MeshPorts.free().redis)
            try:
                redis_client(replica.url).replicaof("127.0.0.1", r.connection_pool.connection_kwargs["port"])
                eventually(lambda: rows() == 0, timeout=60, interval=0.5)
            finally:
                replica.process.stop()
        events: list[Any] = r.xrange(TWEETS_STREAM, count=100_000)  # type: ignore[assignment]
        assert any(tweet.tweet_id.encode() in f[b"data"] for _, f in events)
    finally:
        mesh.start_service("tweets")


async def test_a_consumer_reading_every_interval_takes_a_steady_flow_a_batch_at_a_time(mesh: Mesh) -> None:
    stream = f"test:read-every:{uuid.uuid4().hex}"
    client = aioredis.Redis.from_url(mesh.redis_url)
    batches: list[list[bytes]] = []

    async def handle(entries: list[Entry]) -> list[BaseException | None]:
        batches.append([e.fields[b"n"] for e in entries])
        return [None] * len(entries)

    consumer = StreamConsumer(
        client,
        stream,
        "g",
        "c",
        batch_handler=handle,
        claim_idle_ms=60_000,
        max_deliveries=3,
        forget_idle_ms=60_000,
        block_ms=100,
        read_every_ms=2000,
    )
    await consumer.ensure_group()
    running = asyncio.create_task(consumer.run())

    async def handled(count: int) -> None:
        deadline = time.monotonic() + 20
        while sum(len(b) for b in batches) < count:
            assert time.monotonic() < deadline, f"handled {batches}, expected {count} entries"
            await asyncio.sleep(0.02)

    try:
        # The first entry is read as soon as it comes, alone.
        await client.xadd(stream, {"n": 0})
        await handled(1)
        # Those that come one by one within the interval are read together, once it has passed.
        for n in range(1, 5):
            await client.xadd(stream, {"n": n})
        await handled(5)
        assert batches == [[b"0"], [b"1", b"2", b"3", b"4"]]
        pending: Any = await client.xpending(stream, "g")
        assert pending["pending"] == 0  # each batch acknowledged
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await client.delete(stream)
        await client.aclose()
