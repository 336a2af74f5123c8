"""The forged flood (issue 11, "Floods"): 100,000 DTLS ClientHellos from forged loopback sources
(127.x.y.z, random ports; a raw socket, so root) at one DTLSEndpoint on 127.0.0.1. Every one
must get a stateless HelloVerifyRequest and nothing else: no handshake state, no connection,
no memory that grows with the flood; and a genuine peer that dials during the flood must
still get through, verified, with its messages.

The ClientHello is a real one: the first datagram our own client sends (forged.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from typing import Any

import pytest
from conftest import UdpSocketFactory, address, wait_until
from dtls_peer import DTLSEndpoint, DTLSPeerConnection, Identity
from forged import ForgedSender, first_client_hello

FLOOD = 100_000
# Sent before the baseline, with one genuine peer, so what the first datagrams allocate once
# (the socket task's batch buffers, the cookie secret, the loop's own) is not counted.
WARM_UP = 5_000
# The endpoint's RSS may move this much over the flood. A leak of 84 bytes per forged hello
# would grow it by 8 MiB; handshake state per hello (an OpenSSL SSL object, tens of KiB)
# by gigabytes. What legitimately moves is far smaller: one genuine peer (under 100 KiB),
# allocator noise, and pages of the test's own Python objects (a few hundred KiB).
RSS_BOUND = 8 * 2**20
# The sender waits while this many of its datagrams are not yet read by the endpoint, so the
# kernel's socket queue (sized below) never overflows and every forged hello is answered.
WINDOW = 2_000
CHUNK = 500
RECEIVE_BUFFER = 16 * 2**20
# Linux's SO_RCVBUFFORCE (asm-generic/socket.h), which Python's socket module does not name.
SO_RCVBUFFORCE = 33
# The flood is paced to last at least this long (10,000 hellos a second), so the genuine peer
# really dials during it. Unpaced (about 30,000 a second here), the genuine handshake took
# 1.3-4.7 s with no retransmission: the endpoint's socket task and the client share the one
# I/O thread of this process; at this pace it takes tens of milliseconds.
MIN_FLOOD_SECONDS = 10.0
# Generous bounds on a shared two-core machine (a loopback handshake takes milliseconds).
FLOOD_LIMIT = 120.0
GENUINE_LIMIT = 30.0
# Datagrams of the genuine peer's handshake and messages, besides the flood's hellos.
GENUINE_DATAGRAMS = 50


def require_raw_socket() -> None:
    """Fails (never skips) where a raw socket cannot be had: not root, or root without
    CAP_NET_RAW (e.g. a container that drops it)."""
    message = (
        "the forged flood test sends from forged 127.x.y.z sources through a raw socket, which "
        "needs root with CAP_NET_RAW; CI runs as root: run it as root"
    )
    if os.geteuid() != 0:
        pytest.fail(f"{message} (running as uid {os.geteuid()})", pytrace=False)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError as e:
        pytest.fail(f"{message} ({e})", pytrace=False)


def vm_rss() -> int:
    """This process's resident memory (the endpoint runs in it), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Flood:
    """Sends forged hellos in chunks, never more than WINDOW ahead of what the endpoint has
    read, and records the largest RSS seen between chunks."""

    def __init__(self, ep: DTLSEndpoint, sender: ForgedSender) -> None:
        self.ep = ep
        self.sender = sender
        self.peak_rss = 0

    def read_by_endpoint(self) -> int:
        datagrams: int = self.ep.stats()["datagrams_in"]
        return datagrams

    async def send(self, count: int, seconds: float = 0.0) -> None:
        started = time.monotonic()
        deadline = started + FLOOD_LIMIT
        base = self.read_by_endpoint() - self.sender.sent
        target = self.sender.sent + count
        while self.sender.sent < target:
            # Paced: chunk k goes out no earlier than k / chunks of ``seconds``.
            due = started + seconds * (1 - (target - self.sender.sent) / count)
            while time.monotonic() < due or self.sender.sent - (self.read_by_endpoint() - base) > WINDOW:
                assert time.monotonic() < deadline, (
                    f"the endpoint read {self.read_by_endpoint() - base} of {self.sender.sent} forged "
                    f"hellos within {FLOOD_LIMIT} s"
                )
                await asyncio.sleep(0.001)
            self.sender.send(min(CHUNK, target - self.sender.sent))
            self.peak_rss = max(self.peak_rss, vm_rss())
        while self.read_by_endpoint() - base < self.sender.sent:
            if time.monotonic() > deadline:
                break  # the kernel dropped some; the HelloVerifyRequest count below says how many
            await asyncio.sleep(0.005)


async def genuine_peer(
    ep: DTLSEndpoint, sock: socket.socket, identity: Identity, endpoint_identity: Identity, tag: bytes
) -> tuple[float, dict[str, Any]]:
    """A real client dials the endpoint; both ends verified, one message each way. Returns how
    long the handshake took and the client's stats."""
    client = DTLSPeerConnection(
        sock, ep.local_address, identity, expected_node_id=endpoint_identity.node_id, role="client"
    )
    try:
        started = time.monotonic()
        accepted, _ = await asyncio.wait_for(asyncio.gather(ep.accept(), client.handshake()), GENUINE_LIMIT)
        took = time.monotonic() - started
        try:
            assert accepted.peer_node_id == identity.node_id
            assert accepted.remote_address == address(sock)
            assert client.peer_node_id == endpoint_identity.node_id
            await client.send(tag)
            assert await asyncio.wait_for(accepted.recv(), GENUINE_LIMIT) == tag
            await accepted.send(tag[::-1])
            assert await asyncio.wait_for(client.recv(), GENUINE_LIMIT) == tag[::-1]
        finally:
            await accepted.close()
    finally:
        await client.close()
    return took, client.stats()


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    if "." in key:
        group, name = key.split(".")
        return int(after[group][name]) - int(before[group][name])
    return int(after[key]) - int(before[key])


@pytest.mark.timeout(300)
async def test_a_forged_client_hello_flood_gets_only_stateless_cookies_and_a_genuine_peer_connects(
    udp_socket: UdpSocketFactory, identity_a: Identity, identity_b: Identity
) -> None:
    require_raw_socket()
    hello = await first_client_hello(identity_b, identity_a.node_id, GENUINE_LIMIT)
    sock = udp_socket(socket.AF_INET)
    # Room for the window of forged hellos in the kernel's queue (root may exceed rmem_max).
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    ep = DTLSEndpoint(sock, identity_a, allow={identity_b.node_id})
    sender = ForgedSender(hello, address(sock), seed=11)
    try:
        flood = Flood(ep, sender)
        await flood.send(WARM_UP)
        await genuine_peer(ep, udp_socket(socket.AF_INET), identity_b, identity_a, b"before the flood")
        gc.collect()
        before_rss, before = vm_rss(), ep.stats()
        assert before["hello_verify_requests"] >= WARM_UP * 0.99, before

        # The genuine peer dials once a fifth of the flood is out, while the rest goes on.
        flooding = asyncio.ensure_future(flood.send(FLOOD, MIN_FLOOD_SECONDS))
        fifth = WARM_UP + FLOOD // 5
        await wait_until(lambda: sender.sent >= fifth or flooding.done(), "a fifth of the flood", FLOOD_LIMIT)
        took, client_stats = await genuine_peer(
            ep, udp_socket(socket.AF_INET), identity_b, identity_a, b"during the flood"
        )
        sent_when_connected = sender.sent - WARM_UP
        await flooding
        gc.collect()
        after_rss, after = vm_rss(), ep.stats()
    finally:
        sender.close()
        await ep.close()

    assert sent_when_connected < FLOOD, (
        f"the flood was over ({sent_when_connected} sent) before the genuine peer connected ({took:.2f} s; "
        f"its stats {client_stats}; the endpoint's {after})"
    )
    hellos_read = delta(after, before, "datagrams_in")
    cookies = delta(after, before, "hello_verify_requests")
    # Every forged hello the endpoint read was answered with a cookie and nothing else...
    assert cookies >= FLOOD * 0.99, (cookies, hellos_read, after)
    assert hellos_read - GENUINE_DATAGRAMS <= cookies <= hellos_read, (cookies, hellos_read, after)
    # ... and none created state: the one handshake started is the genuine peer's.
    assert delta(after, before, "handshakes_started") == 1, after
    assert delta(after, before, "handshakes_accepted") == 1, after
    assert delta(after, before, "dropped.over_limit") == 0, after
    assert after["pending_handshakes"] == 0, after
    assert after["connections"] == 0, after
    # Memory: where it was after the warm-up, within the bound, during and after the flood.
    assert flood.peak_rss - before_rss <= RSS_BOUND, (
        f"RSS grew {(flood.peak_rss - before_rss) / 2**20:.1f} MiB during the flood"
    )
    assert after_rss - before_rss <= RSS_BOUND, f"RSS grew {(after_rss - before_rss) / 2**20:.1f} MiB"
