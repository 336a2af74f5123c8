"""dtls_peer itself: the connection already has the Endpoint API."""

from __future__ import annotations

import functools
import socket

from dtls_peer import DTLSPeerConnection, Identity

from . import CIPHER, MTU, Endpoint, Keys


async def make(sock: socket.socket, peer: tuple[str, int], role: str, keys: Keys) -> Endpoint:
    assert role in ("client", "server")
    identity = _identity(keys)
    conn = DTLSPeerConnection(
        sock,
        peer,
        identity,
        expected_node_id=keys.peer_node_id,
        role="client" if role == "client" else "server",
        ciphers=CIPHER,
        mtu=MTU,
    )
    sock.close()  # the connection owns a duplicate
    return Adapter(conn)


@functools.cache
def _identity(keys: Keys) -> Identity:
    # One identity per process, as an application holds it: its connections share one
    # OpenSSL context.
    return Identity.load(keys.cert_path, keys.key_path)


class Adapter:
    def __init__(self, conn: DTLSPeerConnection) -> None:
        self.conn = conn
        self.send = conn.send
        self.recv = conn.recv
        self.send_many = conn.send_many
        self.recv_many = conn.recv_many

    async def handshake(self) -> None:
        await self.conn.handshake()

    def close(self) -> None:
        self.conn.close_nowait()
