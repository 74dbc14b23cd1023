"""Redis error replies that mean "cannot serve now" are outages like a lost connection: out of
memory with noeviction (OOM), then a read-only replica for a moment (READONLY, and LOADING while it
syncs). Every call answers 503 / UNAVAILABLE or succeeds, never 500 / INTERNAL; no service exits
(their background loops wait and retry); and every tweet accepted meanwhile is delivered after."""

from __future__ import annotations

import secrets
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc

from devstack.mesh import SERVICES, Mesh, MeshPorts
from devstack.redis import start_redis
from tests.helpers import Account, Stubs, eventually, http_call, redis_client

FAILURES = {"INTERNAL", "UNKNOWN", "500"}


class Traffic:
    """A client's calls through the outage, and what came back."""

    def __init__(self, stubs: Stubs, mesh: Mesh, author: Account, reader: Account) -> None:
        self._stubs, self._mesh, self._author, self._reader = stubs, mesh, author, reader
        self.seen: Counter[str] = Counter()
        self.accepted: list[str] = []

    def round(self, phase: str) -> None:
        """A post over gRPC and one over HTTP, a home timeline read, a profile read."""
        try:
            tweet = self._stubs.post(self._author, f"{phase} grpc", request_id=secrets.token_hex(8))
            self.accepted.append(tweet.tweet_id)
            self.seen[f"{phase} grpc post OK"] += 1
        except grpc.RpcError as error:
            self.seen[f"{phase} grpc post {error.code().name}"] += 1
        posted = http_call(
            self._mesh.ports.envoy, "POST", "/v1/tweets", {"text": f"{phase} http"}, token=self._author.token
        )
        self.seen[f"{phase} http post {posted.status}"] += 1
        if posted.status == 200:
            self.accepted.append(posted.json()["tweet"]["tweet_id"])
        try:
            self._stubs.home(self._reader)
            self.seen[f"{phase} home OK"] += 1
        except grpc.RpcError as error:
            self.seen[f"{phase} home {error.code().name}"] += 1
        profile = http_call(self._mesh.ports.envoy, "GET", f"/v1/users/{self._author.user_id}")
        self.seen[f"{phase} profile {profile.status}"] += 1

    def failures(self) -> list[str]:
        return [k for k in self.seen if k.rsplit(" ", 1)[1] in FAILURES]


def test_redis_error_replies_are_outages_that_heal(fault_mesh: Mesh, fault_stubs: Stubs) -> None:
    stubs = fault_stubs
    pids = {name: fault_mesh.pid(name) for name in SERVICES}
    author, reader = stubs.sign_up("oomauth"), stubs.sign_up("oomread")
    stubs.follow(reader, author)
    stubs.home(reader)
    traffic = Traffic(stubs, fault_mesh, author, reader)
    r = redis_client(fault_mesh.redis_url)
    traffic.round("before")

    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", "1")  # every write that may grow memory is refused: OOM
    try:
        for _ in range(5):
            traffic.round("oom")
    finally:
        r.config_set("maxmemory", "0")
    traffic.round("between")

    with tempfile.TemporaryDirectory(prefix="tweetmesh-primary-") as folder:
        port = MeshPorts.free().redis
        primary = start_redis(Path(folder), port)
        try:
            r.replicaof("127.0.0.1", port)  # a read-only replica now (its data goes: a wipe)
            eventually(lambda: r.info("replication").get("master_link_status") == "up", timeout=20)
            for _ in range(5):
                traffic.round("replica")
        finally:
            r.replicaof("NO", "ONE")
            primary.process.stop()
    traffic.round("after")

    print("calls through the outages:", dict(sorted(traffic.seen.items())))
    assert not traffic.failures(), traffic.seen
    # The outages were real: writes were refused as unavailable in both.
    assert traffic.seen["oom http post 503"] + traffic.seen["oom grpc post UNAVAILABLE"] > 0, traffic.seen
    assert traffic.seen["replica http post 503"] + traffic.seen["replica grpc post UNAVAILABLE"] > 0
    # No service exited or restarted: the consumers and sweepers waited it out.
    assert {name: fault_mesh.pid(name) for name in SERVICES} == pids
    # Every tweet accepted (before, between, after, or during, if any got through) is delivered.
    assert traffic.seen["after grpc post OK"] + traffic.seen["after http post 200"] > 0, traffic.seen
    started = time.monotonic()
    eventually(lambda: set(traffic.accepted) <= set(stubs.home_ids(reader)), timeout=60, interval=0.5)
    print(f"{len(traffic.accepted)} accepted tweets all delivered {time.monotonic() - started:.2f} s later")
