"""Mutual TLS set up wrong is a clear error at start, set up right is what every member reads:
meshkit.mtls's checks of a GRPC_TLS_DIR folder, the setting that reads it, the certificates devstack
makes, and Envoy's service clusters rendered with or without it."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.envoy import DESCRIPTOR, TEMPLATE, render_envoy_config
from devstack.errors import DevstackError
from devstack.mesh import PUBLIC_SERVICES
from devstack.tls import mesh_certificates
from meshkit.mtls import MeshTlsError, load_mesh_tls
from meshkit.settings import SettingsError
from users_svc.settings import load_settings as users_settings

ENV = {
    "DATABASE_URL": "postgresql://db/x",
    "REDIS_URL": "redis://r:6379/0",
    "PAGE_TOKEN_SECRET": "a-test-secret-of-some-length",
}


@pytest.fixture
def mesh(tmp_path: Path) -> Path:
    return mesh_certificates(tmp_path / "mesh-tls", ("users", "envoy", "client"))


def _issue(
    mesh: Path,
    folder: Path,
    usages: list[x509.ObjectIdentifier],
    days: tuple[int, int] = (-1, 30),
) -> Path:
    """A certificate the mesh's CA issues in `folder`, for `usages`, valid between the `days` from now."""
    ca = x509.load_pem_x509_certificate((mesh / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((mesh / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "users")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir()
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    shutil.copy(mesh / "ca.crt", folder / "ca.crt")
    return folder


def test_a_member_folder_loads(mesh: Path) -> None:
    tls = load_mesh_tls(mesh / "users")
    assert tls.certificate_chain == (mesh / "users" / "tls.crt").read_bytes()
    assert tls.trusted_cas == (mesh / "ca.crt").read_bytes()
    assert users_settings({**ENV, "GRPC_TLS_DIR": str(mesh / "users")}).grpc_tls == tls


def test_unset_means_plain(mesh: Path) -> None:
    settings = users_settings(ENV)
    assert settings.grpc_tls is None
    assert settings.grpc_health_port == 0


def test_each_wrong_setup_names_the_file_and_what_is_wrong(mesh: Path, tmp_path: Path) -> None:
    def refused(folder: Path, serves: bool = True) -> str:
        with pytest.raises(MeshTlsError) as error:
            load_mesh_tls(folder, serves=serves)
        return str(error.value)

    assert (
        refused(tmp_path / "nowhere")
        == f"{tmp_path / 'nowhere'} is not a folder (it should hold tls.crt, tls.key, ca.crt)"
    )

    missing = tmp_path / "missing"
    shutil.copytree(mesh / "users", missing)
    (missing / "tls.key").unlink()
    assert refused(missing).startswith(f"cannot read {missing / 'tls.key'}")

    swapped = tmp_path / "swapped"
    shutil.copytree(mesh / "users", swapped)
    shutil.copy(mesh / "client" / "tls.key", swapped / "tls.key")
    assert refused(swapped) == f"{swapped / 'tls.key'} is not the private key of {swapped / 'tls.crt'}"

    not_pem = tmp_path / "not-pem"
    shutil.copytree(mesh / "users", not_pem)
    (not_pem / "tls.crt").write_text("hello")
    assert refused(not_pem) == f"{not_pem / 'tls.crt'} holds no PEM certificate"

    stranger = mesh_certificates(tmp_path / "other", ("users",))
    foreign = tmp_path / "foreign"
    shutil.copytree(mesh / "users", foreign)
    shutil.copy(stranger / "ca.crt", foreign / "ca.crt")
    assert refused(foreign) == f"{foreign / 'tls.crt'} is not issued by a CA of {foreign / 'ca.crt'}"
    # A bundle of both CAs (the middle of a CA rotation) trusts either.
    (foreign / "ca.crt").write_bytes((stranger / "ca.crt").read_bytes() + (mesh / "ca.crt").read_bytes())
    load_mesh_tls(foreign)

    expired = _issue(mesh, tmp_path / "expired", [ExtendedKeyUsageOID.CLIENT_AUTH], days=(-30, -1))
    assert "UTC, not now" in refused(expired, serves=False)

    client_only = _issue(mesh, tmp_path / "client-only", [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert (
        refused(client_only)
        == f"{client_only / 'tls.crt'} may not serve as a TLS server (its extended key usage)"
    )
    load_mesh_tls(client_only, serves=False)  # Envoy's, the CLI's: they only call

    with pytest.raises(SettingsError, match=r"^GRPC_TLS_DIR: .* is not the private key of"):
        users_settings({**ENV, "GRPC_TLS_DIR": str(swapped)})


def test_devstack_keeps_its_certificates_and_mends_a_broken_one(mesh: Path) -> None:
    kept = (mesh / "users" / "tls.crt").read_bytes()
    mesh_certificates(mesh, ("users", "envoy", "client"))
    assert (mesh / "users" / "tls.crt").read_bytes() == kept
    shutil.copy(mesh / "client" / "tls.key", mesh / "users" / "tls.key")
    mesh_certificates(mesh, ("users", "envoy", "client"))
    assert (mesh / "users" / "tls.crt").read_bytes() != kept
    load_mesh_tls(mesh / "users")
    names = x509.load_pem_x509_certificate(kept).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["users", "localhost"]


def _clusters(upstreams: dict[str, tuple[str, int]], mesh_tls: Path | None) -> dict[str, Any]:
    config = yaml.safe_load(
        render_envoy_config(
            TEMPLATE,
            listen_port=8080,
            admin_port=9901,
            metrics_port=9902,
            upstreams=upstreams,
            descriptor=DESCRIPTOR,
            mesh_tls=mesh_tls,
        )
    )
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def test_envoy_speaks_mutual_tls_to_every_service_cluster_only_when_told(mesh: Path) -> None:
    upstreams = {name: (f"{name}-headless", 50051) for name in PUBLIC_SERVICES}
    upstreams["users"] = ("127.0.0.1", 50051)
    for cluster in _clusters(upstreams, None).values():
        assert "transport_socket" not in cluster, cluster["name"]

    envoy = (mesh / "envoy").absolute()
    clusters = _clusters(upstreams, envoy)
    for name, (host, _port) in upstreams.items():
        context = clusters[name]["transport_socket"]["typed_config"]
        assert context["@type"].endswith("UpstreamTlsContext")
        common = context["common_tls_context"]
        assert common["alpn_protocols"] == ["h2"]
        assert common["tls_certificates"] == [
            {
                "certificate_chain": {"filename": str(envoy / "tls.crt")},
                "private_key": {"filename": str(envoy / "tls.key")},
            }
        ]
        validation = common["validation_context"]
        assert validation["trusted_ca"] == {"filename": str(envoy / "ca.crt")}
        # The service's certificate must name the host the cluster dials.
        kind = "IP_ADDRESS" if host == "127.0.0.1" else "DNS"
        assert validation["match_typed_subject_alt_names"] == [{"san_type": kind, "matcher": {"exact": host}}]
        assert context.get("sni") == (None if kind == "IP_ADDRESS" else host)


def test_envoy_refuses_a_wrong_mesh_tls_folder(mesh: Path) -> None:
    (mesh / "envoy" / "ca.crt").unlink()
    upstreams = {name: ("127.0.0.1", 1) for name in PUBLIC_SERVICES}
    with pytest.raises(DevstackError, match=r"^Envoy's mesh TLS: cannot read .*ca\.crt"):
        _clusters(upstreams, mesh / "envoy")
