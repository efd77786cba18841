"""Long-term identities: an ECDSA P-256 key and a self-signed certificate, made on first run.

The agent keeps its identity in its state directory, a phone in its user config directory;
both files are created 0600 inside a 0700 directory. A peer is known by the SHA-256
fingerprint of its certificate (DER), written as lowercase hex.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.security.atomic import atomic_write

#: The agent's mDNS TXT key carrying its certificate fingerprint (docs/protocol.md).
FINGERPRINT_TXT_KEY = "fp"
CERT_FILE = "identity.crt"
KEY_FILE = "identity.key"
#: Long-lived on purpose: nothing here relies on expiry; pairing and revocation do that job.
VALIDITY = datetime.timedelta(days=100 * 365)


class IdentityError(Exception):
    """The identity files exist but cannot be used (unreadable, corrupt, wrong permissions)."""


def fingerprint(cert_der: bytes) -> str:
    return hashlib.sha256(cert_der).hexdigest()


def short_fingerprint(fp: str) -> str:
    """What people compare by eye: the first 16 hex digits in groups of four."""
    return ":".join(fp[i : i + 4] for i in range(0, 16, 4))


def same_fingerprint(a: str, b: str) -> bool:
    return hmac.compare_digest(a.lower(), b.lower())


@dataclass(frozen=True, slots=True)
class Identity:
    directory: Path
    cert_der: bytes

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert_der)

    @property
    def cert_pem(self) -> str:
        cert = x509.load_der_x509_certificate(self.cert_der)
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _new_certificate(common_name: str, *, server: bool) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    # The agent's TLS trust anchors are its paired phones' own certificates, and OpenSSL finds
    # an anchor by subject name (then by key identifier): two phones both called "anna@phone"
    # would shadow each other. A per-key serialNumber makes every subject unique, and the key
    # identifiers let OpenSSL match the right anchor directly.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "buttons"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, key_id.digest.hex()),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _public_bytes(key: object) -> bytes:
    assert hasattr(key, "public_bytes")
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def load_or_create(directory: Path, common_name: str, *, server: bool) -> Identity:
    """The identity in `directory`, created (key first, then certificate) if absent."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if not cert_path.exists() or not key_path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_pem, key_pem = _new_certificate(common_name, server=server)
        atomic_write(key_path, key_pem, mode=0o600)
        atomic_write(cert_path, cert_pem, mode=0o600)
    try:
        if os.stat(key_path).st_mode & 0o077:
            raise IdentityError(f"{key_path} is readable by others; run: chmod 600 {key_path}")
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot load the identity in {directory}: {exc}") from None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        raise IdentityError(f"{cert_path} does not belong to {key_path}; delete both to start over")
    return Identity(directory, cert.public_bytes(serialization.Encoding.DER))


def cert_der_from_pem(pem: str) -> bytes:
    """A certificate a peer sent us (pairing), as DER; ValueError if it is not one."""
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem_from_der(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
