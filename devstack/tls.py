"""Certificates for Envoy's TLS listener: the pair to use, and a self-signed one made on request."""

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


def self_signed(folder: Path, names: tuple[str, ...] = LOCAL_NAMES) -> TlsFiles:
    """A self-signed certificate for `names` and the loopback addresses, in `folder` (tls.crt, tls.key).

    One already there is kept while it is valid for RENEW_BEFORE more, so clients that trust it
    (curl --cacert, a browser exception) go on trusting it across restarts.
    """
    files = TlsFiles(folder / "tls.crt", folder / "tls.key")
    if files.cert.is_file() and files.key.is_file():
        existing = x509.load_pem_x509_certificate(files.cert.read_bytes())
        if existing.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC):
            return files
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in LOCAL_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        # Its own issuer: clients are given this certificate as the one to trust (a CA of one).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


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
