"""A live stream on in-memory fakes: a tweet counts as sent only once hydrated, heartbeats come on
a clock even when the stream is busy, and a resume from further back than the replay reaches says
so (a Gap with a page token) instead of pretending to be complete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import grpc
import pytest
import redis

from meshkit.errors import Unavailable
from meshkit.pagination import PageTokens
from social.live import LiveTweet, TweetEdited, parse_message, tweet_message
from tests.fakes import FakeFollowGraph, FakeLiveFeed, FakeTimelineStore, FakeTweetIndex
from timeline_svc.service import GlobalTimeline, HomeTimeline
from timeline_svc.stream import OUTAGE, Delivery, Gap, Heartbeat, LiveStream, TweetArrived, TweetUpdated


class Flaky:
    """Hydration that leaves out the ids in `missing_once` the first time they are asked for (not
    visible yet to the owner, say)."""

    def __init__(self, missing_once: set[int]) -> None:
        self._missing = set(missing_once)

    async def __call__(self, tweet_ids: Sequence[int]) -> Mapping[int, str]:
        found = {t: f"tweet-{t}" for t in tweet_ids if t not in self._missing}
        self._missing -= set(tweet_ids)
        return found


async def test_a_tweet_hydration_left_out_is_sent_when_it_arrives_again() -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    # 5 comes again (a redelivery)
    for message in [LiveTweet(5, False), LiveTweet(6, False), LiveTweet(5, False)]:
        queue.put_nowait(message)
    stream = LiveStream(FakeLiveFeed(), queue, None, Flaky({5}), heartbeat_seconds=60)
    events = stream.follow()
    assert await anext(events) == Heartbeat()  # listening
    assert [await anext(events), await anext(events)] == [
        TweetArrived("tweet-6", live=True),
        TweetArrived("tweet-5", live=True),
    ]
    await events.aclose()


async def test_an_edit_is_sent_as_an_update_even_of_a_tweet_already_sent() -> None:
    assert parse_message(tweet_message(7, edited=True).encode()) == TweetEdited(7)
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    messages: list[Delivery] = [LiveTweet(7, False), TweetEdited(7), TweetEdited(8), TweetEdited(9)]
    for message in messages:
        queue.put_nowait(message)
    stream = LiveStream(FakeLiveFeed(), queue, None, Flaky({9}), heartbeat_seconds=60)
    events = stream.follow()
    assert await anext(events) == Heartbeat()
    # 7 sent, then its update; 8 (shown from a page, say) updated too; 9, gone meanwhile, is not.
    assert [await anext(events) for _ in range(3)] == [
        TweetArrived("tweet-7", live=True),
        TweetUpdated("tweet-7"),
        TweetUpdated("tweet-8"),
    ]
    await events.aclose()


class DownAfter:
    """Hydration that answers `answered` calls, then fails as an unreachable owner does."""

    def __init__(self, answered: int, failure: BaseException) -> None:
        self._left = answered
        self._failure = failure

    async def __call__(self, tweet_ids: Sequence[int]) -> Mapping[int, str]:
        if self._left == 0:
            raise self._failure
        self._left -= 1
        return {t: f"tweet-{t}" for t in tweet_ids}


@pytest.mark.parametrize(
    "failure",
    [
        redis.ConnectionError("connection refused"),
        grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "peer"),
    ],
    ids=["redis", "peer"],
)
async def test_an_outage_mid_stream_ends_it_with_where_to_resume(failure: BaseException) -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for message in [LiveTweet(5, False), LiveTweet(6, False)]:
        queue.put_nowait(message)
    stream = LiveStream(FakeLiveFeed(), queue, 3, DownAfter(1, failure), heartbeat_seconds=60)
    events = stream.follow()
    assert await anext(events) == Heartbeat()
    assert await anext(events) == TweetArrived("tweet-5", live=True)
    # 6 could not be shown: the client resumes after 5 (the replay from the timeline sends 6).
    with pytest.raises(Unavailable) as ended:
        await anext(events)
    assert ended.value.reason == OUTAGE
    assert ended.value.metadata == {"since_tweet_id": "5"}


async def test_a_fault_of_the_code_mid_stream_is_not_an_outage() -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    queue.put_nowait(LiveTweet(5, False))
    stream = LiveStream(FakeLiveFeed(), queue, None, DownAfter(0, KeyError("bug")), heartbeat_seconds=60)
    events = stream.follow()
    assert await anext(events) == Heartbeat()
    with pytest.raises(KeyError):
        await anext(events)


async def test_a_busy_stream_still_gets_a_heartbeat_on_time() -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    stream = LiveStream(FakeLiveFeed(), queue, None, Flaky(set()), heartbeat_seconds=0.2)
    events = stream.follow()
    assert await anext(events) == Heartbeat()  # listening
    started = time.monotonic()
    kinds = []
    n = 0
    while time.monotonic() - started < 10:  # a bound on time, not on tweets: a fast machine sends many
        n += 1
        queue.put_nowait(LiveTweet(n, False))  # a tweet always waiting: never quiet
        event = await anext(events)
        kinds.append(type(event))
        if isinstance(event, Heartbeat):
            break
    await events.aclose()
    assert kinds[-1] is Heartbeat and kinds.count(TweetArrived) > 1
    print(f"first heartbeat of a busy stream after {time.monotonic() - started:.2f} s (interval 0.2 s)")


async def test_every_stream_beats_at_the_same_moments() -> None:
    # Streams opened at different moments beat together (their token checks are then one read).
    interval, opened_at, ends = 0.25, [0.0, 0.0, 0.0], time.monotonic() + 1.2
    beats: list[set[int]] = [set(), set(), set()]

    async def watch(n: int) -> None:
        await asyncio.sleep(0.07 * n)
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        events = LiveStream(FakeLiveFeed(), queue, None, Flaky(set()), heartbeat_seconds=interval).follow()
        assert await anext(events) == Heartbeat()  # listening, at once
        opened_at[n] = time.monotonic()
        while time.monotonic() < ends:
            assert await anext(events) == Heartbeat()
            beats[n].add(round(time.monotonic() / interval))  # which beat of the shared clock
        await events.aclose()

    await asyncio.gather(*(watch(n) for n in range(3)))
    all_open = max(opened_at) / interval
    common = [{b for b in beats[n] if b > all_open + 0.5} for n in range(3)]
    assert len(common[0]) >= 2 and common[0] == common[1] == common[2]


def home_of(tweets: FakeTweetIndex, timelines: FakeTimelineStore) -> HomeTimeline[str]:
    return HomeTimeline(
        FakeFollowGraph.of_following({1: [2]}),
        tweets,
        timelines,
        FakeLiveFeed(),
        PageTokens("secret"),
        original_of=tweets.original_of,
        heartbeat_seconds=60,
        replay_overlap_ms=0,
    )


async def test_a_resume_within_the_window_replays_everything_after_since() -> None:
    tweets = FakeTweetIndex({2: list(range(1, 41))})
    timelines = FakeTimelineStore(existing=[1], max_entries=10)
    timelines.lines[1] = set(range(31, 41))
    stream = home_of(tweets, timelines).stream(1, 35)
    assert [await anext(stream) for _ in range(5)] == [TweetArrived(f"tweet-{t}") for t in range(36, 41)]
    await stream.aclose()


async def test_a_resume_past_the_window_is_completed_from_the_owners_up_to_the_replay_budget() -> None:
    # The window holds 31..40, the client saw 25: 26..30 come from the owners, all in one replay.
    tweets = FakeTweetIndex({2: list(range(1, 41))})
    timelines = FakeTimelineStore(existing=[1], max_entries=15)
    timelines.lines[1] = set(range(31, 41))
    stream = home_of(tweets, timelines).stream(1, 25)
    assert [await anext(stream) for _ in range(15)] == [TweetArrived(f"tweet-{t}") for t in range(26, 41)]
    await stream.aclose()


async def test_a_resume_from_further_back_than_the_replay_says_what_it_left_out() -> None:
    tweets = FakeTweetIndex({2: list(range(1, 41))})
    timelines = FakeTimelineStore(existing=[1], max_entries=10)
    timelines.lines[1] = set(range(31, 41))
    timeline = home_of(tweets, timelines)
    stream = timeline.stream(1, 5)
    gap = await anext(stream)
    assert isinstance(gap, Gap) and (gap.since, gap.before) == (5, 31)
    # The newest 10 are replayed, oldest first...
    assert [await anext(stream) for _ in range(10)] == [TweetArrived(f"tweet-{t}") for t in range(31, 41)]
    await stream.aclose()
    # ...and the page token reads the rest of the home timeline, newest first, down to `since`.
    rest: list[str] = []
    token = gap.page_token
    while token:
        page = (await timeline.page(1, 7, token)).page
        rest.extend(page.items)
        token = page.next_page_token
    assert rest[: 30 - 5] == [f"tweet-{t}" for t in range(30, 5, -1)]


class GlobalPages:
    """tweets_svc's global timeline: `ids` newest first, paged by offset tokens."""

    def __init__(self, ids: list[int]) -> None:
        self._ids = sorted(ids, reverse=True)

    async def global_page(self, page_token: str, page_size: int) -> tuple[list[int], str]:
        start = int(page_token or 0)
        end = start + page_size
        return self._ids[start:end], str(end) if end < len(self._ids) else ""

    async def tweets(self, tweet_ids: Sequence[int]) -> Mapping[int, int]:
        return {t: t for t in tweet_ids}


async def test_the_global_stream_says_what_its_replay_left_out_too() -> None:
    pages = GlobalPages(list(range(1, 351)))
    global_timeline = GlobalTimeline(
        pages, FakeLiveFeed(), id_of=lambda t: t, heartbeat_seconds=60, replay_max=200, replay_overlap_ms=0
    )
    stream = global_timeline.stream(10)
    gap = await anext(stream)
    assert isinstance(gap, Gap) and (gap.since, gap.before) == (10, 151)
    following, _ = await pages.global_page(gap.page_token, 5)
    assert following == [150, 149, 148, 147, 146]  # the token continues just below the replay
    assert [await anext(stream) for _ in range(200)] == [TweetArrived(t) for t in range(151, 351)]
    await stream.aclose()
    near = global_timeline.stream(340)
    assert [await anext(near) for _ in range(10)] == [TweetArrived(t) for t in range(341, 351)]
    await near.aclose()
