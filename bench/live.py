"""Live delivery: many open StreamHomeTimeline calls spread over worker processes (so the client is
not the bottleneck), a poster at a fixed rate, and the time from each post to each arrival."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.rpc import error_details_pb2

from meshkit.rpc_details import error_details
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc

Arrival = tuple[int, int, float]  # (stream number, tweet id, arrival time)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata that authenticates a call with `token`."""
    return (("authorization", f"Bearer {token}"),)


def _resume_point(error: grpc.aio.AioRpcError) -> tuple[str, str] | None:
    """(reason, since_tweet_id) of a stream the server ended with a resume point, else None."""
    for info in error_details(error, error_details_pb2.ErrorInfo):
        if "since_tweet_id" in info.metadata:
            return info.reason, info.metadata["since_tweet_id"]
    return None


# A stream whose open fails (refused for now, or CANCELLED although this client cancelled nothing:
# gRPC cancels a call the server has not accepted in time) is opened again after this, doubling.
REOPENED = {grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
# A post refused for now, or lost on the way (DEADLINE_EXCEEDED), is sent again the same way.
RETRIED = REOPENED | {grpc.StatusCode.DEADLINE_EXCEEDED}
REOPEN_SECONDS = 0.2
REOPEN_MAX_SECONDS = 5.0


@dataclass
class Watched:
    """What one stream driver saw: each tweet once per stream, how streams ended before the run
    did, and the streams whose open failed (by the status it failed with) before one succeeded."""

    arrivals: dict[tuple[int, int], float] = field(default_factory=dict)
    ends: Counter[str] = field(default_factory=Counter)
    failed_opens: dict[int, list[str]] = field(default_factory=dict)


class _Driver:
    """Each stream as a client should keep one: when the server ends it with a resume point, it
    reconnects from there, so each tweet counts once per stream and a gap would show as missing.
    A CANCELLED it did not cause is a failed open, not its own cancel: it opens again, so a call
    the server never accepted does not leave a deaf stream behind."""

    def __init__(self, stub: Any, streams: int) -> None:  # an aio stub (typed as the sync one)
        self._stub = stub
        self.seen = Watched()
        self.failures: list[str] = []
        self.opened = asyncio.Event()
        self.stopping = False
        self._pending = streams

    def _opened_one(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self.opened.set()

    async def keep(self, number: int, token: str) -> None:
        first, since, backoff = True, "", REOPEN_SECONDS
        while True:
            call = self._stub.StreamHomeTimeline(
                timeline_pb.StreamHomeTimelineRequest(since_tweet_id=since), metadata=bearer(token)
            )
            got_one = False
            try:
                async for event in call:
                    got_one = True
                    if first:  # the server subscribes before it sends anything: from here nothing is missed
                        first = False
                        self._opened_one()
                    if event.WhichOneof("event") == "tweet":
                        self.seen.arrivals.setdefault((number, int(event.tweet.tweet_id)), time.time())
                self.seen.ends["OK"] += 1
                return
            except grpc.aio.AioRpcError as error:
                if self.stopping:  # our own cancel, at the end of the run
                    return
                code = error.code()
                resume = _resume_point(error) if code == grpc.StatusCode.UNAVAILABLE else None
                if resume is not None and not first:
                    self.seen.ends[resume[0]] += 1
                    since = resume[1]  # empty if it had sent nothing: then a gap is possible
                    await asyncio.sleep(0.2)
                    continue
                if not got_one and code in REOPENED:
                    self.seen.failed_opens.setdefault(number, []).append(code.name)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, REOPEN_MAX_SECONDS)
                    continue
                self.failures.append(f"{code.name}: {error.details()}")
                self.seen.ends[code.name] += 1
                if first:
                    self._opened_one()
                return


async def _watch(address: str, tokens: Sequence[tuple[int, str]], ready: Any, stop: Any) -> Watched:
    async with grpc.aio.insecure_channel(address) as channel:
        driver = _Driver(timeline_grpc.TimelineServiceStub(channel), len(tokens))
        tasks = [asyncio.create_task(driver.keep(n, t)) for n, t in tokens]
        try:
            async with asyncio.timeout(120):
                await driver.opened.wait()
            ready.put(len(tokens))
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        finally:
            driver.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if driver.failures:
        print(f"stream driver: {len(driver.failures)} streams failed, e.g. {driver.failures[0]}", flush=True)
    return driver.seen


def _worker(address: str, tokens: list[tuple[int, str]], ready: Any, stop: Any, out: Any) -> None:
    out.put(asyncio.run(_watch(address, tokens, ready, stop)))


@dataclass(frozen=True, slots=True)
class Post:
    author: int  # the author's token index
    tweet_id: int
    sent: float  # when the post was scheduled (a post the driver could not send in time counts from then)
    create_ms: float  # from then until CreateTweet answered


@dataclass
class LiveRun:
    posts: list[Post]
    arrivals: list[Arrival]  # each tweet once per stream
    stream_ends: dict[str, int]  # how streams ended before the run did (a reason, resumed; or a code)
    drained_at: float  # `drain_seconds` after the last post: arrivals after it are late
    achieved_per_s: float  # posts answered per second, from the first scheduled to the last answer
    failed_opens: dict[int, list[str]]  # stream number -> the codes its failed opens ended with
    post_retries: dict[str, int]  # posts sent again, by the code the earlier attempt ended with

    def latencies_ms(self, authors: set[int] | None = None) -> np.ndarray:
        sent = {p.tweet_id: p.sent for p in self.posts if authors is None or p.author in authors}
        return np.array([(at - sent[t]) * 1000 for _, t, at in self.arrivals if t in sent])


async def _post(
    address: str, authors: Sequence[str], schedule: Sequence[int], rate: float, concurrency: int = 64
) -> tuple[list[Post], float, Counter[str]]:
    """Posts one tweet per entry of `schedule` (an index into `authors`) at `rate` per second, each
    stamped with the moment it was scheduled (so a driver or mesh falling behind shows in the
    latencies, not in a lower rate); returns the posts, the rate achieved and the retries by code."""
    posts: list[Post] = []
    retries: Counter[str] = Counter()
    limit = asyncio.Semaphore(concurrency)
    started = time.time()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tweets_grpc.TweetServiceStub(channel)

        async def one(author: int, n: int) -> None:
            scheduled = started + n / rate
            # As a client should: a refused or lost post is sent again with its request_id, which
            # answers the tweet the first attempt created, if it did.
            request = tweets_pb.CreateTweetRequest(
                text=f"live bench post {n}", request_id=f"live-{started}-{n}"
            )
            backoff = REOPEN_SECONDS
            async with limit:
                while True:
                    try:
                        reply = await stub.CreateTweet(request, metadata=bearer(authors[author]), timeout=30)
                        break
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in RETRIED:
                            raise
                        retries[error.code().name] += 1
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, REOPEN_MAX_SECONDS)
            posts.append(Post(author, int(reply.tweet.tweet_id), scheduled, (time.time() - scheduled) * 1000))

        start = time.monotonic()
        tasks = []
        for n, author in enumerate(schedule):
            await asyncio.sleep(max(start + n / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(one(author, n)))
        await asyncio.gather(*tasks)
    finished = max((p.sent + p.create_ms / 1000 for p in posts), default=started)
    return posts, len(posts) / max(finished - started, 1e-9), retries


def run_live(
    timeline_addr: str,
    tweets_addr: str,
    stream_tokens: Sequence[str],
    author_tokens: Sequence[str],
    schedule: Sequence[int],
    rate: float,
    processes: int = 2,
    drain_seconds: float = 2.0,
    late_seconds: float = 8.0,
) -> LiveRun:
    """Opens a stream per token in `stream_tokens` across `processes` workers, posts `schedule` at
    `rate`, and collects every arrival until `drain_seconds` after the last post, and then for
    `late_seconds` more, so that a late arrival is told apart from a missing one."""
    context = mp.get_context("spawn")
    ready, stop, out = context.Queue(), context.Event(), context.Queue()
    numbered = list(enumerate(stream_tokens))
    shares = [numbered[i::processes] for i in range(processes) if numbered[i::processes]]
    workers = [
        context.Process(target=_worker, args=(timeline_addr, share, ready, stop, out), daemon=True)
        for share in shares
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=180)
        posts, achieved, post_retries = asyncio.run(_post(tweets_addr, author_tokens, schedule, rate))
        drained_at = time.time() + drain_seconds
        time.sleep(drain_seconds + late_seconds)
        stop.set()
        arrivals: list[Arrival] = []
        ends: Counter[str] = Counter()
        failed_opens: dict[int, list[str]] = {}
        for _ in workers:
            watched: Watched = out.get(timeout=60)
            arrivals.extend((n, t, at) for (n, t), at in watched.arrivals.items())
            ends.update(watched.ends)
            failed_opens.update(watched.failed_opens)
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return LiveRun(posts, arrivals, dict(ends), drained_at, achieved, failed_opens, dict(post_retries))
