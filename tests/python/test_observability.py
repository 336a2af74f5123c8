"""What a user sees of a connection without reading the code: ``state``, ``repr()``, and the
events logged under the ``dtls_peer`` logger (on the event-loop thread, never with keys or
message contents)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path

import pytest
from conftest import ConnectionFactory, PairFactory, UdpPairFactory, address, handshake_all, recv_within
from dtls_peer import ConnectionClosed, HandshakeTimeout, Identity, PeerVerificationError


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dtls_peer"]


def show(sock: socket.socket) -> str:
    host, port = address(sock)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def test_state_follows_the_connection_through_its_life(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pair = make_pair(family)
    assert (pair.a.state, pair.b.state) == ("new", "new")
    handshake = asyncio.ensure_future(pair.a.handshake())
    await asyncio.sleep(0)
    assert pair.a.state == "handshaking"
    await handshake_all(pair.b)
    await asyncio.wait_for(handshake, 10)
    assert (pair.a.state, pair.b.state) == ("established", "established")
    text = repr(pair.a)
    assert text == (
        f"<DTLSPeerConnection {pair.a.role} {show(pair.sock_a)} -> {show(pair.sock_b)} established "
        f"peer={pair.identity_b.node_id}>"
    )
    await pair.a.close()
    assert pair.a.state == "closed"
    with pytest.raises(ConnectionClosed):
        await recv_within(pair.b)
    assert pair.b.state == "closed"
    assert "closed peer=" in repr(pair.b)


async def test_a_refused_handshake_is_failed_not_closed(
    make_pair: PairFactory, family: socket.AddressFamily, identity_c: Identity
) -> None:
    pair = make_pair(
        family,
        options_a={"expected_node_id": identity_c.node_id, "role": "client"},
        options_b={"role": "server", "handshake_timeout": 3.0},
    )
    results = await asyncio.wait_for(
        asyncio.gather(pair.a.handshake(), pair.b.handshake(), return_exceptions=True), 10
    )
    assert isinstance(results[0], PeerVerificationError)
    assert pair.a.state == "failed"
    assert "failed peer=None" in repr(pair.a)
    await pair.a.close()
    assert pair.a.state == "closed"


async def test_handshake_and_close_are_logged_on_the_loop_thread_without_secrets(
    make_pair: PairFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="dtls_peer")
    pair = make_pair(socket.AF_INET)
    await handshake_all(pair.a, pair.b)
    secret = b"the payload must never be logged"
    await pair.a.send(secret)
    assert await recv_within(pair.b) == secret
    await pair.a.close()
    with pytest.raises(ConnectionClosed):
        await recv_within(pair.b)

    # A slow machine may retransmit a flight; those records are checked in the next test.
    logged = [m for m in messages(caplog) if "flight retransmitted" not in m]
    a_peer, b_peer = show(pair.sock_b), show(pair.sock_a)
    assert f"handshake with {a_peer} started ({pair.a.role})" in logged
    assert f"handshake with {b_peer} started ({pair.b.role})" in logged
    for peer, other in ((a_peer, pair.identity_b), (b_peer, pair.identity_a)):
        done = [m for m in logged if m.startswith(f"handshake with {peer} done in ")]
        assert len(done) == 1, logged
        assert done[0].endswith(f" ms: DTLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256, peer node ID {other.node_id}")
    assert f"connection to {a_peer} closed: the connection was closed" in logged
    assert f"connection to {b_peer} closed: the peer closed the connection" in logged
    assert len(logged) == 6, logged

    loop_thread = threading.get_ident()
    assert all(r.thread == loop_thread for r in caplog.records if r.name == "dtls_peer")
    pair.identity_a.save(tmp_path / "a.crt", tmp_path / "a.key")
    key_body = "".join((tmp_path / "a.key").read_text().splitlines()[1:-1])
    text = "\n".join(logged)
    assert secret.decode() not in text
    assert key_body[:32] not in text


async def test_a_failed_handshake_and_its_retransmissions_are_logged(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dtls_peer")
    sock, silent = udp_pair(socket.AF_INET)
    conn = connection(
        sock,
        address(silent),
        identity_a,
        expected_node_id=identity_b.node_id,
        role="client",
        handshake_timeout=0.6,
        initial_retransmit_timeout=0.05,
    )
    with pytest.raises(HandshakeTimeout):
        await asyncio.wait_for(conn.handshake(), 10)
    logged = messages(caplog)
    peer = show(silent)
    retransmitted = [m for m in logged if m.startswith(f"handshake with {peer}: flight retransmitted (")]
    assert retransmitted, logged
    assert (
        retransmitted[-1]
        == f"handshake with {peer}: flight retransmitted ({conn.stats()['retransmissions']} so far)"
    )
    assert logged[-1] == f"handshake with {peer} failed: handshake timed out"
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels[logged[-1]] == logging.INFO and levels[retransmitted[0]] == logging.DEBUG


async def test_nothing_is_formatted_when_the_logger_is_quiet(
    make_pair: PairFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dtls_peer")
    pair = make_pair(socket.AF_INET)
    await handshake_all(pair.a, pair.b)
    await pair.a.close()
    assert messages(caplog) == []
