"""The live hub on a scripted pub/sub connection: streams opened together share one SUBSCRIBE, a
stream is attached only once Redis confirmed its subscription, a malformed message is skipped, and
a reader that fails anyway ends every stream with a resume point and reports the feed down.
(tests/integration/test_live_feed.py runs the same against a real Redis.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshkit.errors import Unavailable
from social import LiveTweet
from timeline_svc.live_hub import LiveHub
from timeline_svc.stream import Delivery, FeedEnded


class ScriptedPubSub:
    """redis.asyncio's PubSub as the hub uses it: commands are recorded, and Redis's replies are
    what the test puts in `replies` (confirmations only when `confirm` is set)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.replies: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self.confirm = True
        self.connection: Any = None

    async def subscribe(self, *channels: str) -> None:
        self.commands.append(("SUBSCRIBE", *channels))
        if self.confirm:
            for channel in channels:
                self.replies.put_nowait({"type": "subscribe", "channel": channel.encode(), "data": 1})

    async def unsubscribe(self, *channels: str) -> None:
        self.commands.append(("UNSUBSCRIBE", *channels))
        for channel in channels:
            self.replies.put_nowait({"type": "unsubscribe", "channel": channel.encode(), "data": 0})

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 (as redis-py)
        try:
            reply = await asyncio.wait_for(self.replies.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def publish(self, channel: str, data: bytes) -> None:
        self.replies.put_nowait({"type": "message", "channel": channel.encode(), "data": data})

    async def aclose(self) -> None:
        pass


class ScriptedRedis:
    def __init__(self) -> None:
        self.pubsubs: list[ScriptedPubSub] = []
        self.keys: set[str] = set()

    def pubsub(self) -> ScriptedPubSub:
        self.pubsubs.append(ScriptedPubSub())
        return self.pubsubs[-1]

    async def expire(self, key: str, seconds: int) -> bool:
        return key in self.keys

    async def set(self, key: str, value: bytes, ex: int) -> None:
        self.keys.add(key)


def hub() -> tuple[LiveHub, ScriptedRedis]:
    redis = ScriptedRedis()
    return LiveHub(redis, confirm_timeout_seconds=0.5), redis  # type: ignore[arg-type]


def queue() -> asyncio.Queue[Delivery]:
    return asyncio.Queue()


async def test_streams_opened_together_share_one_subscribe_and_wait_for_its_confirmation() -> None:
    live, redis = hub()
    queues = [queue() for _ in range(50)]
    await asyncio.gather(*(live.attach(f"live:{n % 10}", q) for n, q in enumerate(queues)))
    (pubsub,) = redis.pubsubs
    assert pubsub.commands == [("SUBSCRIBE", *sorted(f"live:{n}" for n in range(10)))]
    pubsub.publish("live:3", b"42")
    for n, q in enumerate(queues):
        if n % 10 == 3:
            assert await asyncio.wait_for(q.get(), 1) == LiveTweet(42, False)
    await live.close()


async def test_a_stream_is_not_attached_before_redis_confirms() -> None:
    live, redis = hub()
    pubsub = redis.pubsubs[0]
    pubsub.confirm = False
    attaching = asyncio.create_task(live.attach("live:1", queue()))
    await asyncio.sleep(0.05)
    assert pubsub.commands == [("SUBSCRIBE", "live:1")] and not attaching.done()
    pubsub.replies.put_nowait({"type": "subscribe", "channel": b"live:1", "data": 1})
    await asyncio.wait_for(attaching, 1)
    # Never confirmed: UNAVAILABLE, not a stream that hears nothing.
    with pytest.raises(Unavailable):
        await live.attach("live:2", queue())
    await live.close()


async def test_a_malformed_message_is_skipped_and_the_next_one_delivered() -> None:
    live, redis = hub()
    mine = queue()
    await live.attach("live:global", mine)
    pubsub = redis.pubsubs[0]
    for bad in (b"x", b"c", b"-", b"\xff", b"c+abc", b"12x", b"99999999999999999999", b"0", b"c*5", b" 5"):
        pubsub.publish("live:global", bad)
    pubsub.publish("live:global", b"-7")
    assert await asyncio.wait_for(mine.get(), 1) == LiveTweet(7, True)
    await live.check()  # still healthy
    await live.close()


async def test_a_reader_that_fails_ends_its_streams_with_a_resume_point_and_health_says_so() -> None:
    live, redis = hub()
    mine = queue()
    await live.attach("live:1", mine)
    redis.pubsubs[0].replies.put_nowait(RuntimeError("a bug"))
    ended = await asyncio.wait_for(mine.get(), 1)
    assert isinstance(ended, FeedEnded) and ended.reason == "FEED_LOST"
    assert ended.intact_until is None  # the stream resumes from the newest tweet it sent
    with pytest.raises(Unavailable):
        await live.check()
    # The next stream gets a new connection and a new reader.
    again = queue()
    await live.attach("live:1", again)
    redis.pubsubs[1].publish("live:1", b"9")
    assert await asyncio.wait_for(again.get(), 1) == LiveTweet(9, False)
    await live.close()


async def test_detaching_the_last_stream_of_a_channel_unsubscribes_it() -> None:
    live, redis = hub()
    first, second = queue(), queue()
    await live.attach("live:1", first)
    await live.attach("live:1", second)
    await live.detach("live:1", first)
    await live.detach("live:1", second)
    await asyncio.sleep(0.05)
    assert redis.pubsubs[0].commands == [("SUBSCRIBE", "live:1"), ("UNSUBSCRIBE", "live:1")]
    await live.close()
