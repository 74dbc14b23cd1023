"""Live delivery: many open StreamHomeTimeline calls spread over worker processes (so the client is
not the bottleneck), a poster at a fixed rate, and the time from each post to each arrival."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc

Arrival = tuple[int, int, float]  # (stream number, tweet id, arrival time)


async def _watch(address: str, tokens: Sequence[tuple[int, str]], ready: Any, stop: Any) -> list[Arrival]:
    arrivals: list[Arrival] = []
    failures: list[str] = []
    opened = asyncio.Event()
    pending = len(tokens)

    async def one(number: int, token: str, stub: Any) -> None:  # an aio stub (typed as the sync one)
        nonlocal pending
        call = stub.StreamHomeTimeline(
            timeline_pb.StreamHomeTimelineRequest(), metadata=[("authorization", f"Bearer {token}")]
        )
        first = True
        try:
            async for event in call:
                if first:  # the server subscribes before it sends anything: from here nothing is missed
                    first = False
                    pending -= 1
                    if pending == 0:
                        opened.set()
                if event.WhichOneof("event") == "tweet":
                    arrivals.append((number, int(event.tweet.tweet_id), time.time()))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:  # our own cancel, at the end of the run
                failures.append(f"{error.code().name}: {error.details()}")
            if first:
                pending -= 1
                if pending == 0:
                    opened.set()

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
    return arrivals


def _worker(address: str, tokens: list[tuple[int, str]], ready: Any, stop: Any, out: Any) -> None:
    out.put(asyncio.run(_watch(address, tokens, ready, stop)))


@dataclass(frozen=True, slots=True)
class Post:
    author: int  # the author's token index
    tweet_id: int
    sent: float  # when the CreateTweet call started
    create_ms: float  # how long CreateTweet took


@dataclass
class LiveRun:
    posts: list[Post]
    arrivals: list[Arrival]

    def latencies_ms(self, authors: set[int] | None = None) -> np.ndarray:
        sent = {p.tweet_id: p.sent for p in self.posts if authors is None or p.author in authors}
        return np.array([(at - sent[t]) * 1000 for _, t, at in self.arrivals if t in sent])


async def _post(
    address: str, authors: Sequence[str], schedule: Sequence[int], rate: float, concurrency: int = 64
) -> list[Post]:
    """Posts one tweet per entry of `schedule` (an index into `authors`) at `rate` per second."""
    posts: list[Post] = []
    limit = asyncio.Semaphore(concurrency)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tweets_grpc.TweetServiceStub(channel)

        async def one(author: int, n: int) -> None:
            async with limit:
                sent = time.time()
                reply = await stub.CreateTweet(
                    tweets_pb.CreateTweetRequest(text=f"live bench post {n}"),
                    metadata=[("authorization", f"Bearer {authors[author]}")],
                    timeout=30,
                )
                posts.append(Post(author, int(reply.tweet.tweet_id), sent, (time.time() - sent) * 1000))

        start = time.monotonic()
        tasks = []
        for n, author in enumerate(schedule):
            await asyncio.sleep(max(start + n / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(one(author, n)))
        await asyncio.gather(*tasks)
    return posts


def run_live(
    timeline_addr: str,
    tweets_addr: str,
    stream_tokens: Sequence[str],
    author_tokens: Sequence[str],
    schedule: Sequence[int],
    rate: float,
    processes: int = 2,
    drain_seconds: float = 2.0,
) -> LiveRun:
    """Opens a stream per token in `stream_tokens` across `processes` workers, posts `schedule` at
    `rate`, and collects every arrival until `drain_seconds` after the last post."""
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
        posts = asyncio.run(_post(tweets_addr, author_tokens, schedule, rate))
        time.sleep(drain_seconds)  # arrivals later than this count as lost, not as slow
        stop.set()
        arrivals: list[Arrival] = []
        for _ in workers:
            arrivals.extend(out.get(timeout=60))
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return LiveRun(posts, arrivals)
