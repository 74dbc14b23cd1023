"""The fault tests' clients: a burst of tweets retried with their request_id, a live stream that
resumes with since_tweet_id, and reading everything back for the history checker."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2

from meshkit.rpc_details import error_details
from tests.faults.history import History, Outcome
from tests.helpers import Account, StreamCall, Stubs
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb

# Statuses after which the write may or may not have happened: the client retries with the same
# request_id. Anything else is an answer (and INTERNAL / UNKNOWN are bugs). This client never
# cancels a call, so a CANCELLED is the server's: one stopping (SIGTERM) cancels what it has not
# finished within its grace, a call gRPC had queued but the service not yet begun among them.
INDEFINITE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
DEFINITE_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
CALL_TIMEOUT = 20.0  # far above the services' own limits: a call that reaches it hung
RETRY_BUDGET = 25.0
PACE = 0.03  # between one author's tweets: a steady load while a fault lasts, bounded in count


def reset_by_proxy(error: grpc.RpcError) -> bool:
    """Whether Envoy cut the stream because the process serving it went away mid-response (it
    cannot send a status once the response has begun: it resets the HTTP/2 stream, which gRPC
    reports as INTERNAL "Received RST_STREAM"). The client resumes as for UNAVAILABLE."""
    return error.code() == grpc.StatusCode.INTERNAL and "RST_STREAM" in (error.details() or "")


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    return next(iter(error_details(error, error_details_pb2.ErrorInfo)), None)


@dataclass
class Violations:
    """Statuses no client should ever get, whatever the fault: INTERNAL, UNKNOWN, a hung call."""

    seen: list[str] = field(default_factory=list)
    retries: int = 0  # answers that said "not now" (UNAVAILABLE), each followed by a retry
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str) -> None:
        with self._lock:
            self.seen.append(what)

    def retried(self) -> None:
        with self._lock:
            self.retries += 1


def _backoff(attempt: int) -> float:
    """Exponential with full jitter, capped at 1 s: clients must not stampede a recovering mesh."""
    return float(random.uniform(0, min(1.0, 0.05 * 2**attempt)))


def retrying(call: Callable[[], object], what: str, violations: Violations) -> object:
    """Runs an idempotent call until it answers (retrying UNAVAILABLE within RETRY_BUDGET)."""
    deadline = time.monotonic() + RETRY_BUDGET
    attempt = 0
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            code = error.code()
            if code not in INDEFINITE or time.monotonic() > deadline:
                violations.add(f"{what}: {code.name} {error.details()}")
                raise
            violations.retried()
        time.sleep(_backoff(attempt))
        attempt += 1


def post(stubs: Stubs, author: Account, write_id: str, history: History, violations: Violations) -> None:
    """One write: CreateTweet with text = request_id = write_id, retried until it is answered."""
    request = tweets_pb.CreateTweetRequest(text=write_id, request_id=write_id)
    deadline = time.monotonic() + RETRY_BUDGET
    attempt = 0
    while True:
        try:
            stubs.tweets.CreateTweet(request, metadata=author.auth, timeout=CALL_TIMEOUT)
            history.complete(write_id, Outcome.OK)
            return
        except grpc.RpcError as error:
            code = error.code()
            if code in DEFINITE_REFUSALS:
                history.complete(write_id, Outcome.FAILED)
                violations.add(f"CreateTweet {write_id}: refused with {code.name}: {error.details()}")
                return
            if code not in INDEFINITE:
                violations.add(f"CreateTweet {write_id}: {code.name}: {error.details()}")
                return  # outcome stays unknown
            if time.monotonic() > deadline:
                return
            violations.retried()
        time.sleep(_backoff(attempt))
        attempt += 1


@dataclass
class Population:
    """Authors who post, readers who follow every author; read back through user and home timelines."""

    authors: list[Account]
    readers: list[Account]

    def targets(self, author: Account) -> list[str]:
        return [f"user:{author.user_id}", *(f"home:{r.user_id}" for r in self.readers)]


def populate(stubs: Stubs, authors: int = 3, readers: int = 2) -> Population:
    people = Population(
        [stubs.sign_up("author") for _ in range(authors)],
        [stubs.sign_up("reader") for _ in range(readers)],
    )
    for reader in people.readers:
        for author in people.authors:
            stubs.follow(reader, author)
        stubs.home(reader)  # built now, so the burst reaches it through fan-out (not a rebuild)
    return people


def burst(
    stubs: Stubs,
    people: Population,
    scenario: str,
    history: History,
    violations: Violations,
    fault: Callable[[], None],
    *,
    before: int = 5,
    after: int = 5,
    most: int = 150,
    extra_targets: Callable[[Account], list[str]] = lambda _: [],
) -> None:
    """Each author posts on its own thread, a little apart, for as long as the fault lasts: `fault`
    runs once every author has `before` acknowledged tweets, and each writes `after` more once it
    returns (at most `most` in all)."""
    ready = threading.Barrier(len(people.authors) + 1)
    done = threading.Event()

    def write(index: int, author: Account) -> None:
        extra = 0
        for n in range(most):
            write_id = f"{scenario}-{index}-{n}"
            history.attempt(write_id, [*people.targets(author), *extra_targets(author)])
            post(stubs, author, write_id, history, violations)
            if n + 1 == before:
                ready.wait(timeout=60)
            if done.is_set():
                extra += 1
                if extra >= after:
                    return
            time.sleep(PACE)

    threads = [threading.Thread(target=write, args=(i, a), daemon=True) for i, a in enumerate(people.authors)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=60)
    try:
        fault()
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=RETRY_BUDGET * (after + 1))
    assert not any(t.is_alive() for t in threads), "a writer is stuck"


def read_back(stubs: Stubs, people: Population, violations: Violations) -> dict[str, list[str]]:
    """Every write id as each reader finds it, following page tokens to the end."""

    def texts(call: Callable[[str], Any], what: str) -> list[str]:
        found: list[str] = []
        token = ""
        while True:
            reply: Any = retrying(functools.partial(call, token), what, violations)
            found.extend(t.text for t in reply.tweets)
            token = reply.next_page_token
            if not token:
                return found

    def user_tweets(author: Account) -> list[str]:
        return texts(
            lambda token: stubs.tweets.ListUserTweets(
                tweets_pb.ListUserTweetsRequest(user_id=author.user_id, page_size=100, page_token=token),
                timeout=CALL_TIMEOUT,
            ),
            "ListUserTweets",
        )

    def home(reader: Account) -> list[str]:
        return texts(
            lambda token: stubs.timeline.GetHomeTimeline(
                timeline_pb.GetHomeTimelineRequest(page_size=100, page_token=token),
                metadata=reader.auth,
                timeout=CALL_TIMEOUT,
            ),
            "GetHomeTimeline",
        )

    reads = {f"user:{a.user_id}": user_tweets(a) for a in people.authors}
    reads |= {f"home:{r.user_id}": home(r) for r in people.readers}
    return reads


class ResumingStream:
    """A client of StreamHomeTimeline that does what the API asks: when a stream ends with
    UNAVAILABLE (or is reset by Envoy: reset_by_proxy) it reconnects with since_tweet_id = the
    resume point the error names (else the newest tweet it got), and dedupes by id."""

    def __init__(self, stubs: Stubs, viewer: Account, violations: Violations) -> None:
        self._stubs = stubs
        self._viewer = viewer
        self._violations = violations
        self.texts: list[str] = []
        self.endings: list[tuple[str, str, str]] = []  # (code, ErrorInfo reason, since_tweet_id hint)
        self._newest = ""
        self._call: StreamCall | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout=20):
            raise AssertionError("the stream never started")

    def _events(self) -> Iterator[timeline_pb.StreamHomeTimelineResponse]:
        call = self._stubs.timeline.StreamHomeTimeline(
            timeline_pb.StreamHomeTimelineRequest(since_tweet_id=self._newest), metadata=self._viewer.auth
        )
        self._call = call
        yield from call

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                for event in self._events():
                    attempt = 0
                    self._listening.set()  # the first heartbeat or tweet: subscribed
                    if event.WhichOneof("event") == "tweet":
                        self.texts.append(event.tweet.text)
                        self._newest = max(self._newest, event.tweet.tweet_id)
            except grpc.RpcError as error:
                code = error.code()
                if self._stop.is_set() and code == grpc.StatusCode.CANCELLED:
                    return
                info = error_info(error)
                hint = info.metadata.get("since_tweet_id", "?") if info else "?"
                reason = "RST_STREAM" if reset_by_proxy(error) else info.reason if info else ""
                self.endings.append((code.name, reason, hint))
                if hint not in {"", "?"}:
                    self._newest = hint  # where the server says to resume (it may be older)
                if code != grpc.StatusCode.UNAVAILABLE and not reset_by_proxy(error):
                    self._violations.add(f"StreamHomeTimeline ended with {code.name}: {error.details()}")
                    return
            time.sleep(_backoff(attempt))
            attempt += 1

    def close(self) -> list[str]:
        """Stops reading; returns the write ids received, deduped by the client as documented."""
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._thread.join(timeout=10)
        return list(dict.fromkeys(self.texts))
