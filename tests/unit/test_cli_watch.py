"""`tweetmesh watch` keeps watching through failed opens: a CANCELLED it did not cause, a limit's
RESOURCE_EXHAUSTED and UNAVAILABLE reconnect (after the server's RetryInfo delay, from its resume
point), anything else ends the command; a gap is shown with how to read what it left out."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from meshkit.errors import DomainError, PermissionDenied, ResourceExhausted, Unavailable
from tests.unit.test_rpc_details import Failed
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh_cli import cli
from tweetmesh_cli.config import Session


class Cancelled(DomainError):
    code = grpc.StatusCode.CANCELLED


class Done(Exception):
    """Ends the watch once the scripted opens are used up."""


class FakeTimeline:
    """Answers each StreamHomeTimeline with the next script: events, then maybe an error."""

    def __init__(
        self, scripts: list[tuple[list[timeline_pb.StreamHomeTimelineResponse], DomainError | None]]
    ):
        self.scripts = scripts
        self.asked: list[str] = []

    def StreamHomeTimeline(self, request: Any, metadata: Any) -> Iterator[Any]:
        self.asked.append(request.since_tweet_id)
        if not self.scripts:
            raise Done
        events, error = self.scripts.pop(0)
        yield from events
        if error is not None:
            raise Failed(error)


class FakeClient:
    def __init__(self, timeline: FakeTimeline) -> None:
        self.timeline = timeline

    def session(self) -> Session:
        return Session("token", "1", "alice")

    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer token"),)


def tweet(tweet_id: str) -> timeline_pb.StreamHomeTimelineResponse:
    return timeline_pb.StreamHomeTimelineResponse(
        tweet=tweets_pb.Tweet(tweet_id=tweet_id, text=f"t{tweet_id}")
    )


def watch(timeline: FakeTimeline, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[float]]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    out = io.StringIO()
    with pytest.raises(Done):
        cli.cmd_watch(FakeClient(timeline), cli.parser().parse_args(["watch"]), out)  # type: ignore[arg-type]
    return out.getvalue(), slept


def test_failed_opens_reconnect_from_the_resume_point_after_the_servers_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeline = FakeTimeline(
        [
            ([], Cancelled("Cancelled")),  # the server never accepted the call
            ([], ResourceExhausted("too many streams", retry_after_seconds=7.0)),
            ([tweet("10"), tweet("11")], Unavailable("restarting", metadata={"since_tweet_id": "10"})),
            ([tweet("11"), tweet("12")], None),  # the replay repeats 11: shown once
        ]
    )
    out, slept = watch(timeline, monkeypatch)
    assert timeline.asked == ["", "", "", "10", "12"]  # after the clean close: from the last seen
    assert slept[:3] == [cli.RECONNECT_SECONDS, 7.0, cli.RECONNECT_SECONDS]
    assert [out.count(f"id {n}") for n in ("10", "11", "12")] == [1, 1, 1]
    assert out.count("reconnecting") == 4  # three failures and the server's clean close


def test_any_other_failure_ends_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    timeline = FakeTimeline([([], PermissionDenied("no"))])
    monkeypatch.setattr(time, "sleep", lambda _: None)
    with pytest.raises(grpc.RpcError):
        cli.cmd_watch(FakeClient(timeline), cli.parser().parse_args(["watch"]), io.StringIO())  # type: ignore[arg-type]


def test_a_gap_says_how_to_read_what_it_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    gap = timeline_pb.StreamHomeTimelineResponse(
        gap=timeline_pb.TimelineGap(since_tweet_id="5", before_tweet_id="40", page_token="tok")
    )
    out, _ = watch(FakeTimeline([([gap, tweet("40")], None)]), monkeypatch)
    assert "before 40" in out and "tweetmesh timeline --page-token tok" in out
