"""Mutual TLS inside the mesh: the certificate a service presents, its key and the CAs it trusts,
read from one folder (tls.crt, tls.key, ca.crt: the keys of a cert-manager Secret) and checked
once at start, and the gRPC credentials made of them.

A server made with `server_credentials` takes only clients whose certificate chains to one of the
trusted CAs (no certificate, or another CA's: the handshake fails, nothing is served); a channel
made with `channel_credentials` presents the certificate and takes only servers whose certificate
chains to those CAs and names the host it dials (gRPC checks the name)."""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

CERTIFICATE = "tls.crt"
PRIVATE_KEY = "tls.key"
TRUSTED_CAS = "ca.crt"
_USAGES = {ExtendedKeyUsageOID.SERVER_AUTH: "a TLS server", ExtendedKeyUsageOID.CLIENT_AUTH: "a TLS client"}


class MeshTlsError(ValueError):
    """The folder's files are missing, unreadable or do not fit together; the message says which."""


@dataclass(frozen=True, slots=True)
class MeshTls:
    """The PEM files of one member of the mesh, as read at start."""

    folder: Path
    certificate_chain: bytes
    private_key: bytes
    trusted_cas: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        """A server that requires a client certificate issued by a trusted CA."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.trusted_cas,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """A client that presents this certificate and trusts only the mesh's CAs."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.trusted_cas,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def _read(folder: Path, name: str) -> bytes:
    path = folder / name
    try:
        return path.read_bytes()
    except OSError as error:
        raise MeshTlsError(f"cannot read {path}: {error.strerror or error}") from None


def _certificates(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise MeshTlsError(f"{path} holds no PEM certificate") from None
    return found


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` signed `certificate` (names and signature)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_usage(leaf: x509.Certificate, path: Path, usages: tuple[x509.ObjectIdentifier, ...]) -> None:
    """Every one of `usages` is allowed by the certificate's extended key usage, if it has one."""
    try:
        allowed = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return  # no extended key usage: any use
    missing = [_USAGES[usage] for usage in usages if usage not in allowed]
    if missing:
        raise MeshTlsError(f"{path} may not serve as {' or '.join(missing)} (its extended key usage)")


def load_mesh_tls(folder: Path, *, serves: bool = True) -> MeshTls:
    """The files of `folder`, checked: readable, the key is the certificate's, the certificate
    chain leads to a CA of ca.crt, it is valid now and may be used as a TLS client (and server,
    when `serves`). Anything else is a MeshTlsError naming the file and what is wrong."""
    if not folder.is_dir():
        raise MeshTlsError(
            f"{folder} is not a folder (it should hold {CERTIFICATE}, {PRIVATE_KEY}, {TRUSTED_CAS})"
        )
    chain_pem, key_pem, cas_pem = (_read(folder, name) for name in (CERTIFICATE, PRIVATE_KEY, TRUSTED_CAS))
    chain = _certificates(chain_pem, folder / CERTIFICATE)
    cas = _certificates(cas_pem, folder / TRUSTED_CAS)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise MeshTlsError(f"{folder / PRIVATE_KEY} is not an unencrypted PEM private key") from None
    leaf = chain[0]
    public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != leaf.public_key().public_bytes(*public):
        raise MeshTlsError(f"{folder / PRIVATE_KEY} is not the private key of {folder / CERTIFICATE}")
    for certificate, issuer in itertools.pairwise(chain):
        if not issued_by(certificate, issuer):
            raise MeshTlsError(
                f"{folder / CERTIFICATE}: the chain is broken ({certificate.subject.rfc4514_string()})"
            )
    if not any(chain[-1] == ca or issued_by(chain[-1], ca) for ca in cas):
        raise MeshTlsError(f"{folder / CERTIFICATE} is not issued by a CA of {folder / TRUSTED_CAS}")
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise MeshTlsError(
            f"{folder / CERTIFICATE} is valid from {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} to"
            f" {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now"
        )
    usages = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    _check_usage(leaf, folder / CERTIFICATE, (ExtendedKeyUsageOID.SERVER_AUTH, *usages) if serves else usages)
    return MeshTls(folder, chain_pem, key_pem, cas_pem)
