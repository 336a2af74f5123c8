"""Keys and certificates made with ``cryptography``, as applications make them: the one way the
tests write a node's PKCS#8 key or a self-signed certificate of their own (forged ones included)."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import NameOID

# libp2p/specs tls/tls.md: the extension in which a node key endorses a certificate key.
LIBP2P_OID = x509.ObjectIdentifier("1.3.6.1.4.1.53594.1.1")


def pkcs8_pem(key: Any) -> str:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def self_signed_pem(key: Any, cn: str, libp2p_extension: bytes | None = None) -> str:
    """A self-signed certificate of ``key`` with this CN, valid for a day, carrying the raw
    libp2p extension value if given."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .serial_number(x509.random_serial_number())
        .public_key(key.public_key())
    )
    if libp2p_extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(LIBP2P_OID, libp2p_extension), critical=False
        )
    # Ed25519 and Ed448 sign the message itself and take no digest.
    algorithm = (
        None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
    )
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()
