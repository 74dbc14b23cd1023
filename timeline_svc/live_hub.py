"""The live hub: one Redis pub/sub connection per timeline_svc process (on a Redis 7 cluster, one
per master: sharded pub/sub), whose channels (social.live) are fanned out in memory to the open
streams that listen to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from prometheus_client import Counter as MetricCounter
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import MovedError

from meshkit.errors import DEPENDENCY_ERRORS, Unavailable
from meshkit.metrics import REGISTRY
from meshkit.shards import key_on, nodes_of, primaries, sharded_pubsub
from social.live import LiveMessage, parse_message
from social.timelines import sharded_channel
from timeline_svc.stream import Delivery, FeedEnded

log = logging.getLogger(__name__)
_QUEUE_MAX = 1000
_CANARY_CHECK_SECONDS = 1.0
_CANARY_TTL_SECONDS = 3600
# How long health reports the live feed down after its reader failed (readiness: new streams go to
# the other replicas meanwhile; the next stream opened here starts a new reader).
READER_FAILURE_REPORT_SECONDS = 30.0
# Messages decoded lately: a tweet published on many users' channels is decoded once.
_DECODED_MAX = 4096
# The replies to (un)subscribing, classic and sharded, and the messages.
_SUBSCRIBED, _UNSUBSCRIBED = {"subscribe", "ssubscribe"}, {"unsubscribe", "sunsubscribe"}
_MESSAGES = {"message", "smessage"}
# What _ShardedPubSub reads when a node refused an SSUBSCRIBE with MOVED (the slot is another's now).
_MOVED = "moved"

DROPPED = MetricCounter(
    "tweetmesh_live_messages_dropped",
    "Messages on live channels that could not be parsed and were skipped.",
    registry=REGISTRY,
)
READER_FAILURES = MetricCounter(
    "tweetmesh_live_reader_failures",
    "Times the live hub's reader failed unexpectedly (its streams ended with a resume point).",
    registry=REGISTRY,
)


class LiveHub:
    """One Redis pub/sub connection per process, one subscription per channel with open streams
    (a user's home, a celebrity, or the global timeline), fanned out in memory to each of those
    streams. When the connection breaks, Redis loses its data or the service stops, every open
    stream gets a FeedEnded (and ends; clients reconnect and replay).

    Opening many streams at once stays cheap: the channels asked for within one turn of the event
    loop are subscribed with one SUBSCRIBE (no lock, no round trip per stream), and `attach`
    returns once Redis has confirmed the subscription, so that a stream reads its snapshot only
    when it is already listening (a tweet published in between would otherwise be in neither).

    A message is decoded once however many channels carry it (a tweet fanned out to many users'
    channels is the same bytes on each). A message that does not parse is logged, counted and
    skipped. Should the reader fail anyway,
    every open stream ends (FEED_LOST, with its resume point), the failure is counted, and health
    reports the live feed down for READER_FAILURE_REPORT_SECONDS (see `check`).

    A wipe (FLUSHALL, a restart without persistence) drops events that fan-out had not read yet:
    their tweets are in PostgreSQL and in rebuilt timelines, but never published. A canary key
    (on a Redis Cluster, one on each master: a node is wiped alone), checked every second while
    streams are open, tells: once it is gone, open streams end and resume from what they got
    before the last check that found it. A connection that broke and was reconnected by the client
    (redis-py retries) may have missed messages too: streams end.

    On a Redis Cluster whose masters run Redis 7 (meshkit.shards.sharded_pubsub) pub/sub is
    sharded: a channel (named by social.timelines.sharded_channel) is SSUBSCRIBEd on the master
    owning its slot, one connection per master (_ShardedPubSub), and a message travels to that
    node only. A channel that moves to another node (a reshard: Redis unsubscribes it) ends every
    open stream, which reopen on the new owner. On an older cluster the connection is to one node,
    whose bus brings it what is published on any (classic pub/sub: docs/architecture.md, "Redis
    Cluster").
    """

    def __init__(self, redis: aioredis.Redis, confirm_timeout_seconds: float) -> None:
        self._redis = redis
        self._confirm_timeout = confirm_timeout_seconds
        self._sharded: bool | None = None  # known at the first attach (sharded_pubsub)
        self._pubsub = self._new_pubsub()
        self._decoded: dict[bytes, LiveMessage] = {}
        self._queues: dict[str, set[asyncio.Queue[Delivery]]] = {}
        # Per channel with streams: resolved once Redis confirmed this process listens to it.
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        # SUBSCRIBE and UNSUBSCRIBE sent per channel whose reply was not read yet.
        self._in_flight: Counter[str] = Counter()
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopped: FeedEnded | None = None
        self._canary = f"live:canary:{uuid.uuid4().hex}"
        self._canary_keys: list[str] | None = None
        self._intact_at: float | None = None  # when the canary was last seen; None: not planted
        self._connections = 0  # connects of the current pub/sub connection (a second: a reconnect)
        self._moved = False  # Redis unsubscribed a sharded channel: it moved to another node
        self._failed_at: float | None = None

    def _new_pubsub(self) -> Any:
        self._connections = 0
        self._moved = False
        if self._sharded:
            return _ShardedPubSub(cast(RedisCluster, self._redis))
        return self._redis.pubsub()

    async def _name(self, channel: str) -> str:
        """The channel's name on the wire: sharded_channel's where pub/sub is sharded."""
        if self._sharded is None:
            try:
                sharded = await sharded_pubsub(self._redis)
            except DEPENDENCY_ERRORS:
                raise Unavailable(
                    "the live feed is unavailable; retry", reason="FEED_UNAVAILABLE", retry_after_seconds=1.0
                ) from None
            if self._sharded is None:
                self._sharded = sharded
                if sharded:  # the classic one made before it was known has not connected
                    self._pubsub = self._new_pubsub()
        return sharded_channel(channel) if self._sharded else channel

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[Delivery]]:
        queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=_QUEUE_MAX)
        try:
            await self.attach(channel, queue)
            yield queue
        finally:
            await self.detach(channel, queue)

    async def attach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None:
        """Delivers `channel` into `queue` too (a celebrity's channel into a follower's stream) from
        the moment Redis confirms the subscription, which it waits for; the process subscribes to
        a channel once, however many streams want it. UNAVAILABLE if Redis does not confirm within
        the deadline."""
        if self._stopped is not None:
            if queue.empty():
                queue.put_nowait(self._stopped)
            return
        channel = await self._name(channel)
        queues = self._queues.get(channel)
        if queues is None:
            queues = self._queues[channel] = set()
            self._confirmed[channel] = asyncio.get_running_loop().create_future()
            self._to_unsubscribe.discard(channel)
            self._to_subscribe.add(channel)
            self._flush_soon()
        queues.add(queue)
        confirmed = self._confirmed[channel]
        if not confirmed.done():
            try:
                async with asyncio.timeout(self._confirm_timeout):
                    await asyncio.shield(confirmed)
            except TimeoutError:
                raise Unavailable(
                    "the live feed did not confirm the subscription in time; retry",
                    reason="FEED_UNAVAILABLE",
                    retry_after_seconds=1.0,
                ) from None

    async def detach(self, channel: str, queue: asyncio.Queue[Delivery]) -> None:
        if self._sharded is None:
            return  # never attached
        channel = await self._name(channel)
        queues = self._queues.get(channel)
        if queues is None:
            return
        queues.discard(queue)
        if not queues:
            del self._queues[channel]
            self._confirmed.pop(channel, None)
            self._to_subscribe.discard(channel)
            self._to_unsubscribe.add(channel)
            self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._send_subscriptions(), name="live-hub-subscriptions")

    async def _send_subscriptions(self) -> None:
        """Sends what the streams asked for since the last turn of the event loop, as one UNSUBSCRIBE
        and one SUBSCRIBE; starts the reader that reads the confirmations."""
        await asyncio.sleep(0)  # the other streams opening in this turn join the same command
        while self._to_subscribe or self._to_unsubscribe:
            leaving, self._to_unsubscribe = sorted(self._to_unsubscribe), set()
            joining, self._to_subscribe = sorted(self._to_subscribe), set()
            try:
                if leaving:
                    self._in_flight.update(leaving)
                    await self._pubsub.unsubscribe(*leaving)
                if joining:
                    self._in_flight.update(joining)
                    await self._pubsub.subscribe(*joining)
                    self._watch_reconnects()
            except DEPENDENCY_ERRORS as error:
                log.warning("live feed connection lost; ending open streams", extra={"error": error})
                self._feed_lost("the live feed was interrupted", self._intact_at)
                return
            if self._queues and (self._reader is None or self._reader.done()):
                # A wipe while no stream listened harms none: the new reader plants a new canary.
                self._intact_at = None
                self._reader = asyncio.create_task(self._read(), name="live-hub-reader")
                self._reader.add_done_callback(self._reader_done)

    def _watch_reconnects(self) -> None:
        if isinstance(self._pubsub, _ShardedPubSub):
            return  # it watches its connections itself
        connection = self._pubsub.connection
        if connection is not None and self._connections == 0:
            self._connections = 1
            connection.register_connect_callback(self._connected)

    async def _connected(self, connection: object) -> None:
        self._connections += 1

    def _reconnected(self) -> bool:
        """Whether the client reconnected the pub/sub connection (one of them) by itself."""
        if isinstance(self._pubsub, _ShardedPubSub):
            return self._pubsub.reconnected
        return self._connections > 1

    def _canaries(self) -> list[str]:
        """The canary's keys: one on each master of a cluster (a wipe of any one node loses what
        fan-out had written there), the one key on one server."""
        if self._canary_keys is None:
            self._canary_keys = [key_on(self._redis, self._canary, node) for node in primaries(self._redis)]
        return self._canary_keys

    async def _redis_kept_its_data(self) -> bool:
        """Whether the canary is still there (planting it when it is not); false once per wipe."""
        checked_at = time.monotonic()
        missing = [key for key in self._canaries() if not await self._redis.expire(key, _CANARY_TTL_SECONDS)]
        if not missing:
            self._intact_at = checked_at
            return True
        for key in missing:
            await self._redis.set(key, b"1", ex=_CANARY_TTL_SECONDS)
        planted_before = self._intact_at is not None
        if not planted_before:
            self._intact_at = checked_at
        return not planted_before

    async def _read(self) -> None:
        next_check = 0.0
        read_ok_at = time.monotonic()
        while self._queues or self._in_flight:
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + _CANARY_CHECK_SECONDS
                    if not await self._redis_kept_its_data():
                        log.warning("Redis lost its data; ending open streams so they replay")
                        self._feed_lost("Redis lost its data", self._intact_at)
                        return
                message = await self._pubsub.get_message(timeout=_CANARY_CHECK_SECONDS)
            except DEPENDENCY_ERRORS as error:
                log.warning("live feed connection lost; ending open streams", extra={"error": error})
                intact = min(read_ok_at, self._intact_at or read_ok_at)
                self._feed_lost("the live feed was interrupted", intact)
                return
            if self._reconnected():
                # The client reconnected by itself: what was published meanwhile never came.
                log.warning("live feed reconnected; ending open streams so they replay")
                self._feed_lost("the live feed was interrupted", read_ok_at)
                return
            if message is not None:
                self._handle(message)
            if self._moved:
                log.warning("a live channel moved to another Redis node; ending open streams so they reopen")
                with contextlib.suppress(*DEPENDENCY_ERRORS):  # the slots anew: they reopen on its new node
                    await cast(RedisCluster, self._redis).nodes_manager.initialize()
                self._feed_lost("the live feed moved", read_ok_at)
                return
            read_ok_at = time.monotonic()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message["channel"].decode() if isinstance(message.get("channel"), bytes) else None
        if channel is None:
            return  # a health-check pong
        if kind == _MOVED:
            self._moved = True
            return
        if kind in _SUBSCRIBED or kind in _UNSUBSCRIBED:
            if kind == "sunsubscribe" and self._in_flight[channel] <= 0:
                # Not asked for: its slot went to another node (streams listening there end).
                self._moved = self._moved or channel in self._queues
                return
            self._in_flight[channel] -= 1
            if self._in_flight[channel] <= 0:
                del self._in_flight[channel]
                confirmed = self._confirmed.get(channel)
                # Confirmed once the last SUBSCRIBE sent for it is answered (not an earlier one).
                if kind in _SUBSCRIBED and confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            return
        if kind not in _MESSAGES:
            return
        try:
            event = self._decode(message["data"])
        except ValueError:
            DROPPED.inc()
            log.warning("skipped a malformed live message", extra={"channel": channel})
            return
        for queue in list(self._queues.get(channel, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stream too slow to keep up: end it, it will replay
                queue.get_nowait()
                queue.put_nowait(FeedEnded("TOO_SLOW", "the stream fell too far behind"))

    def _decode(self, data: bytes) -> LiveMessage:
        """The message, decoded once however many channels carry it."""
        event = self._decoded.get(data)
        if event is None:
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            event = self._decoded[data] = parse_message(data)
        return event

    def _reader_done(self, reader: asyncio.Task[None]) -> None:
        if reader.cancelled() or reader.exception() is None:
            return
        READER_FAILURES.inc()
        self._failed_at = time.monotonic()
        log.error("the live reader failed; ending open streams", exc_info=reader.exception())
        # The feed itself may be intact (Redis kept its data): streams resume from what they sent.
        self._feed_lost("the live feed failed", None)

    async def check(self) -> None:
        """For health: raises while the reader's last failure is recent."""
        if self._failed_at is not None and time.monotonic() - self._failed_at < READER_FAILURE_REPORT_SECONDS:
            raise Unavailable("the live feed's reader failed", reason="FEED_FAILED")

    def _end_each(self, ended: FeedEnded) -> None:
        for queues in self._queues.values():
            for queue in queues:
                if queue.full():  # the stream ends anyway, and the end must be in its queue
                    queue.get_nowait()
                queue.put_nowait(ended)

    def _feed_lost(self, why: str, intact_until: float | None) -> None:
        """Ends every open stream, and starts afresh: a new connection for the streams to come."""
        self._end_each(FeedEnded("FEED_LOST", why, intact_until=intact_until))
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.set_result(None)  # the stream goes on to find its end in its queue
        self._intact_at = None  # planted again with the next streams
        self._queues.clear()
        self._confirmed.clear()
        self._in_flight.clear()
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()
        old, self._pubsub = self._pubsub, self._new_pubsub()
        task = asyncio.get_running_loop().create_task(_close_quietly(old))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def stopping(self) -> None:
        """Ends every open stream, and any opened from now on, with SERVER_STOPPING."""
        self._stopped = FeedEnded("SERVER_STOPPING", "the server is stopping", retry_after_seconds=0.2)
        self._end_each(self._stopped)
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.set_result(None)

    async def close(self) -> None:
        for task in (self._reader, self._flush):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await _close_quietly(self._pubsub)


_closing: set[asyncio.Task[None]] = set()


async def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()


class _ShardedPubSub:
    """Sharded pub/sub on a Redis Cluster, as the hub uses a PubSub: one connection to each master
    owning a channel it listens to; SSUBSCRIBE and SUNSUBSCRIBE sent per slot (Redis takes the
    channels of one slot in a command); the replies and messages of every connection read as one
    (`get_message`). A connection that fails makes `get_message` raise; one that the client
    reconnected by itself shows in `reconnected`."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._nodes: dict[str, tuple[aioredis.ConnectionPool, _NodePubSub]] = {}
        self._node_of: dict[str, str] = {}  # channel -> the node it was subscribed on
        self._readers: set[asyncio.Task[None]] = set()
        self._received: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._connects: dict[str, _Connects] = {}

    @property
    def reconnected(self) -> bool:
        return any(c.count > 1 for c in self._connects.values())

    async def subscribe(self, *channels: str) -> None:
        for node, positions in nodes_of(self._cluster, channels):
            assert node is not None  # on a cluster, every group has its node
            pubsub = self._pubsub_on(node.name, node.connection_class, node.connection_kwargs)
            for same_slot in _by_slot([channels[n] for n in positions]):
                await pubsub.ssubscribe(*same_slot)
                self._node_of.update(dict.fromkeys(same_slot, node.name))
            self._watch(node.name, pubsub)

    async def unsubscribe(self, *channels: str) -> None:
        by_node: dict[str, list[str]] = {}
        for channel in channels:
            if (name := self._node_of.pop(channel, None)) is not None:
                by_node.setdefault(name, []).append(channel)
        for name, theirs in by_node.items():
            _, pubsub = self._nodes[name]
            for same_slot in _by_slot(theirs):
                await pubsub.sunsubscribe(*same_slot)

    def _pubsub_on(self, name: str, connection_class: type, kwargs: dict[str, Any]) -> _NodePubSub:
        if name not in self._nodes:
            pool = aioredis.ConnectionPool(connection_class=connection_class, **kwargs)
            self._nodes[name] = (pool, _NodePubSub(connection_pool=pool))
        return self._nodes[name][1]

    def _watch(self, name: str, pubsub: PubSub) -> None:
        """Once the node's first SSUBSCRIBE is sent (it connected): its reconnects counted, its
        replies and messages read."""
        if pubsub.connection is not None and name not in self._connects:
            self._connects[name] = connects = _Connects()
            pubsub.connection.register_connect_callback(connects.connected)
            reader = asyncio.get_running_loop().create_task(self._read(pubsub), name=f"live-hub-{name}")
            self._readers.add(reader)

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=_CANARY_CHECK_SECONDS)
            except MovedError:  # an SSUBSCRIBE sent by a stale map of the slots
                message = {"type": _MOVED, "channel": b"", "data": None}
            except Exception as error:
                self._received.put_nowait(error)
                return
            if message is not None:
                self._received.put_nowait(message)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 (as PubSub's)
        try:
            async with asyncio.timeout(timeout):
                received = await self._received.get()
        except TimeoutError:
            return None
        if isinstance(received, BaseException):
            raise received
        return received

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for pool, pubsub in self._nodes.values():
            await _close_quietly(pubsub)
            with contextlib.suppress(Exception):
                await pool.disconnect()


class _NodePubSub(PubSub):
    """One master's sharded subscriptions. A reconnect does not make them again (redis-py would send
    one SSUBSCRIBE of every channel, which Redis refuses across slots): the hub, seeing the
    reconnect, ends the streams, which reopen."""

    async def _resubscribe_shard_channels(self) -> None:
        pass


class _Connects:
    """The connects of one connection: a second is a reconnect (the client holds the callback weakly)."""

    def __init__(self) -> None:
        self.count = 1

    async def connected(self, connection: object) -> None:
        self.count += 1


def _by_slot(channels: Sequence[str]) -> list[list[str]]:
    """The channels grouped by slot."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())
