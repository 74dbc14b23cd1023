"""Certificates for Envoy's TLS listener (the pair to use, and a self-signed one made on request) and
for mutual TLS inside the mesh (a private CA and a certificate per member, made on request)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.errors import DevstackError
from meshkit.mtls import CERTIFICATE, PRIVATE_KEY, TRUSTED_CAS, MeshTlsError, load_mesh_tls

# The names a self-signed certificate is valid for: what a client on this machine dials.
LOCAL_NAMES = ("localhost",)
LOCAL_ADDRESSES = ("127.0.0.1", "::1")
SELF_SIGNED_DAYS = 365
# Made again this long before it expires, so a `make run` never starts with one about to lapse.
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate chain and its private key, as Envoy reads them."""

    cert: Path
    key: Path

    def check(self) -> TlsFiles:
        """These files, if both are readable; else a DevstackError saying which is not."""
        for what, path in (("certificate", self.cert), ("private key", self.key)):
            if not path.is_file() or not os.access(path, os.R_OK):
                raise DevstackError(f"TLS {what} {path} is not a readable file")
        return self


def _valid_for_long(cert: Path) -> bool:
    """Whether the certificate at `cert` exists and is valid for RENEW_BEFORE more."""
    if not cert.is_file():
        return False
    existing = x509.load_pem_x509_certificate(cert.read_bytes())
    return existing.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)


def _write(files: TlsFiles, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    files.cert.parent.mkdir(parents=True, exist_ok=True)
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _certificate(
    names: tuple[str, ...],
    key: ec.EllipticCurvePrivateKey,
    usages: list[x509.ObjectIdentifier],
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
) -> x509.Certificate:
    """A certificate for `names` and the loopback addresses, for `usages` (none: any), signed by
    `issuer` (a certificate and its key) or by `key` itself."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in LOCAL_ADDRESSES]
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(signer, hashes.SHA256())


def self_signed(folder: Path, names: tuple[str, ...] = LOCAL_NAMES) -> TlsFiles:
    """A self-signed certificate for `names` and the loopback addresses, in `folder` (tls.crt, tls.key).

    One already there is kept while it is valid for RENEW_BEFORE more, so clients that trust it
    (curl --cacert, a browser exception) go on trusting it across restarts.
    """
    files = TlsFiles(folder / "tls.crt", folder / "tls.key")
    if files.key.is_file() and _valid_for_long(files.cert):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    # Its own issuer: clients are given this certificate as the one to trust (a CA of one).
    _write(files, key, _certificate(names, key, [ExtendedKeyUsageOID.SERVER_AUTH], ca=True))
    return files


def mesh_certificates(folder: Path, members: tuple[str, ...]) -> Path:
    """A private CA for mutual TLS inside the mesh (`folder`/ca.crt, ca.key) and, for each of
    `members`, a folder `folder`/<member> with tls.crt, tls.key (a certificate that CA issued for
    the member's name, localhost and the loopback addresses, as TLS server and client) and ca.crt:
    what GRPC_TLS_DIR (meshkit.mtls) and Envoy's --mesh-tls-dir read. Returns `folder`.

    Kept across restarts like self_signed's; a member's certificate is made again when it is
    missing, about to expire or does not pass meshkit.mtls's checks (its key, the CA there now)."""
    authority = TlsFiles(folder / "ca.crt", folder / "ca.key")
    if not (authority.key.is_file() and _valid_for_long(authority.cert)):
        new_key = ec.generate_private_key(ec.SECP256R1())
        _write(authority, new_key, _certificate(("tweetmesh-mesh-ca",), new_key, [], ca=True))
    ca_cert = x509.load_pem_x509_certificate(authority.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(authority.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise DevstackError(f"{authority.key} is not the EC key this mesh's CA is made with")
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for member in members:
        own = folder / member
        own.mkdir(parents=True, exist_ok=True)
        (own / TRUSTED_CAS).write_bytes(authority.cert.read_bytes())
        files = TlsFiles(own / CERTIFICATE, own / PRIVATE_KEY)
        if not (_valid_for_long(files.cert) and _usable(own)):
            key = ec.generate_private_key(ec.SECP256R1())
            _write(files, key, _certificate((member, *LOCAL_NAMES), key, usages, issuer=(ca_cert, ca_key)))
    return folder


def _usable(folder: Path) -> bool:
    """Whether the member's files there fit together and with its CA (meshkit.mtls's checks)."""
    try:
        load_mesh_tls(folder)
    except MeshTlsError:
        return False
    return True


def tls_from_env(env: Mapping[str, str], data_dir: Path) -> TlsFiles | None:
    """What `make run` serves TLS with: TLS_CERT_FILE + TLS_KEY_FILE, or with TLS_SELF_SIGNED=1 a
    self-signed certificate kept in <data dir>/tls; None (no TLS listener) when neither is set."""
    cert, key = env.get("TLS_CERT_FILE"), env.get("TLS_KEY_FILE")
    if cert or key:
        if not (cert and key):
            raise DevstackError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both, or neither")
        return TlsFiles(Path(cert), Path(key)).check()
    flag = env.get("TLS_SELF_SIGNED", "")
    if flag not in ("", "0", "1"):
        raise DevstackError(f"TLS_SELF_SIGNED must be 1 or 0, got {flag!r}")
    return self_signed(data_dir / "tls") if flag == "1" else None


def mesh_tls_from_env(env: Mapping[str, str], data_dir: Path, members: tuple[str, ...]) -> Path | None:
    """With MESH_TLS=1, the folder of mesh_certificates for `members`, kept in <data dir>/mesh-tls
    (mutual TLS between Envoy and the services); None (plain gRPC inside the mesh) otherwise."""
    flag = env.get("MESH_TLS", "")
    if flag not in ("", "0", "1"):
        raise DevstackError(f"MESH_TLS must be 1 or 0, got {flag!r}")
    return mesh_certificates(data_dir / "mesh-tls", members) if flag == "1" else None
