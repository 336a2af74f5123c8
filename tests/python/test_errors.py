"""Guards that every failure raises the documented exception, with a message naming what was expected."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    STEP_TIMEOUT,
    ConnectionFactory,
    Pair,
    PairFactory,
    UdpPairFactory,
    UdpSocketFactory,
    address,
    recv_within,
)
from dtls_peer import (
    ConnectionClosed,
    DTLSError,
    DTLSPeerConnection,
    HandshakeError,
    HandshakeTimeout,
    Identity,
    MessageTooLarge,
    PeerVerificationError,
)


def test_exception_hierarchy() -> None:
    assert issubclass(HandshakeError, DTLSError)
    assert issubclass(HandshakeTimeout, HandshakeError)
    assert issubclass(HandshakeTimeout, TimeoutError)
    assert issubclass(PeerVerificationError, HandshakeError)
    assert issubclass(ConnectionClosed, DTLSError)
    assert not issubclass(ConnectionClosed, HandshakeError)
    assert issubclass(MessageTooLarge, ValueError)
    assert issubclass(DTLSError, Exception)


@pytest.fixture
def valid_args(udp_pair: UdpPairFactory, identity_a: Identity, identity_b: Identity) -> dict[str, Any]:
    """Arguments that construct a connection; each test spoils one of them."""
    sock, peer = udp_pair(socket.AF_INET)
    return {
        "sock": sock,
        "remote_addr": address(peer),
        "identity": identity_a,
        "expected_node_id": identity_b.node_id,
    }


@pytest.fixture
def other_sockets() -> Iterator[list[socket.socket]]:
    """Odd sockets made by a test; closed afterwards."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


@pytest.mark.parametrize(
    ("name", "value", "keyword"),
    [
        ("sock", "127.0.0.1:4000", "sock must be"),
        ("sock", None, "sock must be"),
        ("sock", 3.5, "sock must be"),
        ("sock", True, "sock must be"),
        ("remote_addr", "127.0.0.1:4000", "remote_addr"),
        ("remote_addr", ["127.0.0.1", 4000], "remote_addr"),
        ("remote_addr", ("127.0.0.1", "4000"), "remote_addr"),
        ("remote_addr", (b"127.0.0.1", 4000), "remote_addr"),
        ("identity", "not an identity", "identity"),
        ("identity", None, "identity"),
        ("expected_node_id", 1234, "expected_node_id"),
        ("expected_node_id", b"ab" * 32, "expected_node_id"),
        ("role", None, "role"),
        ("role", 1, "role"),
        ("mtu", "1200", "mtu"),
        ("mtu", 1200.0, "mtu"),
        ("handshake_timeout", "10", "handshake_timeout"),
        ("handshake_timeout", None, "handshake_timeout"),
        ("initial_retransmit_timeout", "0.25", "initial_retransmit_timeout"),
        ("ciphers", {"ECDHE-ECDSA-AES128-GCM-SHA256"}, "ciphers"),
        ("receive_queue_size", 10.0, "receive_queue_size"),
    ],
)
def test_wrong_argument_types_raise_type_error(
    valid_args: dict[str, Any], name: str, value: object, keyword: str
) -> None:
    valid_args[name] = value
    with pytest.raises(TypeError, match=keyword):
        DTLSPeerConnection(**valid_args)


@pytest.mark.parametrize(
    ("options", "keyword"),
    [
        pytest.param({"remote_addr": ("localhost", 4000)}, "IP address", id="host-localhost"),
        pytest.param({"remote_addr": ("not-an-ip", 4000)}, "IP address", id="host-not-an-ip"),
        pytest.param({"remote_addr": ("", 4000)}, "IP address", id="host-empty"),
        pytest.param({"remote_addr": ("127.0.0.1", 0)}, "port", id="port-0"),
        pytest.param({"remote_addr": ("127.0.0.1", 65536)}, "port", id="port-65536"),
        pytest.param({"remote_addr": ("127.0.0.1", -1)}, "port", id="port-negative"),
        pytest.param({"mtu": 100}, "mtu", id="mtu-100"),
        pytest.param({"mtu": 70000}, "mtu", id="mtu-70000"),
        pytest.param({"mtu": -5}, "mtu", id="mtu-negative"),
        pytest.param({"handshake_timeout": -1.0}, "handshake_timeout", id="handshake_timeout-negative"),
        pytest.param({"handshake_timeout": 0}, "handshake_timeout", id="handshake_timeout-zero"),
        pytest.param({"handshake_timeout": float("nan")}, "handshake_timeout", id="handshake_timeout-nan"),
        pytest.param({"handshake_timeout": float("inf")}, "handshake_timeout", id="handshake_timeout-inf"),
        pytest.param({"handshake_timeout": 3601.0}, "handshake_timeout", id="handshake_timeout-over-an-hour"),
        pytest.param(
            {"initial_retransmit_timeout": -0.5}, "initial_retransmit_timeout", id="retransmit-negative"
        ),
        pytest.param(
            {"initial_retransmit_timeout": 0.001}, "initial_retransmit_timeout", id="retransmit-too-short"
        ),
        pytest.param(
            {"initial_retransmit_timeout": 5.0, "handshake_timeout": 1.0},
            "initial_retransmit_timeout",
            id="retransmit-over-handshake_timeout",
        ),
        pytest.param({"expected_node_id": "abc"}, "node ID", id="node-id-short"),
        pytest.param({"expected_node_id": "zz" * 32, "role": "client"}, "node ID", id="node-id-not-hex"),
        pytest.param({"expected_node_id": "ab" * 33, "role": "server"}, "node ID", id="node-id-long"),
        pytest.param({"ciphers": "ECDHE-RSA-AES128-GCM-SHA256"}, "ciphers", id="ciphers-rsa"),
        pytest.param({"ciphers": ""}, "ciphers", id="ciphers-empty"),
        pytest.param({"ciphers": "ALL"}, "ciphers", id="ciphers-ALL"),
        pytest.param({"role": "peer"}, "role", id="role-unknown"),
        pytest.param({"receive_queue_size": 0}, "receive_queue_size", id="queue-zero"),
        pytest.param({"receive_queue_size": 2**64}, "receive_queue_size", id="queue-huge"),
        pytest.param({"expected_node_id": None}, "expected_node_id", id="auto-role-without-pin"),
    ],
)
def test_bad_values_raise_value_error(
    valid_args: dict[str, Any], options: dict[str, Any], keyword: str
) -> None:
    valid_args.update(options)
    with pytest.raises(ValueError, match=keyword):
        DTLSPeerConnection(**valid_args)


def test_auto_role_with_own_node_id_is_refused(valid_args: dict[str, Any], identity_a: Identity) -> None:
    valid_args["expected_node_id"] = identity_a.node_id
    with pytest.raises(ValueError, match="own node ID"):
        DTLSPeerConnection(**valid_args)


def test_tcp_socket_is_refused(valid_args: dict[str, Any], other_sockets: list[socket.socket]) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other_sockets.append(tcp)
    tcp.bind(("127.0.0.1", 0))
    with pytest.raises(ValueError, match="UDP"):
        DTLSPeerConnection(**{**valid_args, "sock": tcp})
    with pytest.raises(ValueError, match="UDP"):
        DTLSPeerConnection(**{**valid_args, "sock": tcp.fileno()})


def test_unix_socket_is_refused(valid_args: dict[str, Any], other_sockets: list[socket.socket]) -> None:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    other_sockets.append(unix)
    with pytest.raises(ValueError, match="AF_INET"):
        DTLSPeerConnection(**{**valid_args, "sock": unix})


def test_closed_socket_is_refused(valid_args: dict[str, Any], udp_socket: UdpSocketFactory) -> None:
    closed = udp_socket(socket.AF_INET)
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        DTLSPeerConnection(**{**valid_args, "sock": closed})


@pytest.mark.parametrize("fd", [-1, 999_999])
def test_descriptor_that_is_not_open_is_refused(valid_args: dict[str, Any], fd: int) -> None:
    with pytest.raises(ValueError, match="not open"):
        DTLSPeerConnection(**{**valid_args, "sock": fd})


def test_descriptor_that_is_not_a_socket_is_refused(valid_args: dict[str, Any]) -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(ValueError, match="socket"):
            DTLSPeerConnection(**{**valid_args, "sock": read_end})
    finally:
        os.close(read_end)
        os.close(write_end)


def test_unbound_socket_is_refused(valid_args: dict[str, Any], other_sockets: list[socket.socket]) -> None:
    unbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other_sockets.append(unbound)
    with pytest.raises(ValueError, match="bound"):
        DTLSPeerConnection(**{**valid_args, "sock": unbound})


def test_ipv6_remote_on_ipv4_socket_is_refused(valid_args: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="IPv6"):
        DTLSPeerConnection(**{**valid_args, "remote_addr": ("::1", 4000)})


async def test_closed_datagram_transport_is_refused(
    valid_args: dict[str, Any], udp_socket: UdpSocketFactory
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, sock=udp_socket(socket.AF_INET)
    )
    transport.close()
    await asyncio.sleep(0)  # let the transport finish closing its socket
    with pytest.raises(ValueError, match="closed"):
        DTLSPeerConnection(**{**valid_args, "sock": transport})


@pytest.mark.parametrize(
    "options",
    [
        {"mtu": 100},
        {"ciphers": "ECDHE-RSA-AES128-GCM-SHA256"},
        {"expected_node_id": "zz" * 32, "role": "client"},
        {"initial_retransmit_timeout": 0.001},
    ],
)
def test_refused_construction_leaks_no_descriptor(
    valid_args: dict[str, Any], options: dict[str, Any]
) -> None:
    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    with pytest.raises(ValueError):
        DTLSPeerConnection(**{**valid_args, **options})
    before = open_descriptors()
    for _ in range(50):
        with pytest.raises(ValueError):
            DTLSPeerConnection(**{**valid_args, **options})
    # Other connections' descriptors may close meanwhile; a leak would add 50.
    assert open_descriptors() - before < 10
    valid_args["sock"].getsockname()  # the application's socket is untouched


@pytest.mark.parametrize(
    "options",
    [
        {"mtu": 256},
        {"mtu": 65507},
        {"handshake_timeout": 3600},
        {"handshake_timeout": 0.2, "initial_retransmit_timeout": 0.2},
        {"initial_retransmit_timeout": 0.05},
        {"initial_retransmit_timeout": 1.0},
        {"receive_queue_size": 1},
        {"ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384"},
    ],
)
async def test_values_inside_the_documented_ranges_are_accepted(
    valid_args: dict[str, Any], connection: ConnectionFactory, options: dict[str, Any]
) -> None:
    args = {**valid_args, **options}
    conn = connection(args.pop("sock"), args.pop("remote_addr"), args.pop("identity"), **args)
    assert not conn.is_established


def test_retransmit_timeout_beyond_the_handshake_timeout_is_refused_naming_the_value(
    valid_args: dict[str, Any],
) -> None:
    """A first retransmission after the handshake deadline could never happen: refused, naming it."""
    with pytest.raises(ValueError, match="initial_retransmit_timeout") as info:
        DTLSPeerConnection(**valid_args, handshake_timeout=2.0, initial_retransmit_timeout=2.5)
    assert "2.5" in str(info.value)


async def test_retransmit_timeout_above_the_default_cap_is_accepted(valid_args: dict[str, Any]) -> None:
    """The 1 s cap on doubling never undercuts a longer initial timeout the user asked for."""
    conn = DTLSPeerConnection(**valid_args, initial_retransmit_timeout=2.5)
    await conn.close()


@pytest.mark.parametrize("role", ["client", "server"])
async def test_silent_peer_raises_handshake_timeout(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
    role: str,
) -> None:
    sock, silent = udp_pair(family)  # `silent` is bound but never answers
    conn = connection(
        sock,
        address(silent),
        identity_a,
        expected_node_id=identity_b.node_id,
        role=role,
        handshake_timeout=0.5,
    )
    started = time.monotonic()
    with pytest.raises(HandshakeTimeout) as info:
        await asyncio.wait_for(conn.handshake(), 5.0)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, HandshakeError)
    assert 0.4 <= elapsed < 3.0
    assert not conn.is_established
    assert conn.peer_node_id is None
    with pytest.raises(DTLSError):
        await conn.send(b"never delivered")


async def test_async_with_closes_the_connection_when_the_handshake_fails(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
) -> None:
    sock, silent = udp_pair(family)
    conn = connection(
        sock,
        address(silent),
        identity_a,
        expected_node_id=identity_b.node_id,
        role="client",
        handshake_timeout=0.3,
    )
    entered = False
    with pytest.raises(HandshakeTimeout):
        async with conn:
            entered = True
    assert not entered
    with pytest.raises(ConnectionClosed):
        await conn.send(b"x")
    assert "closed" in repr(conn)


@pytest.mark.parametrize("wrong_side", ["client", "server"])
async def test_wrong_pin_fails_both_sides(
    make_pair: PairFactory,
    identity_b: Identity,
    identity_c: Identity,
    family: socket.AddressFamily,
    wrong_side: str,
) -> None:
    """The side pinning a node ID the peer does not have refuses it; the peer learns of it promptly."""
    right_side = "server" if wrong_side == "client" else "client"
    pair = make_pair(
        family,
        options_a={"expected_node_id": identity_c.node_id, "role": wrong_side},
        options_b={"role": right_side},
    )
    pinning, other = pair.a, pair.b
    results = await asyncio.wait_for(
        asyncio.gather(pinning.handshake(), other.handshake(), return_exceptions=True), STEP_TIMEOUT
    )
    pinning_error, other_error = results
    assert isinstance(pinning_error, PeerVerificationError)
    assert pinning_error.expected_node_id == identity_c.node_id
    assert pinning_error.actual_node_id == identity_b.node_id
    assert identity_c.node_id in str(pinning_error) and identity_b.node_id in str(pinning_error)
    assert isinstance(other_error, HandshakeError)
    assert not isinstance(other_error, (PeerVerificationError, HandshakeTimeout))
    for conn in (pinning, other):
        assert not conn.is_established
        assert conn.peer_node_id is None
        with pytest.raises(DTLSError):
            await conn.send(b"must not be sent")


@pytest.mark.parametrize("operation", ["send", "recv"])
async def test_send_and_recv_before_handshake_raise_dtls_error(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
    operation: str,
) -> None:
    sa, sb = udp_pair(family)
    conn = connection(sa, address(sb), identity_a, expected_node_id=identity_b.node_id)

    async def attempt() -> None:
        if operation == "send":
            await conn.send(b"too early")
        else:
            await conn.recv()

    with pytest.raises(DTLSError, match="handshake") as info:
        await asyncio.wait_for(attempt(), STEP_TIMEOUT)
    assert not isinstance(info.value, ConnectionClosed)
    # Also while the handshake is under way (the peer never answers).
    handshaking = asyncio.ensure_future(conn.handshake())
    try:
        await asyncio.sleep(0)
        with pytest.raises(DTLSError, match="handshake"):
            await asyncio.wait_for(attempt(), STEP_TIMEOUT)
    finally:
        handshaking.cancel()


@pytest.mark.parametrize("operation", ["send", "recv", "handshake"])
async def test_operations_after_close_raise_connection_closed(connected_pair: Pair, operation: str) -> None:
    a = connected_pair.a
    await a.close()
    with pytest.raises(ConnectionClosed) as info:
        if operation == "send":
            await a.send(b"after close")
        elif operation == "recv":
            await a.recv()
        else:
            await a.handshake()
    assert isinstance(info.value, DTLSError)


async def test_close_before_handshake_ends_the_connection(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    family: socket.AddressFamily,
) -> None:
    sa, sb = udp_pair(family)
    conn = connection(sa, address(sb), identity_a, expected_node_id=identity_b.node_id)
    await conn.close()
    await conn.close()
    with pytest.raises(ConnectionClosed):
        await conn.handshake()
    with pytest.raises(ConnectionClosed):
        await conn.send(b"x")
    with pytest.raises(ConnectionClosed):
        await conn.recv()


async def test_send_rejects_empty_and_non_bytes(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    for empty in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(ValueError, match="empty"):
            await a.send(empty)
    bad: Any = "text is not bytes"
    with pytest.raises(TypeError, match="bytes"):
        await a.send(bad)
    # Refused messages leave the connection working.
    await a.send(b"fine")
    assert await recv_within(b) == b"fine"


# -- misuse beyond the constructor: other loops, other addresses, concurrency, failed states --


def test_remote_port_given_as_bool_is_refused(valid_args: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="remote_addr"):
        DTLSPeerConnection(**{**valid_args, "remote_addr": ("127.0.0.1", True)})


async def test_ipv4_peer_through_a_dual_stack_ipv6_socket_works(
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    other_sockets: list[socket.socket],
) -> None:
    # An IPv4 remote on an IPv6 socket is reached through its v4-mapped address.
    sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other_sockets.extend((sock6, sock4))
    sock6.bind(("::", 0))
    sock4.bind(("127.0.0.1", 0))
    a = connection(sock6, address(sock4), identity_a, expected_node_id=identity_b.node_id)
    b = connection(sock4, ("127.0.0.1", address(sock6)[1]), identity_b, expected_node_id=identity_a.node_id)
    await asyncio.wait_for(asyncio.gather(a.handshake(), b.handshake()), STEP_TIMEOUT)
    await a.send(b"over the mapped address")
    assert await recv_within(b) == b"over the mapped address"


def test_socket_connected_elsewhere_is_refused(
    valid_args: dict[str, Any], udp_socket: UdpSocketFactory
) -> None:
    # A connected socket only ever talks to its connected address: a different remote_addr
    # could never be reached, so it is refused up front rather than timing out.
    other = udp_socket(socket.AF_INET)
    sock = valid_args["sock"]
    sock.connect(address(other))
    with pytest.raises(ValueError, match="connected"):
        DTLSPeerConnection(**valid_args)


async def test_a_connection_used_from_a_second_event_loop_is_refused(connected_pair: Pair) -> None:
    a = connected_pair.a

    def other_loop() -> None:
        async def use() -> None:
            # Nothing is queued, so recv() must wait: on a loop the connection is not bound to.
            await a.recv()

        asyncio.run(use())

    with pytest.raises(RuntimeError, match="event loop"):
        await asyncio.to_thread(other_loop)
    # The connection still works on its own loop.
    await a.send(b"from the right loop")
    assert await recv_within(connected_pair.b) == b"from the right loop"


async def test_failed_handshake_gives_the_same_error_on_every_later_call(
    make_pair: PairFactory, identity_c: Identity
) -> None:
    pair = make_pair(
        socket.AF_INET,
        options_a={"expected_node_id": identity_c.node_id, "role": "client"},
        options_b={"role": "server"},
    )
    first, _ = await asyncio.wait_for(
        asyncio.gather(pair.a.handshake(), pair.b.handshake(), return_exceptions=True), STEP_TIMEOUT
    )
    assert isinstance(first, PeerVerificationError), first
    for attempt in ("handshake", "send", "recv"):
        with pytest.raises(PeerVerificationError) as later:
            if attempt == "handshake":
                await pair.a.handshake()
            elif attempt == "send":
                await pair.a.send(b"x")
            else:
                await pair.a.recv()
        assert str(later.value) == str(first), attempt


async def test_send_after_the_peer_closed_says_so(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    await b.close()
    with pytest.raises(ConnectionClosed, match="peer closed"):
        await asyncio.wait_for(a.recv(), STEP_TIMEOUT)
    with pytest.raises(ConnectionClosed, match="peer closed"):
        await a.send(b"too late")


async def test_concurrent_handshake_calls_all_complete(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET)
    await asyncio.wait_for(
        asyncio.gather(*(pair.a.handshake() for _ in range(5)), *(pair.b.handshake() for _ in range(5))),
        STEP_TIMEOUT,
    )
    assert pair.a.is_established and pair.b.is_established


async def test_close_wakes_every_pending_call(connected_pair: Pair, udp_pair: UdpPairFactory) -> None:
    a = connected_pair.a
    receivers = [asyncio.ensure_future(a.recv()) for _ in range(5)]
    await asyncio.sleep(0.01)
    closers = [asyncio.ensure_future(a.close()) for _ in range(3)]
    results = await asyncio.wait_for(
        asyncio.gather(*receivers, *closers, return_exceptions=True), STEP_TIMEOUT
    )
    assert all(isinstance(r, ConnectionClosed) for r in results[:5]), results
    assert results[5:] == [None, None, None]


async def test_concurrent_sends_and_recvs_while_the_peer_closes(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b

    async def keep_sending() -> int:
        sent = 0
        with pytest.raises(ConnectionClosed):
            for i in range(100_000):
                await a.send(b"%d" % i)
                sent += 1
                await asyncio.sleep(0)
        return sent

    async def keep_receiving() -> int:
        got = 0
        with pytest.raises(ConnectionClosed):
            for _ in range(100_000):
                await a.recv()
                got += 1
        return got

    tasks = [asyncio.ensure_future(keep_sending()) for _ in range(3)]
    tasks += [asyncio.ensure_future(keep_receiving()) for _ in range(3)]
    await asyncio.sleep(0.05)
    await b.close()
    await asyncio.wait_for(asyncio.gather(*tasks), STEP_TIMEOUT)
    assert not a.is_established


async def test_properties_and_stats_after_close_do_not_raise(connected_pair: Pair) -> None:
    a = connected_pair.a
    peer = a.peer_node_id
    await a.close()
    assert a.peer_node_id == peer
    assert a.role in ("client", "server")
    assert a.local_address[1] > 0 and a.remote_address[1] > 0
    assert a.max_message_size > 0
    assert not a.is_established
    stats = a.stats()
    assert stats["messages_in"] >= 0 and "dropped" in stats
    assert "closed" in repr(a)
    a.close_nowait()
