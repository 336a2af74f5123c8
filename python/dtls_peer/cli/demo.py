"""``demo``: the whole job on loopback (hole punch, pinned upgrade, messages, a refused impostor)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any

from .._native import Identity
from .._plain_udp import recv_from, send_to
from ..connection import DTLSPeerConnection
from ..exceptions import HandshakeError, PeerVerificationError


def add_command(commands: Any) -> None:
    demo_parser = commands.add_parser(
        "demo",
        help="two peers on loopback: hole punch, pinned handshake, messages, a rejected impostor, "
        "then an Ed25519 node with a libp2p peer ID",
    )
    demo_parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> Any:
    return demo()


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _hole_punch(me: socket.socket, peer: socket.socket) -> None:
    """The plaintext exchange a NAT traversal ends with: each side hears the other."""
    await send_to(me, b"punch", peer.getsockname())
    await send_to(peer, b"punch", me.getsockname())
    for sock in (me, peer):
        data, addr = await asyncio.wait_for(recv_from(sock, 64), 2.0)
        print(f"  {sock.getsockname()[1]} heard {data!r} from port {addr[1]}")
    # A late punch packet, as NATs and retries produce; the connection will ignore it.
    await send_to(peer, b"punch", me.getsockname())


async def demo() -> int:
    alice_id, bob_id, mallory_id = Identity.generate(), Identity.generate(), Identity.generate()
    print(f"alice   node ID {alice_id.node_id}")
    print(f"bob     node ID {bob_id.node_id}")
    print(f"mallory node ID {mallory_id.node_id}")

    alice_sock, bob_sock, mallory_sock = _udp_socket(), _udp_socket(), _udp_socket()
    try:
        print("1. hole punch (plaintext UDP)")
        await _hole_punch(alice_sock, bob_sock)

        print("2. upgrade to DTLS 1.2, each side pinning the other's node ID")
        alice = DTLSPeerConnection(
            alice_sock, bob_sock.getsockname(), alice_id, expected_node_id=bob_id.node_id
        )
        bob = DTLSPeerConnection(
            bob_sock, alice_sock.getsockname(), bob_id, expected_node_id=alice_id.node_id
        )
        started = time.perf_counter()
        await asyncio.gather(alice.handshake(), bob.handshake())
        took = (time.perf_counter() - started) * 1000
        print(f"  handshake done in {took:.1f} ms: {alice.protocol_version} {alice.cipher}")
        print(f"  alice is the {alice.role}, verified peer {alice.peer_node_id}")
        print(f"  bob is the {bob.role}, verified peer {bob.peer_node_id}")

        print("3. messages")
        for text in (b"hello bob", b"how are you?"):
            await alice.send(text)
            print(f"  bob got   {await bob.recv()!r}")
        await bob.send(b"fine, thanks")
        print(f"  alice got {await alice.recv()!r}")
        dropped = alice.stats()["dropped"]["not_dtls"]
        print(f"  alice ignored {dropped} late plaintext punch packet(s)")
        await alice.close()
        await bob.close()

        print("4. mallory answers instead of bob")
        alice2_sock = _udp_socket()
        try:
            alice2 = DTLSPeerConnection(
                alice2_sock,
                mallory_sock.getsockname(),
                alice_id,
                expected_node_id=bob_id.node_id,
                role="client",
                handshake_timeout=3.0,
            )
            mallory = DTLSPeerConnection(
                mallory_sock, alice2_sock.getsockname(), mallory_id, expected_node_id=None, role="server"
            )
            results = await asyncio.gather(alice2.handshake(), mallory.handshake(), return_exceptions=True)
            alice_result, mallory_result = results
            if not isinstance(alice_result, PeerVerificationError):
                print(f"  UNEXPECTED: alice's handshake gave {alice_result!r}")
                return 1
            print(f"  alice refused the peer: {alice_result}")
            print("  alice falls back to the relay")
            if isinstance(mallory_result, HandshakeError):
                print(f"  mallory got no session: {mallory_result}")
            await alice2.close()
            await mallory.close()
        finally:
            alice2_sock.close()
    finally:
        for sock in (alice_sock, bob_sock, mallory_sock):
            sock.close()
    await _libp2p_nodes()
    print("demo finished")
    return 0


async def _libp2p_nodes() -> None:
    """Node keys other than P-256: an Ed25519 node and a P-256 node with libp2p peer IDs. The
    Ed25519 key endorses an ephemeral P-256 DTLS certificate (libp2p's certificate extension),
    so the handshake stays ECDHE-ECDSA while each side pins the other's peer ID."""
    print("5. an Ed25519 node and a P-256 node, pinned by libp2p peer IDs")
    carol_id = Identity.generate("ed25519", node_id_scheme="libp2p")
    dave_id = Identity.generate("p256", node_id_scheme="libp2p")
    print(f"  carol ({carol_id.key_type}) peer ID {carol_id.node_id}")
    print(f"  dave  ({dave_id.key_type})    peer ID {dave_id.node_id}")
    carol_sock, dave_sock = _udp_socket(), _udp_socket()
    try:
        carol = DTLSPeerConnection(
            carol_sock, dave_sock.getsockname(), carol_id, expected_node_id=dave_id.node_id
        )
        dave = DTLSPeerConnection(
            dave_sock, carol_sock.getsockname(), dave_id, expected_node_id=carol_id.node_id
        )
        await asyncio.gather(carol.handshake(), dave.handshake())
        print(f"  handshake done: {carol.protocol_version} {carol.cipher}")
        print(f"  dave verified carol as {dave.peer_node_id} (an Ed25519 key behind a P-256 certificate)")
        await carol.send(b"hello from an Ed25519 node")
        print(f"  dave got  {await dave.recv()!r}")
        await carol.close()
        await dave.close()
    finally:
        carol_sock.close()
        dave_sock.close()
