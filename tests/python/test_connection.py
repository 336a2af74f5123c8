"""Guards the DTLSPeerConnection API over loopback UDP: handshake, messaging, close, properties, stats."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import (
    ALLOWED_CIPHERS,
    STEP_TIMEOUT,
    ConnectionFactory,
    Pair,
    PairFactory,
    UdpPairFactory,
    UdpSocketFactory,
    address,
    handshake_all,
    recv_within,
    wait_until,
)
from dtls_peer import (
    ConnectionClosed,
    DTLSError,
    DTLSPeerConnection,
    Identity,
    MessageTooLarge,
    node_id_from_certificate,
)

DROPPED_KEYS = {
    "not_dtls",
    "invalid",
    "early",
    "after_close",
    "wrong_source",
    "queue_full",
    "stale_handshake",
    "new_handshake",
}


async def test_messages_flow_both_ways(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    await a.send(b"hello from a")
    assert await recv_within(b) == b"hello from a"
    await b.send(b"hello from b")
    assert await recv_within(a) == b"hello from b"
    for i in range(20):
        await a.send(f"message {i}".encode())
    assert [await recv_within(b) for _ in range(20)] == [f"message {i}".encode() for i in range(20)]


async def test_send_accepts_bytearray_and_memoryview(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    await a.send(bytearray(b"from a bytearray"))
    await a.send(memoryview(b"xxfrom a memoryviewxx")[2:-2])
    assert await recv_within(b) == b"from a bytearray"
    assert await recv_within(b) == b"from a memoryview"


async def test_properties_after_handshake(connected_pair: Pair) -> None:
    pair = connected_pair
    for conn, own_sock, peer_sock, peer_identity in (
        (pair.a, pair.sock_a, pair.sock_b, pair.identity_b),
        (pair.b, pair.sock_b, pair.sock_a, pair.identity_a),
    ):
        assert conn.is_established
        assert conn.peer_node_id == peer_identity.node_id
        certificate = conn.peer_certificate
        assert isinstance(certificate, bytes)
        assert certificate == peer_identity.certificate_der
        assert node_id_from_certificate(certificate) == conn.peer_node_id
        assert conn.cipher in ALLOWED_CIPHERS
        assert conn.protocol_version == "DTLSv1.2"
        assert conn.local_address == address(own_sock)
        assert conn.remote_address == address(peer_sock)
        assert conn.max_message_size == 1163
    assert {pair.a.role, pair.b.role} == {"client", "server"}
    assert pair.a.cipher == pair.b.cipher


async def test_properties_before_handshake(make_pair: PairFactory, family: socket.AddressFamily) -> None:
    pair = make_pair(family)
    conn = pair.a
    assert not conn.is_established
    assert conn.peer_node_id is None
    assert conn.peer_certificate is None
    assert conn.cipher is None
    assert conn.protocol_version is None
    assert conn.role in ("client", "server")
    assert conn.local_address == address(pair.sock_a)
    assert conn.remote_address == address(pair.sock_b)
    assert conn.max_message_size == 1163
    assert conn.stats()["handshake_duration"] is None


async def test_auto_role_makes_the_smaller_node_id_the_client(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pair = make_pair(family)
    a_is_smaller = pair.identity_a.node_id < pair.identity_b.node_id
    assert pair.a.role == ("client" if a_is_smaller else "server")
    assert pair.b.role == ("server" if a_is_smaller else "client")
    await handshake_all(pair.a, pair.b)
    assert pair.a.is_established and pair.b.is_established


@pytest.mark.parametrize("a_role", ["client", "server"])
async def test_explicit_roles(make_pair: PairFactory, family: socket.AddressFamily, a_role: str) -> None:
    b_role = "server" if a_role == "client" else "client"
    pair = make_pair(family, options_a={"role": a_role}, options_b={"role": b_role})
    a, b = pair.a, pair.b
    assert (a.role, b.role) == (a_role, b_role)
    await handshake_all(a, b)
    await a.send(b"ping")
    assert await recv_within(b) == b"ping"


async def test_pin_is_case_insensitive(
    make_pair: PairFactory, identity_a: Identity, identity_b: Identity, family: socket.AddressFamily
) -> None:
    pair = make_pair(
        family,
        options_a={"expected_node_id": identity_b.node_id.upper()},
        options_b={"expected_node_id": identity_a.node_id.upper()},
    )
    a, b = pair.a, pair.b
    await handshake_all(a, b)
    assert a.peer_node_id == identity_b.node_id
    assert b.peer_node_id == identity_a.node_id


async def test_no_pin_accepts_any_peer_and_reports_its_node_id(
    make_pair: PairFactory, identity_a: Identity, identity_b: Identity, family: socket.AddressFamily
) -> None:
    pair = make_pair(
        family,
        expected_node_id=None,
        options_a={"role": "client"},
        options_b={"role": "server"},
    )
    a, b = pair.a, pair.b
    await handshake_all(a, b)
    assert a.peer_node_id == identity_b.node_id
    assert b.peer_node_id == identity_a.node_id


async def test_handshake_again_returns_at_once(connected_pair: Pair) -> None:
    await asyncio.wait_for(connected_pair.a.handshake(), STEP_TIMEOUT)
    await connected_pair.a.send(b"still works")
    assert await recv_within(connected_pair.b) == b"still works"


async def test_max_message_size_boundary(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    assert a.max_message_size == 1163
    largest = bytes(range(256)) * 4 + b"z" * (1163 - 1024)
    await a.send(largest)
    assert await recv_within(b) == largest
    with pytest.raises(MessageTooLarge, match="max_message_size") as info:
        await a.send(largest + b"!")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DTLSError)
    # The refused message changes nothing: the connection goes on.
    await a.send(b"after")
    assert await recv_within(b) == b"after"


async def test_mtu_sets_max_message_size(make_pair: PairFactory, family: socket.AddressFamily) -> None:
    pair = make_pair(family, mtu=500)
    assert pair.a.max_message_size == 463
    await handshake_all(pair.a, pair.b)
    await pair.a.send(b"m" * 463)
    assert await recv_within(pair.b) == b"m" * 463
    with pytest.raises(MessageTooLarge):
        await pair.a.send(b"m" * 464)


@pytest.mark.parametrize("cipher", sorted(ALLOWED_CIPHERS))
async def test_ciphers_choose_the_suite(
    make_pair: PairFactory, family: socket.AddressFamily, cipher: str
) -> None:
    pair = make_pair(family, ciphers=cipher)
    await handshake_all(pair.a, pair.b)
    assert pair.a.cipher == pair.b.cipher == cipher
    await pair.b.send(b"over " + cipher.encode())
    assert await recv_within(pair.a) == b"over " + cipher.encode()


async def test_close_is_idempotent_and_ends_the_connection(connected_pair: Pair) -> None:
    a = connected_pair.a
    await a.close()
    await a.close()
    a.close_nowait()
    assert not a.is_established
    with pytest.raises(ConnectionClosed):
        await a.send(b"too late")
    with pytest.raises(ConnectionClosed):
        await a.recv()


async def test_peer_close_delivers_buffered_messages_then_raises(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    for i in range(5):
        await a.send(b"buffered %d" % i)
    await a.close()
    # Everything sent before close_notify arrives first, and only then ConnectionClosed.
    assert [await recv_within(b) for _ in range(5)] == [b"buffered %d" % i for i in range(5)]
    with pytest.raises(ConnectionClosed):
        await recv_within(b)
    with pytest.raises(ConnectionClosed):
        await recv_within(b)
    assert not b.is_established
    with pytest.raises(ConnectionClosed):
        await b.send(b"to a closed peer")


@pytest.mark.parametrize("closer", ["peer", "local"])
async def test_close_wakes_a_pending_recv(connected_pair: Pair, closer: str) -> None:
    pending = asyncio.ensure_future(connected_pair.b.recv())
    await asyncio.sleep(0)  # let recv() start waiting
    assert not pending.done()
    await (connected_pair.a if closer == "peer" else connected_pair.b).close()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(pending, STEP_TIMEOUT)


async def test_async_with_handshakes_on_enter_and_closes_on_exit(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pair = make_pair(family)

    async def side_a() -> bytes:
        async with pair.a as conn:
            assert conn is pair.a
            assert conn.is_established
            await conn.send(b"ping")
            reply = await conn.recv()
        assert not pair.a.is_established
        return reply

    async def side_b() -> bytes:
        async with pair.b as conn:
            assert conn.is_established
            request = await conn.recv()
            await conn.send(b"pong")
            # a leaves its block after the reply: its close_notify ends this connection.
            with pytest.raises(ConnectionClosed):
                await conn.recv()
        return request

    reply, request = await asyncio.wait_for(asyncio.gather(side_a(), side_b()), STEP_TIMEOUT)
    assert (reply, request) == (b"pong", b"ping")
    with pytest.raises(ConnectionClosed):
        await pair.b.send(b"after exit")


async def test_async_for_yields_every_message_until_closed(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    sent = [b"item %d" % i for i in range(10)]

    async def consume() -> list[bytes]:
        return [message async for message in b]

    consumer = asyncio.ensure_future(consume())
    for message in sent:
        await a.send(message)
    await a.close()
    assert await asyncio.wait_for(consumer, STEP_TIMEOUT) == sent


async def test_socket_given_as_file_descriptor(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
) -> None:
    sa, sb = udp_pair(family)
    a = connection(sa.fileno(), address(sb), identity_a, expected_node_id=identity_b.node_id)
    b = connection(sb.fileno(), address(sa), identity_b, expected_node_id=identity_a.node_id)
    assert a.local_address == address(sa)
    await handshake_all(a, b)
    await a.send(b"over a descriptor")
    assert await recv_within(b) == b"over a descriptor"


async def test_socket_given_as_datagram_transport_is_taken_over(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
) -> None:
    sa, sb = udp_pair(family)
    a_address = address(sa)
    received_by_transport: list[bytes] = []

    class Recorder(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            received_by_transport.append(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Recorder, sock=sa)
    try:
        a = connection(transport, address(sb), identity_a, expected_node_id=identity_b.node_id)
        assert transport.is_closing()
        assert a.local_address == a_address
        b = connection(sb, a_address, identity_b, expected_node_id=identity_a.node_id)
        await handshake_all(a, b)
        await b.send(b"to the former transport")
        assert await recv_within(a) == b"to the former transport"
        await a.send(b"from the former transport")
        assert await recv_within(b) == b"from the former transport"
        assert received_by_transport == []
    finally:
        transport.close()


async def test_stats_count_traffic(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    before_a, before_b = a.stats(), b.stats()
    for stats in (before_a, before_b):
        assert isinstance(stats["handshake_duration"], float)
        assert 0 < stats["handshake_duration"] < STEP_TIMEOUT
        assert stats["datagrams_in"] >= 1 and stats["datagrams_out"] >= 1
        assert stats["bytes_in"] > 0 and stats["bytes_out"] > 0
        assert stats["messages_in"] == stats["messages_out"] == 0
        assert set(stats["dropped"]) == DROPPED_KEYS
        assert all(count == 0 for count in stats["dropped"].values())
    for i in range(3):
        await a.send(b"counted %d" % i)
    for _ in range(3):
        await recv_within(b)
    await b.send(b"counted back")
    await recv_within(a)
    after_a, after_b = a.stats(), b.stats()
    assert after_a["messages_out"] == 3 and after_a["messages_in"] == 1
    assert after_b["messages_in"] == 3 and after_b["messages_out"] == 1
    assert after_a["datagrams_out"] >= before_a["datagrams_out"] + 3
    assert after_b["datagrams_in"] >= before_b["datagrams_in"] + 3
    assert after_a["bytes_out"] > before_a["bytes_out"] + len(b"counted 0") * 3
    assert after_a["handshake_duration"] == before_a["handshake_duration"]


async def test_stray_datagrams_are_dropped_and_counted(
    connected_pair: Pair, udp_socket: UdpSocketFactory, family: socket.AddressFamily
) -> None:
    pair = connected_pair
    a_address = address(pair.sock_a)
    stranger = udp_socket(family)
    stranger.sendto(b"\x17\xfe\xfd" + b"\x00" * 40, a_address)  # DTLS-looking, wrong source
    # Not DTLS, from the peer's own address (the test's socket shares the peer's port).
    pair.sock_b.sendto(b"not a DTLS record", a_address)
    # A forged application-data record from the peer's address: fails authentication.
    pair.sock_b.sendto(b"\x17\xfe\xfd\x00\x01" + b"\x00" * 6 + b"\x00\x20" + b"\x00" * 32, a_address)
    # Sent after the strays on the same path, so it is read after them.
    await pair.b.send(b"genuine")
    assert await recv_within(pair.a) == b"genuine"
    dropped = pair.a.stats()["dropped"]
    assert dropped["wrong_source"] == 1
    assert dropped["not_dtls"] == 1
    assert dropped["invalid"] == 1
    assert pair.a.is_established


async def test_datagrams_from_the_peer_before_handshake_are_kept(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    # The longest retransmission timeout allowed: if the early ClientHello were lost, the client
    # would have to retransmit it.
    pair = make_pair(
        family,
        options_a={"role": "client", "initial_retransmit_timeout": 1.0},
        options_b={"role": "server"},
    )
    client, server = pair.a, pair.b
    client_task = asyncio.ensure_future(client.handshake())
    try:
        await wait_until(lambda: server.stats()["datagrams_in"] >= 1, "the ClientHello to reach the server")
        assert client.stats()["datagrams_out"] >= 1
        await asyncio.wait_for(asyncio.gather(server.handshake(), client_task), 4.0)
    finally:
        client_task.cancel()
    assert client.stats()["retransmissions"] == 0
    assert server.stats()["dropped"]["early"] == 0
    await client.send(b"after an early ClientHello")
    assert await recv_within(server) == b"after an early ClientHello"


@pytest.mark.parametrize("probes", [0, 64, 65, 130])
async def test_datagrams_queued_before_the_connection_exists_are_all_read(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
    probes: int,
) -> None:
    """Hole-punching probes wait on the socket before it is upgraded; the peer's ClientHello queued
    behind them must still be read, and every probe accounted for."""
    sa, sb = udp_pair(family)
    for i in range(probes):
        sa.sendto(b"punch %d" % i, address(sb))
    client = connection(
        sa,
        address(sb),
        identity_a,
        expected_node_id=identity_b.node_id,
        role="client",
        initial_retransmit_timeout=1.0,
    )
    client_task = asyncio.ensure_future(client.handshake())
    try:
        # Loopback delivers on send: once counted, the ClientHello waits behind the probes.
        await wait_until(lambda: client.stats()["datagrams_out"] >= 1, "the ClientHello to be sent")
        server = connection(sb, address(sa), identity_b, expected_node_id=identity_a.node_id, role="server")
        await asyncio.wait_for(asyncio.gather(server.handshake(), client_task), 4.0)
    finally:
        client_task.cancel()
    assert client.stats()["retransmissions"] == 0
    await client.send(b"after the probes")
    assert await recv_within(server) == b"after the probes"
    assert server.stats()["dropped"]["not_dtls"] == probes


async def test_messages_beyond_the_receive_queue_are_dropped_and_counted(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pair = make_pair(family, receive_queue_size=4)
    await handshake_all(pair.a, pair.b)
    for i in range(10):
        await pair.a.send(b"queued %d" % i)
    await wait_until(lambda: pair.b.stats()["messages_in"] == 10, "all ten messages to be decrypted")
    assert [await recv_within(pair.b) for _ in range(4)] == [b"queued %d" % i for i in range(4)]
    assert pair.b.stats()["dropped"]["queue_full"] == 6
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pair.b.recv(), 0.05)
    await pair.a.send(b"room again")
    assert await recv_within(pair.b) == b"room again"


async def test_close_releases_the_port(
    udp_socket: UdpSocketFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
) -> None:
    sock, peer = udp_socket(family), udp_socket(family)
    local = address(sock)
    conn = connection(sock, address(peer), identity_a, expected_node_id=identity_b.node_id)
    sock.close()  # only the connection's duplicate holds the port now
    await conn.close()

    def port_is_free() -> bool:
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.bind(local)
        except OSError:
            return False
        finally:
            probe.close()
        return True

    await wait_until(port_is_free, "the closed connection to release its port")


async def test_repr_shows_role_addresses_state_and_peer(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pair = make_pair(family)
    a = pair.a
    text = repr(a)
    assert text.startswith("<DTLSPeerConnection")
    assert a.role in text and "new" in text
    for sock in (pair.sock_a, pair.sock_b):
        host, port = address(sock)
        assert (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") in text
    await handshake_all(pair.a, pair.b)
    assert "established" in repr(a)
    assert pair.identity_b.node_id in repr(a)
    await a.close()
    assert "closed" in repr(a)


async def test_closing_the_application_socket_does_not_end_the_connection(
    udp_pair: UdpPairFactory, identity_a: Identity, identity_b: Identity, family: socket.AddressFamily
) -> None:
    """The connection owns a duplicate: closing the application's socket object does not end it."""
    sa, sb = udp_pair(family)
    a = DTLSPeerConnection(sa, address(sb), identity_a, expected_node_id=identity_b.node_id)
    b = DTLSPeerConnection(sb, address(sa), identity_b, expected_node_id=identity_a.node_id)
    try:
        sa.close()
        sb.close()
        await handshake_all(a, b)
        await a.send(b"on the duplicate")
        assert await recv_within(b) == b"on the duplicate"
    finally:
        await a.close()
        await b.close()


async def test_ready_recv_and_send_complete_without_suspending(connected_pair: Pair) -> None:
    """A queued message and a writable socket need no round trip through the I/O thread: the
    coroutine finishes on its first step, without yielding to the event loop."""
    a, b = connected_pair.a, connected_pair.b
    sending = a.send(b"ready")
    with pytest.raises(StopIteration):
        sending.send(None)
    await wait_until(lambda: b.stats()["messages_in"] >= 1, "the message to be queued")
    receiving = b.recv()
    with pytest.raises(StopIteration) as finished:
        receiving.send(None)
    assert finished.value.value == b"ready"
