"""Live delivery: many open StreamHomeTimeline calls spread over worker processes (so the client is
not the bottleneck), a poster at a fixed rate, and the time from each post to each arrival."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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


async def _watch(
    address: str, tokens: Sequence[tuple[int, str]], ready: Any, stop: Any
) -> tuple[list[Arrival], dict[str, int]]:
    """Each stream as a client should keep one: when the server ends it with a resume point, it
    reconnects from there, so each tweet counts once per stream and a gap would show as missing."""
    arrivals: dict[tuple[int, int], float] = {}
    ends: Counter[str] = Counter()
    failures: list[str] = []
    opened = asyncio.Event()
    pending = len(tokens)

    def opened_one() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            opened.set()

    async def one(number: int, token: str, stub: Any) -> None:  # an aio stub (typed as the sync one)
        first, since = True, ""
        while True:
            call = stub.StreamHomeTimeline(
                timeline_pb.StreamHomeTimelineRequest(since_tweet_id=since),
                metadata=bearer(token),
            )
            try:
                async for event in call:
                    if first:  # the server subscribes before it sends anything: from here nothing is missed
                        first = False
                        opened_one()
                    if event.WhichOneof("event") == "tweet":
                        arrivals.setdefault((number, int(event.tweet.tweet_id)), time.time())
                ends["OK"] += 1
                return
            except grpc.aio.AioRpcError as error:
                resume = _resume_point(error) if error.code() == grpc.StatusCode.UNAVAILABLE else None
                if resume is not None and not first:
                    ends[resume[0]] += 1
                    since = resume[1]  # empty if it had sent nothing: then a gap is possible
                    await asyncio.sleep(0.2)
                    continue
                if error.code() != grpc.StatusCode.CANCELLED:  # our own cancel, at the end of the run
                    failures.append(f"{error.code().name}: {error.details()}")
                    ends[error.code().name] += 1
                if first:
                    opened_one()
                return

    async with grpc.aio.insecure_channel(address) as channel:
        stub = timeline_grpc.TimelineServiceStub(channel)
        tasks = [asyncio.create_task(one(n, t, stub)) for n, t in tokens]
        try:
            async with asyncio.timeout(120):
                await opened.wait()
            ready.put(len(tokens))
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        print(f"stream driver: {len(failures)} streams failed, e.g. {failures[0]}", flush=True)
    return [(n, t, at) for (n, t), at in arrivals.items()], dict(ends)


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

    def latencies_ms(self, authors: set[int] | None = None) -> np.ndarray:
        sent = {p.tweet_id: p.sent for p in self.posts if authors is None or p.author in authors}
        return np.array([(at - sent[t]) * 1000 for _, t, at in self.arrivals if t in sent])


async def _post(
    address: str, authors: Sequence[str], schedule: Sequence[int], rate: float, concurrency: int = 64
) -> tuple[list[Post], float]:
    """Posts one tweet per entry of `schedule` (an index into `authors`) at `rate` per second, each
    stamped with the moment it was scheduled (so a driver or mesh falling behind shows in the
    latencies, not in a lower rate); returns the posts and the rate achieved."""
    posts: list[Post] = []
    limit = asyncio.Semaphore(concurrency)
    started = time.time()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tweets_grpc.TweetServiceStub(channel)

        async def one(author: int, n: int) -> None:
            scheduled = started + n / rate
            async with limit:
                reply = await stub.CreateTweet(
                    tweets_pb.CreateTweetRequest(text=f"live bench post {n}"),
                    metadata=bearer(authors[author]),
                    timeout=30,
                )
            posts.append(Post(author, int(reply.tweet.tweet_id), scheduled, (time.time() - scheduled) * 1000))

        start = time.monotonic()
        tasks = []
        for n, author in enumerate(schedule):
            await asyncio.sleep(max(start + n / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(one(author, n)))
        await asyncio.gather(*tasks)
    finished = max((p.sent + p.create_ms / 1000 for p in posts), default=started)
    return posts, len(posts) / max(finished - started, 1e-9)


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
        posts, achieved = asyncio.run(_post(tweets_addr, author_tokens, schedule, rate))
        drained_at = time.time() + drain_seconds
        time.sleep(drain_seconds + late_seconds)
        stop.set()
        arrivals: list[Arrival] = []
        ends: Counter[str] = Counter()
        for _ in workers:
            got, ended = out.get(timeout=60)
            arrivals.extend(got)
            ends.update(ended)
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return LiveRun(posts, arrivals, dict(ends), drained_at, achieved)
