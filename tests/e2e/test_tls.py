"""Envoy's TLS listener as the README shows it: curl --cacert and grpcurl -cacert against the test
mesh's self-signed certificate, HTTP/JSON and native gRPC on one port, and untrusted clients refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import binaries
from devstack.envoy import DESCRIPTOR, TEMPLATE, TLS_LISTENER, TlsListener, render_envoy_config
from devstack.mesh import PUBLIC_SERVICES, Mesh
from devstack.tls import TlsFiles, self_signed
from tests.helpers import PASSWORD, unique_handle

ROOT = Path(__file__).resolve().parents[2]


def _certificate(mesh: Mesh) -> Path:
    assert mesh.tls is not None, "the test mesh serves TLS"
    return mesh.tls.cert


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("curl")
    if found is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    return subprocess.run(
        [found, "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_curl_over_https_with_the_certificate(mesh: Mesh) -> None:
    base = f"https://localhost:{mesh.ports.envoy_tls}"
    cacert = str(_certificate(mesh))
    handle = unique_handle("tls")
    signed_up = curl(
        "--cacert", cacert, "-X", "POST", f"{base}/v1/users",
        "-d", json.dumps({"handle": handle, "password": PASSWORD}),
    )  # fmt: skip
    assert signed_up.returncode == 0, signed_up.stderr
    assert json.loads(signed_up.stdout)["user"]["handle"] == handle
    over_h2 = curl("--cacert", cacert, "--http2", "-w", "\n%{http_version}", f"{base}/v1/handles/{handle}")
    body, version = over_h2.stdout.rsplit("\n", 1)
    assert json.loads(body)["user"]["handle"] == handle
    assert version == "2"  # ALPN chose h2

    untrusted = curl(f"{base}/v1/handles/{handle}")
    assert untrusted.returncode == 60, untrusted  # curl: the peer's certificate is not trusted
    other = self_signed(_certificate(mesh).parent.parent / "other-tls")
    wrong_ca = curl("--cacert", str(other.cert), f"{base}/v1/handles/{handle}")
    assert wrong_ca.returncode == 60, wrong_ca


def test_grpcurl_over_tls_with_the_certificate(mesh: Mesh) -> None:
    handle = unique_handle("tlsg")
    common = [
        str(binaries.grpcurl()),
        "-cacert", str(_certificate(mesh)),
        "-protoset", str(DESCRIPTOR),
        "-max-time", "10",
    ]  # fmt: skip
    address = f"localhost:{mesh.ports.envoy_tls}"
    created = subprocess.run(
        [*common, "-d", json.dumps({"handle": handle, "password": PASSWORD}), address,
         "tweetmesh.users.v1.UserService/CreateUser"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["user"]["handle"] == handle
    missing = subprocess.run(
        [*common, "-d", json.dumps({"handle": "nobody_tls_x"}), address,
         "tweetmesh.users.v1.UserService/GetUserByHandle"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr + missing.stdout
    # The internal RPCs stay unreachable over TLS as over plain HTTP/2.
    internal = subprocess.run(
        [*common, "-d", "{}", address, "tweetmesh.users.v1.UserService/BatchGetUsers"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert internal.returncode != 0
    assert "Unimplemented" in internal.stderr + internal.stdout


def test_the_tls_listener_is_rendered_only_with_a_certificate(tmp_path: Path) -> None:
    def listeners(tls: TlsListener | None) -> dict[str, Any]:
        config = yaml.safe_load(
            render_envoy_config(
                TEMPLATE,
                listen_port=8080,
                admin_port=9901,
                metrics_port=9902,
                upstreams={name: ("127.0.0.1", 1) for name in PUBLIC_SERVICES},
                descriptor=DESCRIPTOR,
                tls=tls,
            )
        )
        return {listener["name"]: listener for listener in config["static_resources"]["listeners"]}

    assert TLS_LISTENER not in listeners(None)
    files = TlsFiles(tmp_path / "a.crt", tmp_path / "a.key")
    rendered = listeners(TlsListener(files, 9443, "0.0.0.0"))
    secure = rendered[TLS_LISTENER]
    assert secure["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9443}
    chain = secure["filter_chains"][0]
    context = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["tls_certificates"] == [
        {"certificate_chain": {"filename": str(files.cert)}, "private_key": {"filename": str(files.key)}}
    ]
    # The same routes and filters as the plain listener.
    assert chain["filters"] == rendered["ingress"]["filter_chains"][0]["filters"]
