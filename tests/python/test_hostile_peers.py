"""Guards against hostile parties: a man in the middle with its own identity, ClientHello and
garbage floods during a session (from the peer's address and from others), forged
renegotiation, and plaintext on the wire."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time

import pytest
from conftest import (
    STEP_TIMEOUT,
    ConnectionFactory,
    ImpairedPairFactory,
    PairFactory,
    UdpPairFactory,
    UdpSocketFactory,
    address,
    handshake_all,
    recv_within,
)
from dtls_peer import DTLSError, DTLSPeerConnection, HandshakeError, Identity, PeerVerificationError


async def test_man_in_the_middle_with_its_own_identity_is_refused_by_both_ends(
    udp_socket: UdpSocketFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
) -> None:
    # Mallory (identity_c) terminates DTLS on each side and would relay between a and b; it
    # accepts anyone (expected_node_id=None), as an attacker would.
    sock_a, sock_m_a, sock_m_b, sock_b = (udp_socket(socket.AF_INET) for _ in range(4))
    a = connection(sock_a, address(sock_m_a), identity_a, expected_node_id=identity_b.node_id, role="client")
    mallory_to_a = connection(sock_m_a, address(sock_a), identity_c, expected_node_id=None, role="server")
    mallory_to_b = connection(sock_m_b, address(sock_b), identity_c, expected_node_id=None, role="client")
    b = connection(sock_b, address(sock_m_b), identity_b, expected_node_id=identity_a.node_id, role="server")
    results = await asyncio.wait_for(
        asyncio.gather(
            a.handshake(),
            mallory_to_a.handshake(),
            mallory_to_b.handshake(),
            b.handshake(),
            return_exceptions=True,
        ),
        STEP_TIMEOUT,
    )
    for name, result in zip(("a", "b"), (results[0], results[3])):
        assert isinstance(result, PeerVerificationError), f"{name}: {result!r}"
        assert result.actual_node_id == identity_c.node_id, f"{name}: {result!r}"
    # Mallory got no session either: both ends aborted with an alert.
    for name, result in zip(("mallory_to_a", "mallory_to_b"), (results[1], results[2])):
        assert isinstance(result, HandshakeError), f"{name}: {result!r}"
    for conn in (a, b, mallory_to_a, mallory_to_b):
        assert not conn.is_established
        assert conn.stats()["messages_in"] == 0
        with pytest.raises(HandshakeError):
            await conn.send(b"anything")
        with pytest.raises(HandshakeError):
            await conn.recv()


async def capture_client_hello(udp_socket: UdpSocketFactory, identity: Identity, peer: Identity) -> bytes:
    """A genuine ClientHello from a throwaway connection (what a stranger would send)."""
    sink = udp_socket(socket.AF_INET)
    sink.setblocking(False)
    sock = udp_socket(socket.AF_INET)
    conn = DTLSPeerConnection(sock, address(sink), identity, expected_node_id=peer.node_id, role="client")
    try:
        handshake = asyncio.ensure_future(conn.handshake())
        loop = asyncio.get_running_loop()
        hello = await asyncio.wait_for(loop.sock_recv(sink, 2048), STEP_TIMEOUT)
        handshake.cancel()
    finally:
        conn.close_nowait()
    assert hello[0] == 22 and hello[13] == 1, "not a ClientHello"
    return hello


def flood(targets: list[tuple[socket.socket, tuple[str, int]]], hello: bytes, seconds: float) -> int:
    """Sends ClientHellos and garbage (some of it DTLS-shaped) to each target for ``seconds``
    (at most 100,000 rounds); returns the number of datagrams sent."""
    rng = random.Random(1)
    garbage = [rng.randbytes(rng.randrange(1, 1200)) for _ in range(32)]
    garbage += [bytes([22, 0xFE, 0xFD]) + rng.randbytes(rng.randrange(10, 300)) for _ in range(32)]
    garbage += [bytes([23, 0xFE, 0xFD, 0, 1]) + rng.randbytes(rng.randrange(10, 300)) for _ in range(32)]
    sent = 0
    deadline = time.monotonic() + seconds
    for i in range(100_000):
        if time.monotonic() > deadline:
            break
        for sock, target in targets:
            try:
                sock.sendto(hello if i % 2 else garbage[i % len(garbage)], target)
                sent += 1
            except BlockingIOError:
                pass
        if i % 64 == 0:
            # Leave the GIL to the event loop and the library now and then.
            time.sleep(0.0005)
    return sent


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def loop_lag(stop: asyncio.Event, interval: float = 0.01) -> float:
    """The longest the event loop was late for a ``interval`` tick while running."""
    worst = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(interval)
        worst = max(worst, loop.time() - before - interval)
    return worst


async def ping_pong(
    a: DTLSPeerConnection, b: DTLSPeerConnection, rounds: int, until: asyncio.Future[int] | None = None
) -> tuple[int, int]:
    """Round trips a -> b -> a (at least ``rounds``, and on until ``until`` is done); a lost
    datagram is retried. Returns the round trips made and the retries needed."""

    async def echo() -> None:
        while True:
            await b.send(b"pong " + await b.recv())

    echoing = asyncio.ensure_future(echo())
    retries = 0
    done = 0
    try:
        for i in range(100_000):
            if i >= rounds and (until is None or until.done()):
                break
            ping = b"%d" % i
            for _attempt in range(20):
                await a.send(ping)
                try:
                    # Late pongs for earlier retries may come first; skip them.
                    while await asyncio.wait_for(a.recv(), 0.5) != b"pong " + ping:
                        pass
                    break
                except asyncio.TimeoutError:
                    retries += 1
            else:
                raise AssertionError(f"round {i} got no answer in 20 tries")
            done += 1
    finally:
        echoing.cancel()
    return done, retries


async def test_floods_from_the_peer_address_and_strangers_do_not_disturb_a_session(
    make_pair: PairFactory,
    udp_socket: UdpSocketFactory,
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
) -> None:
    pair = make_pair(socket.AF_INET)
    await handshake_all(pair.a, pair.b)
    hello = await capture_client_hello(udp_socket, identity_c, identity_b)
    await ping_pong(pair.a, pair.b, 20)
    rss_before = rss_kib()
    stats_before = pair.b.stats()

    stranger = udp_socket(socket.AF_INET)
    stranger.setblocking(False)
    # The test still holds a's own socket: sending from it is sending from the peer's address.
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, fileno=os.dup(pair.sock_a.fileno()))
    spoofer.setblocking(False)
    target = address(pair.sock_b)
    flooding = asyncio.ensure_future(
        asyncio.to_thread(flood, [(spoofer, target), (stranger, target)], hello, 2.0)
    )
    stop_ticker = asyncio.Event()
    ticker = asyncio.ensure_future(loop_lag(stop_ticker))
    try:
        started = time.monotonic()
        rounds, retries = await asyncio.wait_for(ping_pong(pair.a, pair.b, 50, until=flooding), 60)
        took = time.monotonic() - started
    finally:
        flooded = await flooding
        stop_ticker.set()
        lag = await ticker
        spoofer.close()
    rss_after = rss_kib()
    stats = pair.b.stats()
    dropped = {k: v - stats_before["dropped"][k] for k, v in stats["dropped"].items()}
    print(
        f"\nflood: {flooded} datagrams; {rounds} round trips in {took:.2f} s with {retries} retries; "
        f"loop lag worst {lag * 1000:.1f} ms; RSS {rss_before} -> {rss_after} KiB; dropped {dropped}; "
        f"b sent {stats['datagrams_out'] - stats_before['datagrams_out']} datagrams for {rounds} pongs"
    )
    assert flooded > 2000, "the flood was too small to prove anything"
    # A ClientHello opens a new handshake beside the session only at a server (a restarted
    # client); at a client it is simply invalid.
    reasons = ("wrong_source", "not_dtls", "invalid") + (
        ("new_handshake",) if pair.b.role == "server" else ()
    )
    assert all(dropped[k] > 0 for k in reasons), dropped
    # Every datagram from the peer's address is accounted for: a ping, or dropped for a reason
    # (datagrams from other addresses never reach the engine, so they are not in datagrams_in).
    arrived = stats["datagrams_in"] - stats_before["datagrams_in"]
    pings = stats["messages_in"] - stats_before["messages_in"]
    refused = sum(v for k, v in dropped.items() if k not in ("wrong_source", "queue_full"))
    assert arrived == pings + refused, (arrived, pings, dropped)
    # One pong per ping (a retried ping that arrived after the last round may be left
    # unanswered). The only other answers are to the forged ClientHello: a new handshake
    # beside the session, in case the peer restarted, which starts at most every 0.25 s and
    # answers on its retransmission timer, not per datagram (README "restarted peers").
    answers = stats["datagrams_out"] - stats_before["datagrams_out"] - pings
    assert -retries <= answers <= 100, (answers, pings, flooded)
    assert pair.a.is_established and pair.b.is_established
    assert lag < 1.0, f"the event loop stalled for {lag:.2f} s"
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)
    # Still a working session both ways once the flood is over.
    await pair.b.send(b"after the flood")
    assert await recv_within(pair.a) == b"after the flood"


async def test_handshakes_complete_during_a_flood_from_the_peer_address(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    udp_socket: UdpSocketFactory,
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
) -> None:
    # A stranger's ClientHellos and garbage, spoofed from the client's address, reach the
    # server before and while it handshakes with the real client.
    hello = await capture_client_hello(udp_socket, identity_c, identity_b)
    for attempt in range(3):
        sock_a, sock_b = udp_pair(socket.AF_INET)
        a = connection(
            sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, role="client"
        )
        b = connection(
            sock_b, address(sock_a), identity_b, expected_node_id=identity_a.node_id, role="server"
        )
        spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, fileno=os.dup(sock_a.fileno()))
        spoofer.setblocking(False)
        try:
            flooding = asyncio.ensure_future(
                asyncio.to_thread(flood, [(spoofer, address(sock_b))], hello, 1.0)
            )
            await asyncio.sleep(0.1 * attempt)
            await handshake_all(a, b)
            # The session works both ways while the flood goes on. A datagram the flood crowds
            # out of a socket buffer is ordinary UDP loss, so a lost ping is sent again.
            rounds, _retries = await asyncio.wait_for(ping_pong(a, b, 3), STEP_TIMEOUT)
            assert rounds >= 3
            assert b.peer_node_id == identity_a.node_id
            await flooding
        finally:
            spoofer.close()


async def test_forged_renegotiation_is_refused_and_the_session_goes_on(
    make_pair: PairFactory,
    udp_socket: UdpSocketFactory,
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
) -> None:
    pair = make_pair(socket.AF_INET, options_a={"role": "client"}, options_b={"role": "server"})
    await handshake_all(pair.a, pair.b)
    # A ClientHello from the client's address asks the established server to renegotiate; a
    # HelloRequest (handshake type 0) forged from the server's address asks the client to.
    hello = await capture_client_hello(udp_socket, identity_a, identity_b)
    hello_request = bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 9, 0, 12]) + bytes(
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    )
    for _ in range(10):
        pair.sock_a.sendto(hello, address(pair.sock_b))
        pair.sock_b.sendto(hello_request, address(pair.sock_a))
    await pair.a.send(b"still talking")
    assert await recv_within(pair.b) == b"still talking"
    await pair.b.send(b"yes")
    assert await recv_within(pair.a) == b"yes"
    assert pair.a.is_established and pair.b.is_established
    assert pair.a.cipher == pair.b.cipher is not None


async def test_no_plaintext_leaves_the_socket(make_impaired_pair: ImpairedPairFactory) -> None:
    marker = b"PLAINTEXT-MARKER-7f3a9c"
    pair = await make_impaired_pair(socket.AF_INET)
    await asyncio.wait_for(asyncio.gather(pair.a.handshake(), pair.b.handshake()), STEP_TIMEOUT)
    for i in range(20):
        message = marker * (1 + i % 40)
        await pair.a.send(message)
        assert await recv_within(pair.b) == message
        await pair.b.send(message[::-1] + marker)
        assert await recv_within(pair.a) == message[::-1] + marker
    await pair.a.close()
    with pytest.raises(DTLSError):
        await recv_within(pair.b)
    directions = {d for d, _ in pair.link.capture}
    assert directions == {"a_to_b", "b_to_a"}
    assert len(pair.link.capture) >= 40
    for direction, datagram in pair.link.capture:
        assert marker not in datagram, f"plaintext in a {direction} datagram"
        # Not even a piece of it: any 8 bytes of the marker would be a leak.
        assert not any(marker[i : i + 8] in datagram for i in range(len(marker) - 7)), direction
