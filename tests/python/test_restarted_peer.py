"""A peer whose application restarts (crash, phone app killed) reconnects from the same address:
its new handshake replaces the session the other side still holds, once it is verified."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest
from conftest import LOOPBACK, STEP_TIMEOUT, address, recv_within
from dtls_peer import DTLSPeerConnection, Identity


def open_peer(sock: socket.socket, remote: socket.socket, me: Identity, peer: Identity) -> DTLSPeerConnection:
    return DTLSPeerConnection(sock, address(remote), me, expected_node_id=peer.node_id)


@pytest.mark.parametrize("restarting", ["client", "server"])
async def test_a_restarted_peer_reconnects_to_a_session_still_held_by_the_other_side(
    family: socket.AddressFamily, identity_a: Identity, identity_b: Identity, restarting: str
) -> None:
    sock_a = socket.socket(family, socket.SOCK_DGRAM)
    sock_b = socket.socket(family, socket.SOCK_DGRAM)
    sock_a.bind((LOOPBACK[family], 0))
    sock_b.bind((LOOPBACK[family], 0))
    a = open_peer(sock_a, sock_b, identity_a, identity_b)
    b = open_peer(sock_b, sock_a, identity_b, identity_a)
    survivors: list[DTLSPeerConnection] = []
    try:
        await asyncio.wait_for(asyncio.gather(a.handshake(), b.handshake()), STEP_TIMEOUT)
        gone, staying = (a, b) if a.role == restarting else (b, a)
        survivors.append(staying)
        gone_sock, staying_sock = (sock_a, sock_b) if gone is a else (sock_b, sock_a)
        gone_identity, staying_identity = (identity_a, identity_b) if gone is a else (identity_b, identity_a)
        where = address(gone_sock)
        # The process dies: nothing is sent (no close_notify), its socket goes away.
        del a, b, gone
        gc.collect()
        gone_sock.close()
        # It comes back on the same port with the same identity and pin.
        reborn_sock = socket.socket(family, socket.SOCK_DGRAM)
        reborn_sock.bind(where)
        new = open_peer(reborn_sock, staying_sock, gone_identity, staying_identity)
        survivors.append(new)
        reborn_sock.close()
        handshake = asyncio.ensure_future(new.handshake())
        if restarting == "server":
            # The old client says something; the new server, which has no session, asks it
            # for a new handshake instead of staying silent.
            await staying.send(b"lost with the old server")
        await asyncio.wait_for(handshake, STEP_TIMEOUT)

        await new.send(b"back again")
        assert await recv_within(staying) == b"back again"
        await staying.send(b"welcome back")
        assert await recv_within(new) == b"welcome back"
        assert staying.is_established
        assert staying.stats()["peer_restarts"] == 1
        assert staying.peer_node_id == gone_identity.node_id
    finally:
        for conn in survivors:
            await conn.close()
        sock_a.close()
        sock_b.close()
