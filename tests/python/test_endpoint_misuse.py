"""Every misuse of DTLSEndpoint raises its typed error, and leaves the endpoint usable."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import UdpSocketFactory, address
from dtls_peer import DTLSEndpoint, DTLSError, EndpointClosed, Identity
from test_endpoint import STEP, EndpointFactory, make_endpoint  # noqa: F401 (the endpoint fixture)


def test_allow_is_a_required_keyword(udp_socket: UdpSocketFactory, identity_a: Identity) -> None:
    with pytest.raises(TypeError, match="allow"):
        DTLSEndpoint(udp_socket(socket.AF_INET), identity_a)  # type: ignore[call-arg]


@pytest.mark.parametrize("allow", ["a-node-id", 42, {1, 2}, [b"bytes"], {"a": True}])
def test_allow_of_a_wrong_type_is_a_type_error(
    udp_socket: UdpSocketFactory, identity_a: Identity, allow: Any
) -> None:
    with pytest.raises(TypeError, match="allow"):
        DTLSEndpoint(udp_socket(socket.AF_INET), identity_a, allow=allow)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("mtu", 10, ValueError),
        ("mtu", "1200", TypeError),
        ("handshake_timeout", -1, ValueError),
        ("handshake_timeout", float("inf"), ValueError),
        ("initial_retransmit_timeout", "fast", TypeError),
        ("ciphers", "RC4-MD5", ValueError),
        ("ciphers", [], ValueError),
        ("receive_queue_size", 0, ValueError),
        ("keepalive_interval", 0, ValueError),
        ("idle_timeout", True, TypeError),
        ("max_pending_handshakes", 0, ValueError),
        ("max_connections", -5, ValueError),
        ("accept_backlog", 1.5, TypeError),
        ("datagram_queue_size", 0, ValueError),
        ("require_cookie", "yes", TypeError),
        ("allow_migration", 1, TypeError),
    ],
)
def test_every_option_is_checked(
    udp_socket: UdpSocketFactory, identity_a: Identity, option: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option if option != "ciphers" else "cipher"):
        DTLSEndpoint(udp_socket(socket.AF_INET), identity_a, allow=None, **{option: value})


def test_the_socket_and_identity_are_checked(udp_socket: UdpSocketFactory, identity_a: Identity) -> None:
    with pytest.raises(TypeError, match="identity"):
        DTLSEndpoint(udp_socket(socket.AF_INET), "me", allow=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sock"):
        DTLSEndpoint("not a socket", identity_a, allow=None)  # type: ignore[arg-type]
    unbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="bound"):
            DTLSEndpoint(unbound, identity_a, allow=None)
    finally:
        unbound.close()
    connected = udp_socket(socket.AF_INET)
    connected.connect(("127.0.0.1", 9))
    with pytest.raises(ValueError, match="connected"):
        DTLSEndpoint(connected, identity_a, allow=None)


@pytest.mark.parametrize(
    ("remote", "error", "match"),
    [
        (("localhost", 4000), ValueError, "IP address literal"),
        (("127.0.0.1", 0), ValueError, "port"),
        (("127.0.0.1", 70000), ValueError, "port"),
        (("::1", 4000), ValueError, "IPv6"),
        ("127.0.0.1:4000", TypeError, "tuple"),
    ],
)
async def test_connect_to_a_bad_address(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    identity_a: Identity,
    identity_b: Identity,
    remote: Any,
    error: type[Exception],
    match: str,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    with pytest.raises(error, match=match):
        await ep.connect(remote, expected_node_id=identity_b.node_id)
    assert ep.connections == 0


async def test_connect_arguments_are_checked(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory, identity_a: Identity, identity_b: Identity
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    peer = address(udp_socket(socket.AF_INET))
    with pytest.raises(ValueError, match="auto"):
        await ep.connect(peer, expected_node_id=None, role="auto")
    with pytest.raises(ValueError, match="role"):
        await ep.connect(peer, expected_node_id=None, role="peer")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected_node_id"):
        await ep.connect(peer, expected_node_id=b"id")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="node ID"):
        await ep.connect(peer, expected_node_id="not hex")
    with pytest.raises(TypeError, match="expected_node_id"):
        await ep.connect(peer)  # type: ignore[call-arg]
    assert ep.connections == 0


async def test_connect_to_an_address_in_use_and_beyond_max_connections(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory, identity_a: Identity, identity_b: Identity
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a, max_connections=1)
    silent = [address(udp_socket(socket.AF_INET)) for _ in range(2)]
    first = asyncio.ensure_future(ep.connect(silent[0], expected_node_id=identity_b.node_id))
    await asyncio.sleep(0.05)
    assert not first.done() and ep.connections == 1
    with pytest.raises(ValueError, match="already has a connection"):
        await ep.connect(silent[0], expected_node_id=identity_b.node_id)
    with pytest.raises(DTLSError, match="max_connections=1") as raised:
        await ep.connect(silent[1], expected_node_id=identity_b.node_id)
    assert not isinstance(raised.value, ValueError)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"", ValueError, "empty"),
        (b"x" * 65_508, ValueError, "65507"),
        (b"\x16\xfe\xfd" + bytes(20), ValueError, "DTLS range"),
        (b"\x14rest", ValueError, "DTLS range"),
        (b"?", ValueError, "DTLS range"),
        ("text", TypeError, "bytes-like"),
    ],
)
async def test_send_datagram_refuses_what_it_cannot_send(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    identity_a: Identity,
    data: Any,
    error: type[Exception],
    match: str,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    with pytest.raises(error, match=match):
        await ep.send_datagram(data, address(udp_socket(socket.AF_INET)))
    assert ep.stats()["app_datagrams_out"] == 0


async def test_send_datagram_to_a_bad_address(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory, identity_a: Identity
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    with pytest.raises(ValueError, match="IPv6"):
        await ep.send_datagram(b"PUNCH", ("::1", 4000))
    with pytest.raises(ValueError, match="IP address literal"):
        await ep.send_datagram(b"PUNCH", ("localhost", 4000))


async def test_every_call_after_close_raises_endpoint_closed(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory, identity_a: Identity, identity_b: Identity
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    peer = address(udp_socket(socket.AF_INET))
    ep.close_nowait()
    assert issubclass(EndpointClosed, DTLSError)
    with pytest.raises(EndpointClosed):
        await ep.accept()
    with pytest.raises(EndpointClosed):
        await ep.recv_datagram()
    with pytest.raises(EndpointClosed):
        await ep.send_datagram(b"PUNCH", peer)
    with pytest.raises(EndpointClosed):
        await asyncio.wait_for(ep.connect(peer, expected_node_id=identity_b.node_id), STEP)
    assert "closed" in repr(ep)


async def test_an_ipv6_only_socket_refuses_ipv4_addresses(
    endpoint: EndpointFactory, identity_a: Identity, identity_b: Identity
) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::1", 0))
        ep = endpoint(sock, identity_a)
    finally:
        sock.close()
    with pytest.raises(ValueError, match="IPv6-only"):
        await ep.connect(("127.0.0.1", 4000), expected_node_id=identity_b.node_id)
    with pytest.raises(ValueError, match="IPv6-only"):
        await ep.send_datagram(b"PUNCH", ("127.0.0.1", 4000))
    assert ep.connections == 0


async def test_a_dual_stack_socket_dials_ipv4_peers(
    endpoint: EndpointFactory, udp_socket: UdpSocketFactory, identity_a: Identity, identity_b: Identity
) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        ep = endpoint(sock, identity_a)
    finally:
        sock.close()
    plain = udp_socket(socket.AF_INET)
    await ep.send_datagram(b"PUNCH", address(plain))
    plain.settimeout(STEP)
    data, source = plain.recvfrom(100)
    assert data == b"PUNCH"
    plain.sendto(b"PUNCH back", source)
    # The IPv4 source is shown as IPv4, not in its mapped IPv6 form.
    assert await asyncio.wait_for(ep.recv_datagram(), STEP) == (b"PUNCH back", address(plain))
