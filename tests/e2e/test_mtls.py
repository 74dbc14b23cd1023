"""Mutual TLS inside the mesh (GRPC_TLS_DIR, Envoy's --mesh-tls-dir), on one private mesh that has
it on: the story through Envoy, a service refusing clients without a certificate of the mesh's CA
before it serves anything, grpcurl and the admin CLI with the client certificate, the plain health
port and metrics, and a wrong setup stopping a service or Envoy at start."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import binaries
from devstack.envoy import DESCRIPTOR
from devstack.mesh import CLIENT, ROOT, Mesh, free_port
from devstack.tls import mesh_certificates
from meshkit.healthcheck import health_status
from meshkit.mtls import load_mesh_tls
from tests.conftest import TEST_ENV
from tests.conftest import test_mesh as private_mesh  # (a name pytest would take for a test)
from tests.e2e.test_envoy_http import Http
from tests.helpers import eventually
from tweetmesh.fanout.v1 import fanout_service_pb2 as fanout_pb
from tweetmesh.fanout.v1 import fanout_service_pb2_grpc as fanout_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc


@pytest.fixture(scope="module")
def mtls_mesh() -> Iterator[Mesh]:
    with private_mesh(TEST_ENV, "tweetmesh-mtls-", mesh_tls=True) as instance:
        yield instance


def _folder(mesh: Mesh, member: str) -> Path:
    assert mesh.mesh_tls is not None, "the mesh speaks mutual TLS"
    return mesh.mesh_tls / member


def _address(mesh: Mesh, service: str) -> str:
    return f"127.0.0.1:{mesh.ports.of(service)}"


def _metrics(mesh: Mesh, service: str) -> str:
    """The service's /metrics, over plain HTTP whatever its gRPC port speaks."""
    url = f"http://127.0.0.1:{mesh.ports.of(service + '_metrics')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _handled(mesh: Mesh, service: str, method: str) -> float:
    """How many calls of `method` the service has answered (its /metrics)."""
    return sum(
        float(line.rpartition(" ")[2])
        for line in _metrics(mesh, service).splitlines()
        if line.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in line
    )


def _envoy_stat(mesh: Mesh, name: str) -> int:
    query = urllib.parse.urlencode({"filter": f"^{re.escape(name)}$"})
    url = f"http://127.0.0.1:{mesh.ports.envoy_admin}/stats?{query}"
    with urllib.request.urlopen(url, timeout=5) as response:
        line = response.read().decode().strip()
    return int(line.rpartition(": ")[2]) if line else 0


def test_the_story_through_envoy(mtls_mesh: Mesh) -> None:
    api = Http(mtls_mesh.ports.envoy)
    _reader, reader_token = api.sign_up("mreader")
    author, author_token = api.sign_up("mauthor")
    followed = api("POST", f"/v1/users/{author['user_id']}:follow", {}, token=reader_token)
    assert followed.status == 200, followed.body
    stream = http.client.HTTPConnection("127.0.0.1", mtls_mesh.ports.envoy, timeout=15)
    stream.request("GET", "/v1/timelines/home:stream", headers={"authorization": f"Bearer {reader_token}"})
    response = stream.getresponse()
    try:
        assert response.status == 200
        assert "heartbeat" in json.loads(response.readline())
        posted = api("POST", "/v1/tweets", {"text": "over mutual TLS"}, token=author_token)
        assert posted.status == 200, posted.body
        tweet_id = posted.json()["tweet"]["tweet_id"]
        while "tweet" not in (event := json.loads(response.readline())):
            assert "heartbeat" in event, event
        assert event["tweet"]["tweet_id"] == tweet_id
    finally:
        stream.close()
    # Delivered by fan-out (which asked users_svc for the followers over mutual TLS) to the home
    # timeline, read through timeline_svc (which asks tweets_svc and users_svc).
    home = eventually(
        lambda: api("GET", "/v1/timelines/home?page_size=5", token=reader_token).json()["tweets"]
    )
    assert [t["tweet_id"] for t in home] == [tweet_id]
    assert home[0]["author"]["handle"] == author["handle"]
    # Envoy reached each service it called through a TLS handshake of its own.
    for cluster in ("users", "tweets", "timeline"):
        assert _envoy_stat(mtls_mesh, f"cluster.{cluster}.ssl.handshake") > 0, cluster


# Called by clients only (no service asks it of users_svc): its count in users_svc's metrics is
# what this test's calls did.
METHOD = "GetUserByHandle"


def _ask(channel: grpc.Channel) -> grpc.RpcError:
    """users_svc's GetUserByHandle of a handle nobody has: an error either way."""
    with pytest.raises(grpc.RpcError) as failed:
        users_grpc.UserServiceStub(channel).GetUserByHandle(
            users_pb.GetUserByHandleRequest(handle="nobody_mtls"), timeout=5
        )
    return failed.value


def test_a_service_refuses_clients_without_a_certificate_of_the_mesh_ca(
    mtls_mesh: Mesh, tmp_path: Path
) -> None:
    address = _address(mtls_mesh, "users")
    ca = (_folder(mtls_mesh, CLIENT) / "ca.crt").read_bytes()
    stranger = load_mesh_tls(mesh_certificates(tmp_path / "other-ca", (CLIENT,)) / CLIENT, serves=False)
    before = _handled(mtls_mesh, "users", METHOD)
    clients = {
        "plain": grpc.insecure_channel(address),
        "TLS without a certificate": grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)),
        "a certificate of another CA": grpc.secure_channel(
            address,
            grpc.ssl_channel_credentials(ca, stranger.private_key, stranger.certificate_chain),
        ),
    }
    for what, channel in clients.items():
        with channel:
            assert _ask(channel).code() == grpc.StatusCode.UNAVAILABLE, what
            assert health_status(channel, timeout=2) == "UNAVAILABLE", what
    # Refused at the handshake: the service answered none of these calls.
    assert _handled(mtls_mesh, "users", METHOD) == before

    member = load_mesh_tls(_folder(mtls_mesh, CLIENT), serves=False)
    with grpc.secure_channel(address, member.channel_credentials()) as channel:
        assert _ask(channel).code() == grpc.StatusCode.NOT_FOUND  # answered
        assert health_status(channel) == "SERVING"
    eventually(lambda: _handled(mtls_mesh, "users", METHOD) == before + 1)


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.grpcurl()), "-max-time", "10", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_grpcurl_and_the_admin_cli_with_the_client_certificate(mtls_mesh: Mesh) -> None:
    client = _folder(mtls_mesh, CLIENT)
    certificate = [
        "-cacert",
        str(client / "ca.crt"),
        "-cert",
        str(client / "tls.crt"),
        "-key",
        str(client / "tls.key"),
    ]
    users, fanout = _address(mtls_mesh, "users"), _address(mtls_mesh, "fanout")
    # As the README shows it: reflection works over mutual TLS, and so do internal RPCs.
    listed = _grpcurl(*certificate, users, "list")
    assert listed.returncode == 0, listed.stderr
    assert "tweetmesh.users.v1.UserService" in listed.stdout.split()
    found = _grpcurl(
        *certificate,
        "-d",
        '{"handles":["nobody_at_all"]}',
        users,
        "tweetmesh.users.v1.UserService/ResolveHandles",
    )
    assert found.returncode == 0, found.stderr
    stats = _grpcurl(
        *certificate, "-protoset", str(DESCRIPTOR), fanout, "tweetmesh.fanout.v1.FanoutService/GetFanoutStats"
    )
    assert stats.returncode == 0, stats.stderr
    assert "streams" in json.loads(stats.stdout)
    plain = _grpcurl("-plaintext", users, "list")
    assert plain.returncode != 0
    without = _grpcurl("-cacert", str(client / "ca.crt"), users, "list")
    assert without.returncode != 0

    def admin(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tweetmesh_cli", "--json", "admin", "fanout-stats",
             "--fanout-target", fanout, *extra],
            capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        )  # fmt: skip

    answered = admin("--mesh-tls-dir", str(client))
    assert answered.returncode == 0, answered.stderr
    assert "streams" in json.loads(answered.stdout)
    assert admin().returncode != 0


def test_health_port_and_metrics_stay_plain(mtls_mesh: Mesh) -> None:
    health_port = free_port()
    mtls_mesh.start_service("fanout", {"GRPC_HEALTH_PORT": str(health_port)})
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
        assert health_status(channel) == "SERVING"
        assert health_status(channel, service="liveness") == "SERVING"
        # The health service alone: nothing else is served there.
        with pytest.raises(grpc.RpcError) as refused:
            fanout_grpc.FanoutServiceStub(channel).GetFanoutStats(
                fanout_pb.GetFanoutStatsRequest(), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        ).status == (health_pb2.HealthCheckResponse.SERVING)
    probe = subprocess.run(
        [sys.executable, "-m", "meshkit.healthcheck"],
        env=mtls_mesh.service_env("fanout", {"GRPC_HEALTH_PORT": str(health_port)}),
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    with grpc.insecure_channel(_address(mtls_mesh, "fanout")) as channel:
        assert health_status(channel, timeout=2) == "UNAVAILABLE"
    assert "grpc_server_handled_total" in _metrics(mtls_mesh, "fanout")


def test_a_wrong_setup_stops_a_service_and_envoy_at_start(mtls_mesh: Mesh, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    users = _folder(mtls_mesh, "users")
    for name in ("tls.crt", "ca.crt"):
        (wrong / name).write_bytes((users / name).read_bytes())
    (wrong / "tls.key").write_bytes((_folder(mtls_mesh, CLIENT) / "tls.key").read_bytes())
    port = free_port()
    env = mtls_mesh.service_env(
        "users", {"GRPC_TLS_DIR": str(wrong), "GRPC_PORT": str(port), "METRICS_PORT": "0"}
    )
    started = subprocess.run(
        [sys.executable, "-m", "users_svc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert started.returncode != 0
    assert (
        f"GRPC_TLS_DIR: {wrong / 'tls.key'} is not the private key of {wrong / 'tls.crt'}" in started.stderr
    )

    missing = tmp_path / "missing"
    envoy = subprocess.run(
        [sys.executable, "-m", "devstack.envoy", "--upstream=users=127.0.0.1:1",
         "--mesh-tls-dir", str(missing)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert envoy.returncode != 0
    assert f"{missing} is not a folder" in envoy.stderr
