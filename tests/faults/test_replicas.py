"""Two replicas of every service, on a private mesh, all called through Envoy: live streams on
either timeline replica get every tweet; the two fan-out workers share the consumer group, each
handling part of it under its own name; follows and unfollows applied by different workers end
right; SIGKILL of one replica of each service in the middle of a burst of tweets loses nothing
(the history checker: lost = 0, duplicated = 0); and the killed replicas' consumers are emptied
by the living and then deleted from their groups."""

from __future__ import annotations

import functools
import re
import socket
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from devstack.mesh import SERVICES, Mesh
from social import TWEETS_STREAM
from tests.conftest import test_mesh as private_mesh  # aliased: pytest would collect test_mesh
from tests.faults.conftest import FAST_RECONNECT, FAULT_ENV, service_health
from tests.faults.history import Outcome
from tests.faults.test_scenarios import Run, run_scenario
from tests.helpers import LiveStream, Stubs, eventually, redis_client
from tests.integration.test_follow_order import toggled_follows_end_right
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc

REPLICAS = 2
# Dead consumers are deleted 3 s after their last entry is claimed (10 minutes by default).
REPLICA_ENV = FAULT_ENV | {"CONSUMER_FORGET_SECONDS": "3"}
ENTRIES = "tweetmesh_stream_entries_total"
FORGOTTEN = "tweetmesh_stream_consumers_forgotten_total"


@pytest.fixture(scope="module")
def replica_mesh() -> Iterator[Mesh]:
    with private_mesh(REPLICA_ENV, "tweetmesh-replicas-", replicas=REPLICAS) as instance:
        yield instance


@pytest.fixture(scope="module")
def through_envoy(replica_mesh: Mesh) -> Iterator[Stubs]:
    """Stubs of every service at Envoy's address: each call goes to one of the replicas."""
    client = Stubs.through(f"127.0.0.1:{replica_mesh.ports.envoy}", FAST_RECONNECT)
    try:
        yield client
    finally:
        client.close()


def consumer_name(mesh: Mesh, replica: str) -> str:
    """The name a replica has in its consumer groups (meshkit.settings.read_consumer_name)."""
    return f"{socket.gethostname()}-{mesh.pid(replica)}"


def metric(mesh: Mesh, replica: str, name: str, **labels: str) -> float:
    """The value of one sample on a replica's /metrics (0 when it has none yet)."""
    port = mesh.ports.replica(replica)[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if found and wanted <= set(found.group(1).split(",")):
            return float(found.group(2))
    return 0.0


def holding_a_stream(mesh: Mesh) -> str:
    """The timeline replica with a home stream open."""
    open_streams = {
        name: metric(mesh, name, "grpc_server_open_streams", grpc_method="StreamHomeTimeline")
        for name in mesh.replica_names("timeline")
    }
    return max(open_streams, key=lambda name: open_streams[name])


def acknowledged(run: Run) -> int:
    """The writes acknowledged so far (read while writers add more: list() copies in one step)."""
    return list(run.history.outcomes.values()).count(Outcome.OK)


def acknowledged_at_least(run: Run, count: int) -> bool:
    return acknowledged(run) >= count


def test_streams_on_either_timeline_replica_get_every_tweet(replica_mesh: Mesh, through_envoy: Stubs) -> None:
    stubs = through_envoy
    author, viewer = stubs.sign_up("replauthor"), stubs.sign_up("replviewer")
    stubs.follow(viewer, author)
    stubs.home(viewer)
    channels = [
        grpc.insecure_channel(f"127.0.0.1:{replica_mesh.ports.replica(name)[0]}")
        for name in replica_mesh.replica_names("timeline")
    ]
    try:
        streams = {}
        for n, channel in enumerate(channels, start=1):
            stub = timeline_grpc.TimelineServiceStub(channel)
            streams[f"home on replica {n}"] = LiveStream(stub, viewer).wait_open(timeout=20)
            streams[f"global on replica {n}"] = LiveStream(stub, None).wait_open(timeout=20)
        posted = {stubs.post(author, f"to every replica {n}").tweet_id for n in range(12)}
        for where, stream in streams.items():
            received: set[str] = set()
            while not posted <= received:
                received.add(stream.next_tweet(timeout=30).tweet_id)  # queue.Empty: one is missing
            assert received == posted, where
            stream.close()
    finally:
        for channel in channels:
            channel.close()

    # Both fan-out workers took part, each under its own name in the group.
    fanouts = replica_mesh.replica_names("fanout")
    names = {consumer_name(replica_mesh, name) for name in fanouts}
    r = redis_client(replica_mesh.redis_url)

    def each_worker_handled_some() -> bool:
        group: Any = r.xinfo_consumers(TWEETS_STREAM, "fanout")
        assert names <= {c["name"].decode() for c in group}, group
        acked = {
            name: metric(replica_mesh, name, ENTRIES, stream=TWEETS_STREAM, outcome="acked")
            for name in fanouts
        }
        assert all(acked.values()), acked
        return True

    eventually(each_worker_handled_some, timeout=20)


def test_follows_applied_by_different_workers_end_right(replica_mesh: Mesh, through_envoy: Stubs) -> None:
    toggled_follows_end_right(through_envoy, redis_client(replica_mesh.redis_url))


def test_sigkill_of_one_replica_of_each_service_mid_load_loses_nothing(
    replica_mesh: Mesh, through_envoy: Stubs, report: Callable[[str], None]
) -> None:
    killed: list[str] = []  # the killed replicas' consumer names

    def fault(run: Run) -> None:
        for service in SERVICES:
            replica = replica_mesh.replica_names(service)[-1]
            if service == "timeline":  # the one holding the scenario's stream: it must resume elsewhere
                replica = holding_a_stream(replica_mesh)
            killed.append(consumer_name(replica_mesh, replica))
            enough = acknowledged(run) + len(run.people.authors)
            replica_mesh.kill_service(replica)
            # Mid-load: as many tweets as there are authors acknowledged between one kill and the next.
            eventually(functools.partial(acknowledged_at_least, run, enough), timeout=30)

    with service_health(replica_mesh) as health:
        outcome = run_scenario("r-replica-sigkill", replica_mesh, through_envoy, health, report, fault)
    # The stream was on the killed timeline replica: it ended (Envoy resets it: reset_by_proxy) and
    # resumed on the other; what it got is in the check above.
    assert outcome.stream.endings, "the stream on the killed timeline replica never ended"

    # What the killed replicas held pending was claimed by the living (nothing is lost, above);
    # then each of their names, idle and empty, is deleted from every group it was in.
    r = redis_client(replica_mesh.redis_url)

    def forgotten() -> bool:
        for stream in r.scan_iter(_type="STREAM"):
            groups: Any = r.xinfo_groups(stream)
            for group in groups:
                consumers: Any = r.xinfo_consumers(stream, group["name"])
                left = {c["name"].decode() for c in consumers} & set(killed)
                assert not left, (stream, group["name"], left)
        return True

    eventually(forgotten, timeout=60, interval=0.5)
    living = replica_mesh.replica_names("fanout")[0]
    assert metric(replica_mesh, living, FORGOTTEN, stream=TWEETS_STREAM, group="fanout") >= 1
