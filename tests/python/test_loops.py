"""The loop integration on loops that cannot watch descriptors (Windows' ProactorEventLoop,
here NoAddReaderLoop), and the socket takeover Windows uses (socket.dup rather than os.dup).
The core of the suite also runs on NoAddReaderLoop (conftest.TWO_LOOP_FILES)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from conftest import STEP_TIMEOUT, PairFactory, UdpPairFactory, address, handshake_all, recv_within
from dtls_peer import DTLSPeerConnection, Identity, connection
from dtls_peer.connection import SocketLike
from loops import NoAddReaderLoop


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dtls-peer-wake"]


async def _exchange(make_pair: PairFactory) -> tuple[DTLSPeerConnection, DTLSPeerConnection]:
    pair = make_pair(socket.AF_INET)
    await handshake_all(pair.a, pair.b)
    await pair.a.send(b"ping")
    assert await recv_within(pair.b) == b"ping"
    await pair.b.send_many([b"one", b"two"])
    assert [await recv_within(pair.a), await recv_within(pair.a)] == [b"one", b"two"]
    return pair.a, pair.b


async def _close(*conns: DTLSPeerConnection) -> None:
    await asyncio.wait_for(asyncio.gather(*(c.close() for c in conns)), STEP_TIMEOUT)


def test_a_loop_without_add_reader_is_woken_by_a_watcher_thread(make_pair: PairFactory) -> None:
    loop = NoAddReaderLoop()
    before = len(_watchers())
    try:
        a, b = loop.run_until_complete(asyncio.wait_for(_exchange(make_pair), STEP_TIMEOUT))
        # One watcher per loop, however many connections; the I/O thread keeps reading the
        # sockets, since the loop cannot watch them.
        assert len(_watchers()) == before + 1
        for conn in (a, b):
            assert conn._waker is not None and not conn._waker.selects
            assert conn._unwatch is None
        loop.run_until_complete(_close(a, b))
    finally:
        loop.close()
    # The watcher ends once its loop is closed (it looks every half second).
    deadline = time.monotonic() + 5
    while len(_watchers()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_watchers()) == before


async def test_a_selector_loop_reads_established_sockets_itself(make_pair: PairFactory) -> None:
    a, b = await _exchange(make_pair)
    for conn in (a, b):
        assert conn._waker is not None and conn._waker.selects
        assert conn._unwatch is not None


def test_the_windows_duplicate_is_a_new_handle_to_the_same_socket(udp_pair: UdpPairFactory) -> None:
    sock, _ = udp_pair(socket.AF_INET)
    fd = connection._dup_handle(sock.fileno())
    dup = socket.socket(fileno=fd)
    try:
        assert fd != sock.fileno()
        assert dup.getsockname() == sock.getsockname()
        sock.close()
        assert dup.getsockname()[1] > 0  # still open: the duplicate is owned on its own
    finally:
        dup.close()


def test_a_closed_handle_is_refused_as_on_unix(
    udp_pair: UdpPairFactory, identity_a: Identity, identity_b: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "_dup", connection._dup_handle)
    sock, peer = udp_pair(socket.AF_INET)
    number = sock.fileno()
    sock.close()
    with pytest.raises(ValueError, match="not open"):
        DTLSPeerConnection(number, address(peer), identity_a, expected_node_id=identity_b.node_id)


@pytest.mark.parametrize("kind", ["socket", "handle", "transport"])
async def test_every_socket_kind_is_taken_over_with_the_windows_duplicate(
    kind: str,
    udp_pair: UdpPairFactory,
    identity_a: Identity,
    identity_b: Identity,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection, "_dup", connection._dup_handle)
    sock_a, sock_b = udp_pair(socket.AF_INET)
    target = address(sock_b)
    taken: SocketLike = sock_a
    if kind == "handle":
        taken = sock_a.fileno()
    elif kind == "transport":
        taken, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, sock=sock_a
        )
    a = DTLSPeerConnection(taken, target, identity_a, expected_node_id=identity_b.node_id)
    b = DTLSPeerConnection(sock_b, address(sock_a), identity_b, expected_node_id=identity_a.node_id)
    try:
        await handshake_all(a, b)
        await a.send(b"over a duplicated handle")
        assert await recv_within(b) == b"over a duplicated handle"
    finally:
        a.close_nowait()
        b.close_nowait()
