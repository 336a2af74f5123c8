"""Guards the event loop's own reads after the handshake: the loop watches the socket while the
session lives, and stops on close or when the connection is collected without one."""

from __future__ import annotations

import asyncio
import gc
import socket

from conftest import ConnectionFactory, PairFactory, UdpPairFactory, address, handshake_all, recv_within
from dtls_peer import DTLSPeerConnection, Identity


async def test_the_loop_watches_the_socket_once_established_and_stops_on_close(
    make_pair: PairFactory,
) -> None:
    pair = make_pair(socket.AF_INET)
    loop = asyncio.get_running_loop()
    await handshake_all(pair.a, pair.b)
    await pair.a.send(b"read by b's event loop")
    assert await recv_within(pair.b) == b"read by b's event loop"
    # Asking again gives the same descriptor; the loop has a reader on it.
    fd = pair.b._native.take_over_reads()
    assert fd is not None
    await pair.b.close()
    assert loop.remove_reader(fd) is False, "close() left the loop watching the socket"
    assert pair.b._native.take_over_reads() is None


async def test_a_collected_connection_stops_the_loop_watching_its_socket(
    udp_pair: UdpPairFactory, connection: ConnectionFactory, identity_a: Identity, identity_b: Identity
) -> None:
    sock_a, sock_b = udp_pair(socket.AF_INET)
    loop = asyncio.get_running_loop()
    a = connection(sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id)
    b = DTLSPeerConnection(sock_b, address(sock_a), identity_b, expected_node_id=identity_a.node_id)
    await handshake_all(a, b)
    fd = b._native.take_over_reads()
    assert fd is not None
    del b
    gc.collect()
    assert loop.remove_reader(fd) is False, "the collected connection's reader outlived it"
