"""The workloads, run one after another on one mesh, with their baselines in the same run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import random
import resource
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
import redis
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import cputime, dataset, loadgen
from bench.live import LiveRun, bearer, run_live
from devstack.mesh import Mesh, MeshPorts
from fanout_svc.settings import FanoutSettings
from fanout_svc.settings import load_settings as load_fanout_settings
from social.celebrities import REGISTRY_KEY, CelebrityRegistry
from social.timelines import DELIVERED_COUNTER, celebrity_lists, home_key, home_timelines, unpack
from tweetmesh.fanout.v1 import fanout_service_pb2 as fanout_pb
from tweetmesh.fanout.v1 import fanout_service_pb2_grpc as fanout_grpc
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc

log = logging.getLogger("bench")
HOME_TIMELINE_MAX = 800
# The mesh the benchmark runs: production settings (the 15 s stream heartbeat too: a stream says it
# is listening with a heartbeat at once), except limits that a load from one address and a few
# accounts would reach (the checks still run: their cost is in the figures).
BENCH_ENV = {
    # Load from one address and a few accounts is the point here, not an attack.
    "RATE_LIMIT_WRITE_PER_USER": "100000000/1",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "100000000/1",
    "RATE_LIMIT_READ_PER_USER": "100000000/1",
    "RATE_LIMIT_READ_PER_ADDRESS": "100000000/1",
    "RATE_LIMIT_STREAM_OPEN_PER_USER": "100000000/1",
    "RATE_LIMIT_STREAM_OPEN_PER_ADDRESS": "100000000/1",
    "STREAM_MAX_PER_ADDRESS": "100000",
    "LOG_LEVEL": "WARNING",
    "HOME_TIMELINE_MAX": str(HOME_TIMELINE_MAX),
}
# wrk's connections in the posting workload (HTTP/1.1: one call at a time each).
POST_CONNECTIONS = 64
GET_HOME = "tweetmesh.timeline.v1.TimelineService/GetHomeTimeline"
CREATE_TWEET = "tweetmesh.tweets.v1.TweetService/CreateTweet"
HEALTH_CHECK = "grpc.health.v1.Health/Check"
# Home reads come from the size's distinct viewers, READS_EACH from each, READ_SLOTS of them at once.
READS_EACH = 24
READ_SLOTS = 8


@dataclass
class Bench:
    size: dataset.Size
    mesh: Mesh
    data: dataset.Dataset
    figures: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    tokens: dict[int, str] = field(default_factory=dict)  # user number -> bearer token

    # ----- addresses and clients

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.mesh.ports.of(name)}"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.mesh.redis_url)

    def uid(self, user: int) -> int:
        return int(self.data.user_ids[user])

    # ----- setup

    def load(self, extra_users: list[int], phases: dataset.Phases) -> None:
        """Loads PostgreSQL; makes the sessions of `extra_users`; builds home timelines in Redis:
        theirs and the warm users' (with warm_shares, each share of everyone's in turn, Redis's
        used_memory taken after each)."""
        started = time.monotonic()
        dataset.load_postgres(self.data, self.mesh.database_url, phases)
        self.details["load_seconds"] = round(time.monotonic() - started, 2)
        self.details["postgres_bytes"] = dataset.postgres_bytes(self.mesh.database_url)

        async def sessions_and_timelines() -> None:
            client = aioredis.Redis.from_url(self.mesh.redis_url)
            try:
                users = sorted(set(extra_users))
                with phases.timed("sessions"):
                    tokens = await dataset.create_sessions(self.data, users, self.mesh.database_url)
                self.tokens.update(zip(users, tokens, strict=True))
                settings = mesh_settings(self.mesh)
                max_entries, ttl = settings.home_timeline_max, settings.home_timeline_ttl_seconds
                timelines = home_timelines(client, max_entries, ttl)
                with phases.timed("celebrities"):
                    celebrity = await dataset.register_celebrities(
                        self.data,
                        celebrity_lists(client, max_entries, ttl),
                        CelebrityRegistry(client),
                        settings.celebrity_followers,
                    )
                before = await used_memory(client)
                self.details["redis_used_memory_before_timelines"] = before
                warm, entries, memory = np.zeros(0, dtype=np.int64), 0, []
                for share, wanted in self.warm_stages(users):
                    label = "warm users" if share is None else f"{share:.0%} of users"
                    with phases.timed(f"home timelines: {label}"):
                        entries += await dataset.warm_home_timelines(
                            self.data, timelines, np.setdiff1d(wanted, warm), celebrity
                        )
                    warm = np.union1d(warm, wanted)
                    used = await used_memory(client)
                    memory.append(
                        {
                            "share": share,
                            "warm_users": len(warm),
                            "entries": entries,
                            "used_memory": used,
                            "bytes_per_warm_user": round((used - before) / len(warm), 1),
                        }
                    )
                    log.info("Redis used_memory with %s warm: %.2f GB", label, used / 1e9)
                self.details["warm_entries"] = entries
                self.details["redis_memory"] = memory
            finally:
                await client.aclose()

        started = time.monotonic()
        asyncio.run(sessions_and_timelines())
        self.details["warm_seconds"] = round(time.monotonic() - started, 2)

    def warm_stages(self, extra_users: list[int]) -> list[tuple[float | None, np.ndarray]]:
        """Whose home timelines are warm after each stage of the build, as (share of all users,
        user numbers): `extra_users` always (the workloads' readers, authors, streamers...), then
        either the first warm_users, or (warm_shares) other users up to each share of everyone."""
        users = self.size.users
        extra = np.asarray(extra_users, dtype=np.int64)
        if not self.size.warm_shares:
            return [(None, np.union1d(np.arange(min(self.size.warm_users, users)), extra))]
        order = np.concatenate([extra, np.setdiff1d(np.arange(users), extra)])
        return [
            (share, np.sort(order[: max(round(share * users), len(extra))]))
            for share in self.size.warm_shares
        ]

    def wait_fanout_idle(self, timeout: float = 120.0) -> None:
        """Until fan-out has consumed and acknowledged everything (so workloads do not overlap)."""
        with grpc.insecure_channel(self.addr("fanout")) as channel:
            stub = fanout_grpc.FanoutServiceStub(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                stats = stub.GetFanoutStats(fanout_pb.GetFanoutStatsRequest(), timeout=10)
                if all(s.pending == 0 and s.lag == 0 for s in stats.streams):
                    return
                time.sleep(0.05)
        raise RuntimeError("fan-out did not catch up within the timeout")

    # ----- the workloads

    def h2load_reads(self, address: str, token: str) -> loadgen.H2load:
        return self.h2load_readers(address, [token])[0]

    def h2load_readers(self, address: str, tokens: list[str]) -> list[loadgen.H2load]:
        """An h2load of home reads for each token, after one real read each (h2load cannot see
        grpc-status), which also finds the page in the owners' caches or fills them."""
        request = timeline_pb.GetHomeTimelineRequest(page_size=20)
        with grpc.insecure_channel(address) as channel:
            stub = timeline_grpc.TimelineServiceStub(channel)
            for token in tokens:
                reply = stub.GetHomeTimeline(request, metadata=bearer(token), timeout=30)
                if len(reply.tweets) != 20:
                    raise RuntimeError(
                        f"a reader's home timeline has {len(reply.tweets)} tweets, expected 20"
                    )
                if reply.rebuilding:  # such a read comes from PostgreSQL: it would not measure warm reads
                    raise RuntimeError("a reader's home timeline is being rebuilt; expected a warm one")
        return [loadgen.H2load(address, GET_HOME, request, bearer(t)) for t in tokens]

    def baselines_and_reads(self, readers: list[int]) -> None:
        """The no-op RPC and home reads, each as short h2load runs (one per reader: h2load sends one
        token per run), READ_SLOTS at once, so that the reads come from every reader; the mesh's CPU
        time per read and per no-op. Then one reader's reads, direct and through Envoy."""
        seconds = self.size.seconds
        timeline = self.addr("timeline")
        with grpc.insecure_channel(timeline) as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        noop_load = loadgen.H2load(timeline, HEALTH_CHECK, health_pb2.HealthCheckRequest())
        readers_loads = self.h2load_readers(timeline, [self.tokens[r] for r in readers])
        cpu_before = cputime.mesh_seconds(self.mesh)
        noop = loadgen.h2load_pool([noop_load] * len(readers), READS_EACH, READ_SLOTS)
        cpu_noop = cputime.spent(cpu_before, cpu_after := cputime.mesh_seconds(self.mesh))
        reads = loadgen.h2load_pool(readers_loads, READS_EACH, READ_SLOTS)
        cpu_reads = cputime.spent(cpu_after, cputime.mesh_seconds(self.mesh))
        self.figures["noop_rpc_per_s"] = noop.per_second
        self.figures["home_reads_per_s"] = reads.per_second
        self.figures["home_read_p99_ms"] = reads.p99_ms
        self.figures["cpu_ms_per_read"] = 1000 * sum(cpu_reads.values()) / reads.requests
        celebrity = self.data.followers_count >= celebrity_threshold(self.mesh)
        follows_celebrity = np.zeros(self.size.users, dtype=bool)
        follows_celebrity[self.data.follower[celebrity[self.data.followee]]] = True
        following_celebrities = int(follows_celebrity[readers].sum())
        self.details["home_reads"] = {
            "readers": len(readers),
            "readers_following_celebrities": following_celebrities,
            "reads": reads.requests,
            "p50_ms": reads.p50_ms,
            "noop_p99_ms": noop.p99_ms,
            "cpu_ms_per_noop": round(1000 * sum(cpu_noop.values()) / noop.requests, 3),
            "cpu_ms_per_read_by_process": {
                k: round(1000 * v / reads.requests, 3) for k, v in cpu_reads.items()
            },
        }
        one = self.tokens[readers[0]]
        direct = self.h2load_reads(timeline, one).run(seconds)
        self.figures["direct_grpc_reads_per_s"] = direct.per_second
        envoy_grpc = self.h2load_reads(self.addr("envoy"), one).run(seconds)
        script = (
            f"wrk.headers['authorization'] = {loadgen.lua_string('Bearer ' + one)}\n"
            "wrk.path = '/v1/timelines/home?page_size=20'\n"
        )
        envoy_http = loadgen.wrk(f"http://{self.addr('envoy')}", script, seconds, connections=32)
        self.figures["envoy_http_reads_per_s"] = envoy_http.per_second
        self.details["reads"] = {
            "noop_p99_ms": noop.p99_ms,
            "direct_p99_ms": direct.p99_ms,
            "envoy_grpc_reads_per_s": envoy_grpc.per_second,
            "envoy_http_p99_ms": envoy_http.p99_ms,
            "failed": noop.failed + direct.failed + envoy_grpc.failed + envoy_http.failed + reads.failed,
        }

    def count_tweets(self, authors: list[int]) -> int:
        with psycopg.connect(self.mesh.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tweets.tweets WHERE author_id = ANY(%s)",
                ([self.uid(a) for a in authors],),
            ).fetchone()
        return int(row[0]) if row else 0

    def posting(self, authors: list[int]) -> None:
        """Posts through Envoy as HTTP/JSON, each call from one of `authors` drawn at random (wrk
        with a Lua script), as fast as the mesh takes them; the tweets are then counted in
        PostgreSQL. The mesh's CPU time from the first post until fan-out has delivered the last
        one, per post, is `cpu_ms_per_post`. Warm posts, as warm reads are measured: every author
        posts once first (their session is then in the session cache and their follower list in
        Redis, as an active account's are), so the figures are of a mesh in its steady state."""
        envoy = f"http://{self.addr('envoy')}"
        body = b'{"text":"benchmark post"}'
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            # wrk counts statuses, not what they mean: real calls first, each must be a 200.
            statuses = set(pool.map(lambda a: http_post(envoy, "/v1/tweets", self.tokens[a], body), authors))
        if statuses != {200}:
            raise RuntimeError(f"the authors' first posts through Envoy answered {statuses}, expected 200")
        self.wait_fanout_idle()
        tokens = ", ".join(loadgen.lua_string(self.tokens[a]) for a in authors)
        script = f"""
local tokens = {{{tokens}}}
request = function()
  local h = {{["authorization"] = "Bearer " .. tokens[math.random(#tokens)],
             ["content-type"] = "application/json"}}
  return wrk.format("POST", "/v1/tweets", h, '{{"text":"benchmark post"}}')
end
"""
        before = self.count_tweets(authors)
        cpu_before = cputime.mesh_seconds(self.mesh)
        # A slow post is measured (p99), not dropped: wrk's timeout is the handler's limit.
        posts = loadgen.wrk(envoy, script, self.size.seconds, connections=POST_CONNECTIONS, timeout=10.0)
        self.wait_fanout_idle()
        cpu = cputime.spent(cpu_before, cputime.mesh_seconds(self.mesh))
        created = self.count_tweets(authors) - before
        # Calls in flight when wrk stops are not counted but may still commit: one per connection.
        if posts.failed or not posts.requests <= created <= posts.requests + POST_CONNECTIONS:
            raise RuntimeError(
                f"wrk counted {posts.requests} posts ({posts.failed} failed) but {created} tweets were stored"
            )
        self.figures["posts_per_s"] = posts.per_second
        self.figures["post_p99_ms"] = posts.p99_ms
        self.figures["cpu_ms_per_post"] = 1000 * sum(cpu.values()) / created
        self.details["posts"] = {
            "created": created,
            "authors": len(authors),
            "p50_ms": posts.p50_ms,
            "cpu_ms_per_post_by_process": {k: round(1000 * v / created, 3) for k, v in cpu.items()},
        }

    def fanout(self, authors: list[int]) -> None:
        """Posts by well-followed (not celebrity) authors, as fast as tweets_svc takes them; the
        rate is the growth of fan-out's delivered counter from the first post until it settles.
        Warm, as posts and reads are measured: each author posts once first, so that their follower
        list is in Redis (built from PostgreSQL at an author's first post, then kept in step by the
        follow events, as an active account's is) and the figure is of fan-out itself."""
        client = self.redis()

        async def post_all(count: int) -> None:
            async with grpc.aio.insecure_channel(self.addr("tweets")) as channel:
                stub = tweets_grpc.TweetServiceStub(channel)
                await asyncio.gather(
                    *(
                        stub.CreateTweet(
                            tweets_pb.CreateTweetRequest(text=f"fan-out bench {n}"),
                            metadata=bearer(self.tokens[authors[n % len(authors)]]),
                            timeout=60,
                        )
                        for n in range(count)
                    )
                )

        asyncio.run(post_all(len(authors)))
        self.wait_fanout_idle()
        before = int(client.get(DELIVERED_COUNTER) or 0)
        samples: list[tuple[float, int]] = [(time.monotonic(), before)]
        started = time.monotonic()
        asyncio.run(post_all(self.size.fanout_posts))
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 1.0 and time.monotonic() - started < 300:
            value = int(client.get(DELIVERED_COUNTER) or 0)
            if value != samples[-1][1]:
                samples.append((time.monotonic(), value))
                quiet_since = time.monotonic()
            time.sleep(0.01)
        delivered = samples[-1][1] - before
        elapsed = samples[-1][0] - started
        expected = sum(
            int(self.data.followers_count[authors[n % len(authors)]]) + 1
            for n in range(self.size.fanout_posts)
        )
        # The counter counts timeline entries actually written (the script skips a follower whose
        # home timeline is absent): the rest of `expected` (the author's and every follower's, as the
        # generated graph has them) were skipped.
        skipped = max(expected - delivered, 0)
        self.figures["fanout_deliveries_per_s"] = delivered / elapsed if elapsed > 0 else 0.0
        self.figures["timeline_entries_per_s"] = self.figures["fanout_deliveries_per_s"]
        self.details["fanout"] = {
            "delivered": delivered,
            "expected": expected,
            "skipped_absent_timelines": skipped,
            "skipped_per_s": skipped / elapsed if elapsed > 0 else 0.0,
            "seconds": elapsed,
        }
        self.wait_fanout_idle()

    def redis_ceiling(self) -> None:
        port = self.mesh.ports.redis
        self.figures["redis_ceiling_ops_per_s"] = loadgen.redis_ceiling("127.0.0.1", port, self.size.seconds)
        client = self.redis()
        for key in client.scan_iter("bench:ceiling:*", count=10_000):
            client.unlink(key)

    def suggestions(self, heavy: int) -> None:
        """Who to follow for the account following the most (thousands at the medium size): its
        p99 under load from users_svc directly, against GetUser's in the same run (the baseline:
        one indexed row and the same auth, limits and hydration)."""
        user_id = str(self.uid(heavy))
        auth = bearer(self.tokens[heavy])
        request = users_pb.ListSuggestionsRequest(user_id=user_id, page_size=20)
        with grpc.insecure_channel(
            self.addr("users")
        ) as channel:  # one real call: h2load sees no grpc-status
            reply = users_grpc.UserServiceStub(channel).ListSuggestions(request, metadata=auth, timeout=30)
        if not reply.suggestions:
            raise RuntimeError("no suggestions for the account following the most")
        seconds = max(self.size.seconds / 2, 1.0)
        method = "tweetmesh.users.v1.UserService/"
        found = loadgen.H2load(self.addr("users"), method + "ListSuggestions", request, auth).run(
            seconds, connections=4, streams=1
        )
        baseline = loadgen.H2load(
            self.addr("users"), method + "GetUser", users_pb.GetUserRequest(user_id=user_id), auth
        ).run(seconds, connections=4, streams=1)
        self.figures["suggestions_p99_ms"] = found.p99_ms
        self.details["suggestions"] = {
            "following": int(self.data.following_count[heavy]),
            "per_s": found.per_second,
            "failed": found.failed + baseline.failed,
            "get_user_p99_ms": baseline.p99_ms,
            "get_user_per_s": baseline.per_second,
            "p99_vs_get_user": found.p99_ms / baseline.p99_ms if baseline.p99_ms else 0.0,
        }

    def redis_memory(self, sample: list[int]) -> None:
        """Bytes per entry of the readers' timelines, measured last: after the workloads have
        appended to them (Redis's growth slack included), not just after they were built."""
        client = self.redis()
        used, entries = 0, 0
        for user in sample:
            key = home_key(self.uid(user))
            size = len(unpack(client.get(key) or b""))  # type: ignore[arg-type]
            if size >= 10:
                used += int(client.memory_usage(key, samples=0) or 0)
                entries += size
        self.figures["redis_bytes_per_timeline_entry"] = used / entries if entries else 0.0
        self.details["redis_memory_sample"] = {"timelines": len(sample), "entries": entries, "bytes": used}

    def live(self, streamers: list[int], authors: list[int]) -> None:
        """Open streams for `streamers`; ordinary authors post at live_rate; post -> arrival. The
        same again at a tenth of the rate, to tell the delivery path from an overloaded mesh."""
        # The gentle run first: after an overloading one, backlogs would still be draining.
        slow = max(self.size.live_rate // 10, 1)
        self.details["live_at_a_tenth_of_the_rate"] = self._live_run(
            streamers, authors, slow, max(self.size.live_posts // 10, 1)
        )
        self.details["live"] = self._live_run(streamers, authors, self.size.live_rate, self.size.live_posts)
        gentle, offered = self.details["live_at_a_tenth_of_the_rate"], self.details["live"]
        self.figures["delivery_p50_ms"] = offered["p50_ms"]
        self.figures["delivery_p99_ms"] = offered["p99_ms"]
        self.figures["delivery_p99_ms_gentle"] = gentle["p99_ms"]
        self.figures["achieved_posts_per_s_live"] = offered["achieved_posts_per_s"]
        self.figures["delivery_missing"] = gentle["missing_arrivals"] + offered["missing_arrivals"]

    def streams_handled(self) -> int:
        """How many StreamHomeTimeline calls timeline_svc's handler has run to an end, by its own
        metrics (a call gRPC cancelled before the service accepted it is not among them)."""
        url = f"http://127.0.0.1:{self.mesh.ports.of('timeline_metrics')}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("grpc_server_handled_total") and 'grpc_method="StreamHomeTimeline"' in line
            )
        )

    def _live_run(self, streamers: list[int], authors: list[int], rate: int, posts: int) -> dict[str, Any]:
        schedule = [random.randrange(len(authors)) for _ in range(posts)]
        handled_before = self.streams_handled()
        run = run_live(
            self.addr("timeline"),
            self.addr("tweets"),
            [self.tokens[s] for s in streamers],
            [self.tokens[a] for a in authors],
            schedule,
            rate,
        )
        latencies = run.latencies_ms()
        stream_of = {user: number for number, user in enumerate(streamers)}
        watching = {  # the streams each author's tweets should reach: followers' and their own
            a: [
                stream_of[u]
                for u in [*self.data.followers_of(authors[a]).tolist(), authors[a]]
                if u in stream_of
            ]
            for a in set(schedule)
        }
        expected = {(number, post.tweet_id) for post in run.posts for number in watching[post.author]}
        seen = {(number, tweet): at for number, tweet, at in run.arrivals}
        arrived = expected & seen.keys()
        in_time = sum(1 for pair in arrived if seen[pair] <= run.drained_at)
        missing = sorted(expected - arrived)
        streams_missing = {number for number, _ in missing}
        streams_reached = {number for number, _ in arrived}
        self.wait_fanout_idle()
        return {
            "streams": len(streamers),
            # Stream calls timeline_svc served (opened, reopened after a resume point or a failed
            # open, ended when the run did): fewer than the streams means some were never accepted.
            "server_streams_handled": self.streams_handled() - handled_before,
            "posts": len(run.posts),
            "rate": rate,
            "achieved_posts_per_s": run.achieved_per_s,
            "arrivals": in_time,
            "expected_arrivals": len(expected),
            "late_arrivals": len(arrived) - in_time,
            "missing_arrivals": len(missing),
            # Streams that missed something: those that got none of theirs, and those that got some.
            "streams_missing_all": len(streams_missing - streams_reached),
            "streams_missing_some": len(streams_missing & streams_reached),
            # Opens that failed (and were retried): streams refused, or cancelled by gRPC unaccepted.
            "failed_opens": sum(len(codes) for codes in run.failed_opens.values()),
            "failed_open_codes": dict(Counter(c for codes in run.failed_opens.values() for c in codes)),
            "streams_with_failed_opens": len(run.failed_opens),
            "streams_missing_all_with_failed_opens": len(
                (streams_missing - streams_reached) & run.failed_opens.keys()
            ),
            "missing_sample": self._diagnose(missing[:20], streamers, run, authors),
            "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else 0.0,
            "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else 0.0,
            "create_p99_ms": float(np.percentile([p.create_ms for p in run.posts], 99)),
            "post_retries": run.post_retries,
            "stream_ends": run.stream_ends,
        }

    def _diagnose(
        self, missing: list[tuple[int, int]], streamers: list[int], run: LiveRun, authors: list[int]
    ) -> list[dict[str, Any]]:
        """For (stream, tweet) pairs that never arrived: whether fan-out wrote the tweet into that
        streamer's home timeline (then the live path lost it) or not (then fan-out skipped it), and
        the author's followers and celebrity state (hybrid fan-out delivers those differently)."""
        client = self.redis()
        author_of = {post.tweet_id: authors[post.author] for post in run.posts}
        found = []
        for number, tweet in missing:
            user = self.uid(streamers[number])
            author = author_of[tweet]
            held = unpack(client.get(home_key(user)) or b"")  # type: ignore[arg-type]
            state: bytes | None = client.hget(REGISTRY_KEY, str(self.uid(author)))  # type: ignore[assignment]
            found.append(
                {
                    "user_id": user,
                    "tweet_id": tweet,
                    "in_home_timeline": tweet in held,
                    "author_id": self.uid(author),
                    "author_followers": int(self.data.followers_count[author]),
                    "author_state": state.decode() if state else None,
                }
            )
        return found

    def celebrity(self, celebrity: int, normal: int, watchers: int) -> None:
        """A celebrity and a ~10-follower author post in turn, with streams open for a sample of
        each one's followers; the figure is post -> arrival on those streams, p99."""
        fans = self.data.followers_of(celebrity).tolist()
        streamers = sorted({*fans[:watchers], *self.data.followers_of(normal).tolist()})
        schedule = [n % 2 for n in range(2 * self.size.celebrity_posts)]
        run = run_live(
            self.addr("timeline"),
            self.addr("tweets"),
            [self.tokens[s] for s in streamers],
            [self.tokens[celebrity], self.tokens[normal]],
            schedule,
            rate=5,
        )
        celeb, plain = run.latencies_ms({0}), run.latencies_ms({1})
        self.figures["celebrity_post_p99_ms"] = float(np.percentile(celeb, 99)) if len(celeb) else 0.0
        self.figures["normal_post_p99_ms"] = float(np.percentile(plain, 99)) if len(plain) else 0.0
        self.details["celebrity"] = {
            "celebrity_followers": int(self.data.followers_count[celebrity]),
            "normal_followers": int(self.data.followers_count[normal]),
            "celebrity_arrivals": len(celeb),
            "normal_arrivals": len(plain),
            "create_p99_ms": {
                "celebrity": float(np.percentile([p.create_ms for p in run.posts if p.author == 0], 99)),
                "normal": float(np.percentile([p.create_ms for p in run.posts if p.author == 1], 99)),
            },
        }
        self.wait_fanout_idle()

    def mixed(self, viewers: list[int]) -> None:
        """DeathStarBench's mix over HTTP through Envoy: 60% home timeline, 30% user timeline, 10% posts."""
        tokens = ", ".join(loadgen.lua_string(self.tokens[v]) for v in viewers)
        users = ", ".join(loadgen.lua_string(str(self.uid(v))) for v in viewers)
        script = f"""
local tokens = {{{tokens}}}
local users = {{{users}}}
request = function()
  local r = math.random(100)
  local h = {{["authorization"] = "Bearer " .. tokens[math.random(#tokens)],
             ["content-type"] = "application/json"}}
  if r <= 60 then return wrk.format("GET", "/v1/timelines/home?page_size=20", h) end
  local user = users[math.random(#users)]
  if r <= 90 then return wrk.format("GET", "/v1/users/" .. user .. "/tweets?page_size=20", h) end
  return wrk.format("POST", "/v1/tweets", h, '{{"text":"mixed workload post"}}')
end
"""
        result = loadgen.wrk(f"http://{self.addr('envoy')}", script, self.size.seconds, connections=32)
        self.figures["mixed_requests_per_s"] = result.per_second
        self.details["mixed"] = {"p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "failed": result.failed}
        self.wait_fanout_idle()


def http_post(base: str, path: str, token: str, body: bytes) -> int:
    """The HTTP status of one POST with a bearer token."""
    request = urllib.request.Request(
        base + path,
        data=body,
        method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def start_mesh(data_dir: Path, env: dict[str, str]) -> Mesh:
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)  # PostgreSQL runs as an unprivileged user when this runs as root
    mesh = Mesh(
        data_dir,
        ports=MeshPorts.free(),
        durable=True,
        log_to_files=True,
        env_overrides=BENCH_ENV | env,
        database_url=None,
        redis_url=None,
        smtp_url=None,
        ready_timeout=60,
        # The load comes from one address, far past any one client's limits at the edge.
        enforce_edge_limits=False,
    )
    mesh.start()
    return mesh


def run_step(step: Callable[[], None], mesh: Mesh) -> None:
    """Runs one workload; if it fails, its error also names the mesh's processes that exited (the
    workload's own error, say "connection refused", rarely says why a server stopped answering)."""
    try:
        step()
    except Exception as error:
        if dead := mesh.casualties():
            error.add_note("\n\n".join(["processes of the mesh that exited:", *dead]))
        raise


def run(
    size_name: str, out: Path, env: dict[str, str] | None = None, plots: bool = True, mesh: Mesh | None = None
) -> dict[str, float]:
    """Runs every workload at `size_name` on `mesh` (by default a durable mesh started for it and
    stopped after) and writes the results to `out`."""
    size = dataset.SIZES[size_name]
    random.seed(5)
    began = time.monotonic()
    phases = dataset.Phases()
    with phases.timed("generate"):
        data = dataset.generate(size)
    data_dir = Path(tempfile.mkdtemp(prefix=f"tweetmesh-bench-{size_name}-"))
    own_mesh = mesh is None
    overrides = dict(env or {})
    if size.celebrity_followers is not None:
        overrides.setdefault("CELEBRITY_FOLLOWERS", str(size.celebrity_followers))
    mesh = start_mesh(data_dir, overrides) if mesh is None else mesh
    try:
        celebrities = data.celebrities()
        normal = data.user_with_followers(10, exclude=celebrities)
        rng = np.random.default_rng(7)
        everyone = np.arange(size.users)
        streamers = sorted(rng.choice(everyone, size=min(size.streams, size.users), replace=False).tolist())
        # Readers need full first pages (20 tweets): any user who follows 10 or more.
        readable = everyone[data.following_count >= 10]
        readers = sorted(rng.choice(readable, size=min(size.readers, len(readable)), replace=False).tolist())
        heavy = int(np.argmax(data.following_count))  # who to follow, for the account following most
        # Posts come from a thousand random accounts (their followers as the graph has them).
        posters = sorted(rng.choice(everyone, size=min(1000, size.users), replace=False).tolist())
        threshold = celebrity_threshold(mesh)
        fanout_authors = data.well_followed(8, below=threshold)
        # Live delivery posts come from ordinary accounts (random users, ~74 followers on average).
        live_authors = sorted(rng.choice(everyone, size=min(200, size.users), replace=False).tolist())
        bench = Bench(size, mesh, data)
        bench.details["generate_seconds"] = phases.seconds["generate"]
        bench.details["phases"] = phases.seconds
        watchers = data.followers_of(celebrities[0]).tolist()[:200]
        normal_fans = data.followers_of(normal).tolist()
        bench.load(
            [
                *readers,
                *streamers,
                *posters,
                *fanout_authors,
                *live_authors,
                *celebrities,
                normal,
                *normal_fans,
                *watchers,
                heavy,
            ],
            phases,
        )
        steps: list[tuple[str, Callable[[], None]]] = [
            ("reads and baselines", lambda: bench.baselines_and_reads(readers)),
            ("redis ceiling", bench.redis_ceiling),
            ("posting", lambda: bench.posting(posters)),
            ("fan-out", lambda: bench.fanout(fanout_authors)),
            ("live delivery", lambda: bench.live(streamers, live_authors)),
            ("celebrity", lambda: bench.celebrity(celebrities[0], normal, watchers=200)),
            ("mixed", lambda: bench.mixed(readers)),
            ("redis memory", lambda: bench.redis_memory(readers)),
            ("suggestions", lambda: bench.suggestions(heavy)),
        ]
        only = {n.strip() for n in os.environ.get("BENCH_ONLY", "").split(",") if n.strip()}
        for name, step in steps:
            if not only or name in only:
                run_workload(bench, name, step)
        describe(bench, celebrities)
        bench.details["run_seconds"] = round(time.monotonic() - began, 2)
        from bench import report

        bench.figures.update(report.size_figures(size, bench.figures, bench.details))
        if only:  # a partial run (debugging a workload) is not a result
            print(json.dumps({"figures": bench.figures, "details": bench.details}, indent=2, default=str))
            return bench.figures
        report.write(out, size_name, bench.figures, bench.details, plots=plots)
        return bench.figures
    finally:
        if own_mesh:
            mesh.stop()
        if os.environ.get("KEEP_BENCH_DATA") is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def run_workload(bench: Bench, name: str, step: Callable[[], None]) -> None:
    """Runs one workload; BENCH_REPEAT=N times in a row on the same data (the details of each run
    under "repeats", the figures the last run's): is a result steady, or was it luck?"""
    repeat = max(int(os.environ.get("BENCH_REPEAT", "1")), 1)
    for number in range(1, repeat + 1):
        log.info("workload: %s%s", name, f" (run {number} of {repeat})" if repeat > 1 else "")
        before = dict(bench.details)
        began = time.monotonic()
        run_step(step, bench.mesh)
        bench.details.setdefault("seconds", {})[name] = round(time.monotonic() - began, 2)
        if repeat > 1:
            changed = {k: v for k, v in bench.details.items() if k != "seconds" and before.get(k) is not v}
            bench.details.setdefault("repeats", []).append({"workload": name, **changed})


def describe(bench: Bench, celebrities: list[int]) -> None:
    """What the figures were measured on, for details.json."""
    data = bench.data
    bench.details["users"] = bench.size.users
    bench.details["follows"] = len(data.follower)
    bench.details["tweets_seeded"] = len(data.tweet_ids)
    bench.details["celebrity_followers"] = [int(data.followers_count[c]) for c in celebrities]
    bench.details["celebrity_threshold"] = celebrity_threshold(bench.mesh)
    bench.details["cores"] = os.cpu_count()
    bench.details["load_average_at_end"] = os.getloadavg()
    # The benchmark's own peak memory (the dataset's arrays, the load's buffers), in bytes.
    bench.details["bench_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    info = bench.redis().info("memory")
    bench.details["redis_used_memory_at_end"] = int(info["used_memory"])
    bench.details["redis_used_memory_peak"] = int(info["used_memory_peak"])


async def used_memory(client: aioredis.Redis) -> int:
    """Redis's used_memory (INFO memory): what its allocator holds for data and overheads."""
    info = await client.info("memory")
    return int(info["used_memory"])


def mesh_settings(mesh: Mesh) -> FanoutSettings:
    """The settings fan-out runs with in `mesh`."""
    return load_fanout_settings(mesh.service_env("fanout"))


def celebrity_threshold(mesh: Mesh) -> int:
    """The follower count from which fan-out treats an author as a celebrity in this mesh."""
    return mesh_settings(mesh).celebrity_followers
