"""Home timeline reads and streams on in-memory fakes: rebuild, the Redis window, paging, dropped
tweets, and a celebrity promoted while a stream is open."""

from __future__ import annotations

from datetime import UTC, datetime

from meshkit.ids import id_at
from meshkit.pagination import PageTokens
from social import CelebrityFollow, LiveTweet
from tests.fakes import FakeFollowGraph, FakeLiveFeed, FakeTimelineStore, FakeTweetIndex
from timeline_svc.service import RETWEET_WINDOW, HomeTimeline, visible_entries
from timeline_svc.stream import Heartbeat, TweetArrived


def home(
    tweets: FakeTweetIndex, timelines: FakeTimelineStore, following: dict[int, list[int]]
) -> HomeTimeline[str]:
    return HomeTimeline(
        FakeFollowGraph.of_following(following),
        tweets,
        timelines,
        FakeLiveFeed(),
        PageTokens("s"),
        original_of=tweets.original_of,
        heartbeat_seconds=1,
    )


async def read_all(timeline: HomeTimeline[str], viewer: int, size: int) -> list[str]:
    out: list[str] = []
    token = ""
    while True:
        page = (await timeline.page(viewer, size, token)).page
        out.extend(page.items)
        token = page.next_page_token
        if not token:
            return out


async def test_missing_timeline_is_rebuilt_once_and_includes_own_tweets() -> None:
    tweets = FakeTweetIndex({1: [5], 2: [3, 9]})
    timelines = FakeTimelineStore(max_entries=100)
    timeline = home(tweets, timelines, {1: [2]})
    assert await read_all(timeline, 1, 10) == ["tweet-9", "tweet-5", "tweet-3"]
    assert await read_all(timeline, 1, 10) == ["tweet-9", "tweet-5", "tweet-3"]
    assert timelines.rebuilds == 1


async def test_paging_continues_past_the_redis_window_into_the_owners() -> None:
    tweets = FakeTweetIndex({2: list(range(1, 26))})
    timelines = FakeTimelineStore(max_entries=10)
    timeline = home(tweets, timelines, {1: [2]})
    assert await read_all(timeline, 1, 4) == [f"tweet-{t}" for t in range(25, 0, -1)]


async def test_deleted_tweets_are_dropped_without_breaking_pages() -> None:
    tweets = FakeTweetIndex({2: [1, 2, 3, 4, 5]}, deleted={4})
    timeline = home(tweets, FakeTimelineStore(max_entries=100), {1: [2]})
    assert await read_all(timeline, 1, 2) == ["tweet-5", "tweet-3", "tweet-2", "tweet-1"]


async def test_last_page_has_no_token() -> None:
    timeline = home(FakeTweetIndex({2: [1, 2]}), FakeTimelineStore(max_entries=100), {1: [2]})
    page = (await timeline.page(1, 2, "")).page
    assert page.items == ["tweet-2", "tweet-1"]
    assert page.next_page_token == ""


async def test_rebuild_keeps_replies_only_between_followed_users_and_adds_mentions() -> None:
    # 1 follows 2 and 3. 2's tweets: 10 plain, 11 replies to 3, 12 replies to 9 (not followed),
    # 13 replies to 1. 9 mentions 1 in 14. Only 12 stays out.
    tweets = FakeTweetIndex(
        {2: [10, 11, 12, 13], 9: [14]}, replies_to={11: 3, 12: 9, 13: 1}, mentions={1: [13, 14]}
    )
    timeline = home(tweets, FakeTimelineStore(max_entries=100), {1: [2, 3]})
    assert await read_all(timeline, 1, 2) == ["tweet-14", "tweet-13", "tweet-11", "tweet-10"]


async def test_a_retweet_of_an_original_already_among_the_older_window_is_hidden_across_pages() -> None:
    # 100 is the original (by 2); 120 and 130 retweet it (by 3) within the window of 40 older
    # entries; 500 retweets it far above the window, so it is shown again.
    filler = [t for t in range(101, 500) if t not in (120, 130)]
    retweets = {120: 100, 130: 100, 500: 100}
    tweets = FakeTweetIndex({2: [100, *filler], 3: [120, 130, 500]}, retweets=retweets)
    timeline = home(tweets, FakeTimelineStore(max_entries=1000), {1: [2, 3]})
    shown = await read_all(timeline, 1, 7)
    assert "tweet-120" not in shown and "tweet-130" not in shown
    assert "tweet-100" in shown and "tweet-500" in shown
    assert len(shown) == 1 + len(filler) + 1


def test_visible_entries_window() -> None:
    ids = [9, 8, 7, *range(6, 6 - RETWEET_WINDOW, -1)]
    originals: dict[int, int | None] = {t: None for t in ids}
    originals[9] = 5  # retweet of 5, which is within the window: hidden
    originals[8] = 1000  # retweet of something not in the window: shown
    del originals[7]  # deleted: hidden
    shown = visible_entries(ids, originals)
    assert shown[:3] == [False, True, False]
    assert all(shown[3:])


async def test_a_page_without_retweets_hydrates_only_the_page() -> None:
    tweets = FakeTweetIndex({2: list(range(1, 200))})
    timeline = home(tweets, FakeTimelineStore(max_entries=300), {1: [2]})
    page = (await timeline.page(1, 10, "")).page
    assert len(page.items) == 10
    assert tweets.hydrated == [11]


async def test_a_stream_gets_what_a_celebrity_posted_before_it_listened_to_their_channel() -> None:
    # Author 7 is promoted while viewer 1's stream is open: their tweet `missed` was published on
    # the celebrity channel before the stream attached to it (it learnt of the promotion late).
    now = id_at(datetime.now(UTC))
    missed, later, before_stream = now + 1, now + 2, id_at(datetime(2025, 1, 1, tzinfo=UTC))
    tweets = FakeTweetIndex({7: [before_stream, missed, later]})
    live = FakeLiveFeed(
        [CelebrityFollow(7, following=True), LiveTweet(later, False), LiveTweet(missed, False)]
    )
    timeline = HomeTimeline(
        FakeFollowGraph.of_following({1: [7]}),
        tweets,
        FakeTimelineStore(max_entries=100),
        live,
        PageTokens("s"),
        original_of=tweets.original_of,
        heartbeat_seconds=0.2,
    )
    stream = timeline.stream(1, None)
    assert [await anext(stream) for _ in range(3)] == [
        Heartbeat(),  # listening from here
        TweetArrived(f"tweet-{missed}", live=True),
        TweetArrived(f"tweet-{later}", live=True),
    ]
    assert live.attached == ["celebrity:7"]
    # `later` and `missed` arriving live as well are not sent again, nor is the older tweet.
    assert isinstance(await anext(stream), Heartbeat)
    await stream.aclose()
