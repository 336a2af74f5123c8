"""The plaintext UDP helper the demo and the hole-punch example use before the upgrade: it must
work on Python 3.9 (no loop.sock_sendto/sock_recvfrom) and leave the socket free afterwards, so
a connection can take it over."""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import STEP_TIMEOUT, UdpPairFactory, address
from dtls_peer import DTLSPeerConnection, Identity
from dtls_peer._plain_udp import recv_from, send_to


async def test_datagrams_go_both_ways_and_name_their_source(
    family: socket.AddressFamily, udp_pair: UdpPairFactory
) -> None:
    a, b = udp_pair(family)
    a.setblocking(False)
    b.setblocking(False)
    await send_to(a, b"punch", address(b))
    data, source = await asyncio.wait_for(recv_from(b, 64), STEP_TIMEOUT)
    assert (data, source[:2]) == (b"punch", address(a))
    await send_to(b, b"punch back", source)
    data, source = await asyncio.wait_for(recv_from(a, 64), STEP_TIMEOUT)
    assert (data, source[:2]) == (b"punch back", address(b))


async def test_a_timed_out_receive_leaves_the_socket_to_a_connection(
    family: socket.AddressFamily, udp_pair: UdpPairFactory, identity_a: Identity, identity_b: Identity
) -> None:
    a, b = udp_pair(family)
    a.setblocking(False)
    b.setblocking(False)
    loop = asyncio.get_running_loop()
    # Nothing arrives: wait_for cancels the receive, which must stop watching the socket.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(recv_from(a, 64), 0.05)
    assert not loop.remove_reader(a.fileno())
    # A datagram sent afterwards is still there for the next receive, not eaten by a stale reader.
    await send_to(b, b"late", address(a))
    assert (await asyncio.wait_for(recv_from(a, 64), STEP_TIMEOUT))[0] == b"late"
    # And the pinned upgrade on the same sockets works.
    alice = DTLSPeerConnection(a, address(b), identity_a, expected_node_id=identity_b.node_id)
    bob = DTLSPeerConnection(b, address(a), identity_b, expected_node_id=identity_a.node_id)
    try:
        await asyncio.wait_for(asyncio.gather(alice.handshake(), bob.handshake()), 10.0)
        await alice.send(b"hello")
        assert await asyncio.wait_for(bob.recv(), STEP_TIMEOUT) == b"hello"
    finally:
        await alice.close()
        await bob.close()
