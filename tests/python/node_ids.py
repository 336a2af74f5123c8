"""Node-ID schemes computed independently of dtls_peer, with ``cryptography``, as applications do:
the reference the tests hold the library's IDs against.

* ``dpc_node_id``: DPC Messenger's scheme, as written in issue 9 (its ``crypto.py`` derives
  ``"dpc-node-" + sha256(SubjectPublicKeyInfo as PEM)``; current builds keep 32 hex digits).
* ``libp2p_peer_id``: libp2p/specs ``peer-ids/peer-ids.md``: the protobuf ``PublicKey {Type, Data}``
  in a multihash (identity when at most 42 bytes, else sha2-256), written in base58btc.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal, Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

Scheme = Union[Literal["sha256", "libp2p"], Callable[[bytes], str]]

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# libp2p's protobuf KeyType values.
RSA, ED25519, SECP256K1, ECDSA = 0, 1, 2, 3


def dpc_node_id(spki_der: bytes) -> str:
    """DPC Messenger's node ID, the function an application passes as ``node_id_scheme``."""
    pem = serialization.load_der_public_key(spki_der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "dpc-node-" + hashlib.sha256(pem).hexdigest()[:32]


def base58btc(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = BASE58[digit] + text
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def libp2p_public_key(spki_der: bytes) -> bytes:
    """The protobuf ``PublicKey`` libp2p encodes a key as (peer-ids.md, "Keys")."""
    key = serialization.load_der_public_key(spki_der)
    if isinstance(key, ed25519.Ed25519PublicKey):
        key_type = ED25519
        data = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256K1):
        key_type = SECP256K1
        data = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        key_type, data = ECDSA, spki_der
    elif isinstance(key, rsa.RSAPublicKey):
        key_type, data = RSA, spki_der
    else:
        raise ValueError(f"no libp2p encoding for {type(key).__name__}")
    return bytes([0x08, key_type, 0x12]) + _varint(len(data)) + data


def libp2p_peer_id(spki_der: bytes) -> str:
    encoded = libp2p_public_key(spki_der)
    if len(encoded) <= 42:
        multihash = bytes([0x00, len(encoded)]) + encoded
    else:
        multihash = bytes([0x12, 0x20]) + hashlib.sha256(encoded).digest()
    return base58btc(multihash)


def expected_node_id(spki_der: bytes, scheme: Scheme) -> str:
    """The node ID of a key under ``scheme``, computed without dtls_peer."""
    if scheme == "sha256":
        return hashlib.sha256(spki_der).hexdigest()
    if scheme == "libp2p":
        return libp2p_peer_id(spki_der)
    assert callable(scheme)
    return scheme(spki_der)
