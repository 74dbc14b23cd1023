"""The dev stack's replicas: their names, ports and environment (TWEETMESH_REPLICAS), with no
process started (tests/faults/test_replicas.py runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.__main__ import replicas_from_env
from devstack.errors import DevstackError
from devstack.mesh import MAX_REPLICAS, Mesh, MeshPorts, replica_label, replica_of


def test_replica_n_listens_on_the_services_ports_shifted_by_a_hundred_per_replica() -> None:
    ports = MeshPorts()
    assert ports.replica("users") == (50051, 9101)
    assert ports.replica("users-2") == (50151, 9201)
    assert ports.replica("notifications-3") == (50256, 9306)
    assert replica_label("users") == "users_svc" and replica_label("timeline-2") == "timeline_svc replica 2"
    for bad in ("nope", "users-1", "users-x", "users-", "postgres"):
        with pytest.raises(ValueError, match="unknown service"):
            replica_of(bad)


def test_the_replica_count_comes_from_tweetmesh_replicas() -> None:
    assert replicas_from_env({}) == 1
    assert replicas_from_env({"TWEETMESH_REPLICAS": "3"}) == 3
    for bad in ("0", str(MAX_REPLICAS + 1), "two", "-1"):
        with pytest.raises(DevstackError, match="TWEETMESH_REPLICAS"):
            replicas_from_env({"TWEETMESH_REPLICAS": bad})
    with pytest.raises(DevstackError, match="replicas"):
        Mesh(Path("unused"), replicas=MAX_REPLICAS + 1)


def test_each_replica_gets_its_ports_and_reaches_every_replica_of_its_peers(tmp_path: Path) -> None:
    mesh = Mesh(
        tmp_path,
        replicas=2,
        database_url="postgresql://db.example/tweetmesh",
        redis_url="redis://redis.example",
        smtp_url="smtp://mail.example",
    )
    assert mesh.processes()[:3] == ["users", "users-2", "tweets"]
    assert mesh.replica_names("fanout") == ["fanout", "fanout-2"]
    env = mesh.service_env("fanout-2")
    assert (env["GRPC_PORT"], env["METRICS_PORT"]) == ("50153", "9203")
    assert env["USERS_ADDR"] == "ipv4:127.0.0.1:50051,127.0.0.1:50151"
    assert mesh.service_env("fanout")["GRPC_PORT"] == "50053"
    with pytest.raises(ValueError, match="unknown service"):
        mesh.service_env("fanout-3")
