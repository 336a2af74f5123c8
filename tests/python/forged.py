"""Datagrams from forged loopback sources, for the flood test: a raw IPv4 socket writes whole
IPv4+UDP packets whose source is any 127.x.y.z address and port, as an attacker spoofing
sources would, so the receiver sees a different stranger in every datagram. Needs root
(CAP_NET_RAW); only loopback destinations are used."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

from dtls_peer import DTLSPeerConnection, Identity

IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
UDP_HEADER = struct.Struct("!HHHH")
HEADERS = IPV4_HEADER.size + UDP_HEADER.size
# DTLS record content type "handshake" and handshake type "client_hello" (RFC 6347 §4.1, §4.2.2).
HANDSHAKE, CLIENT_HELLO = 22, 1
RECORD_HEADER = 13


async def first_client_hello(identity: Identity, server_node_id: str, timeout: float) -> bytes:
    """The first datagram our own client sends: a real ClientHello without a cookie, read by a
    plain UDP socket standing where a server would be."""
    loop = asyncio.get_running_loop()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client_sock,
    ):
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        client_sock.bind(("127.0.0.1", 0))
        conn = DTLSPeerConnection(
            client_sock,
            listener.getsockname(),
            identity,
            expected_node_id=server_node_id,
            role="client",
        )
        handshake = asyncio.ensure_future(conn.handshake())
        try:
            hello = await asyncio.wait_for(loop.sock_recv(listener, 65535), timeout)
        finally:
            handshake.cancel()
            conn.close_nowait()
            await asyncio.gather(handshake, return_exceptions=True)
    assert hello[0] == HANDSHAKE and hello[RECORD_HEADER] == CLIENT_HELLO, hello[:16].hex()
    return hello


class ForgedSender:
    """Sends one payload to a loopback destination from random 127.x.y.z sources (x >= 1, so
    never 127.0.0.1 where the real sockets are) and random ports, seeded."""

    def __init__(self, payload: bytes, destination: tuple[str, int], seed: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        # IPPROTO_RAW implies it; set anyway so the packet is sent exactly as built.
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.destination = destination
        self.rng = random.Random(seed)
        self.sent = 0
        self.packet = bytearray(HEADERS + len(payload))
        # Version 4, 20-byte header, TTL 64, UDP. The kernel fills in the header checksum
        # (and the total length); a UDP checksum of 0 means "none", valid over IPv4.
        IPV4_HEADER.pack_into(
            self.packet, 0, 0x45, 0, len(self.packet), 0, 0, 64, socket.IPPROTO_UDP, 0,
            bytes(4), socket.inet_aton(destination[0]),
        )  # fmt: skip
        UDP_HEADER.pack_into(self.packet, IPV4_HEADER.size, 0, destination[1], 8 + len(payload), 0)
        self.packet[HEADERS:] = payload

    def send(self, count: int) -> None:
        rng, packet = self.rng, self.packet
        for _ in range(count):
            packet[12:16] = bytes((127, rng.randint(1, 254), rng.randint(0, 255), rng.randint(1, 254)))
            struct.pack_into("!H", packet, IPV4_HEADER.size, rng.randint(1024, 65535))
            self.sock.sendto(packet, (self.destination[0], 0))
        self.sent += count

    def close(self) -> None:
        self.sock.close()
