"""Where a live stream tells its client to resume: the newest tweet it sent, or, when the feed may
have lost events since some moment, the newest it sent before that moment."""

from __future__ import annotations

import pytest

from timeline_svc.stream import FeedEnded, ResumePoint, stream_ended


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("timeline_svc.stream.time.monotonic", fake)
    return fake


def test_resume_from_the_newest_sent_or_from_before_the_feed_could_lose_events(clock: Clock) -> None:
    resume = ResumePoint(since=5)
    assert resume.as_of(None) == 5
    resume.sent(9)
    clock.now += 2
    resume.sent(7)  # ids are not sent in order (commit order differs slightly)
    clock.now += 2
    resume.sent(12)
    assert resume.as_of(None) == 12
    assert resume.as_of(1003.0) == 9  # 12 came after the feed was last known intact
    assert resume.as_of(999.0) == 5


def test_old_sends_are_folded_into_one_settled_point(clock: Clock) -> None:
    resume = ResumePoint(since=None)
    assert resume.as_of(None) is None
    resume.sent(3)
    clock.now += 120
    resume.sent(4)
    assert resume.as_of(clock.now - 1) == 3


def test_a_stream_ends_with_unavailable_naming_where_to_resume() -> None:
    error = stream_ended(FeedEnded("SERVER_STOPPING", "the server is stopping", 0.2), 42)
    assert error.code.name == "UNAVAILABLE"
    assert error.reason == "SERVER_STOPPING"
    assert error.metadata == {"since_tweet_id": "42"}
    assert error.retry_after_seconds == 0.2
    assert "reconnect with since_tweet_id" in error.message
    assert stream_ended(FeedEnded("FEED_LOST", "lost"), None).metadata == {"since_tweet_id": ""}
