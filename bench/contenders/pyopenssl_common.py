"""pyOpenSSL DTLS 1.2 set up the way dtls_peer is: ECDSA P-256 certificates on both sides, one
AEAD suite, the peer's node ID (SHA-256 of its public key) checked in the verify callback."""

from __future__ import annotations

import functools
import hashlib
import socket

from OpenSSL import SSL, crypto

from . import CIPHER, MTU, Keys

# OpenSSL's DTLS1_2_VERSION (pyOpenSSL exports only the TLS constants).
DTLS1_2_VERSION = 0xFEFD


@functools.cache
def context(keys: Keys) -> SSL.Context:
    """One context per process and identity, as applications use pyOpenSSL."""
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_min_proto_version(DTLS1_2_VERSION)
    ctx.set_max_proto_version(DTLS1_2_VERSION)
    ctx.set_cipher_list(CIPHER.encode())
    ctx.use_certificate_file(keys.cert_path)
    ctx.use_privatekey_file(keys.key_path)
    ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION)

    def verify(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        # Self-signed, so trust comes only from the pin (as in dtls_peer).
        spki = crypto.dump_publickey(crypto.FILETYPE_ASN1, cert.get_pubkey())
        return hashlib.sha256(spki).hexdigest() == keys.peer_node_id

    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
    return ctx


def connection(keys: Keys, role: str, sock: socket.socket | None) -> SSL.Connection:
    conn = SSL.Connection(context(keys), sock)
    conn.set_ciphertext_mtu(MTU)
    if role == "client":
        conn.set_connect_state()
    else:
        conn.set_accept_state()
    return conn
