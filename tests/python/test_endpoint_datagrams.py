"""The application's own datagrams on a DTLSEndpoint's socket: both ways, beside DTLS from the
same address, and the bounded queue."""

from __future__ import annotations

import asyncio
import socket

from conftest import UdpSocketFactory, address, wait_until
from dtls_peer import Identity
from dtls_peer._plain_udp import recv_from, send_to
from test_endpoint import STEP, EndpointFactory, make_endpoint  # noqa: F401 (the endpoint fixture)


async def test_plain_datagrams_flow_both_ways_with_a_plain_socket(
    family: socket.AddressFamily,
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    identity_a: Identity,
) -> None:
    ep = endpoint(udp_socket(family), identity_a)
    plain = udp_socket(family)
    plain.setblocking(False)
    await send_to(plain, b"PUNCH 1", ep.local_address)
    data, source = await asyncio.wait_for(ep.recv_datagram(), STEP)
    assert (data, source) == (b"PUNCH 1", address(plain))
    await ep.send_datagram(b"PUNCH back", address(plain))
    reply, source = await asyncio.wait_for(recv_from(plain, 100), STEP)
    assert reply == b"PUNCH back"
    assert source[:2] == ep.local_address
    # STUN-shaped (first byte 0..3) and other non-DTLS bytes are the application's too.
    await ep.send_datagram(bytearray(b"\x00\x01stun-ish"), address(plain))
    assert (await asyncio.wait_for(recv_from(plain, 100), STEP))[0] == b"\x00\x01stun-ish"
    stats = ep.stats()
    assert stats["app_datagrams_in"] == 1
    assert stats["app_datagrams_out"] == 2


async def test_plain_datagrams_share_an_address_with_a_dtls_connection(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory
) -> None:
    ident_x, ident_y = Identity.generate(), Identity.generate()
    x = endpoint(udp_socket(socket.AF_INET), ident_x)
    y = endpoint(udp_socket(socket.AF_INET), ident_y)
    dialled, accepted = await asyncio.wait_for(
        asyncio.gather(x.connect(y.local_address, expected_node_id=ident_y.node_id), y.accept()), STEP
    )
    try:
        await x.send_datagram(b"PUNCH from x", y.local_address)
        assert await asyncio.wait_for(y.recv_datagram(), STEP) == (b"PUNCH from x", x.local_address)
        await y.send_datagram(b"\x7fPONG from y", x.local_address)
        assert await asyncio.wait_for(x.recv_datagram(), STEP) == (b"\x7fPONG from y", y.local_address)
        # The DTLS connection between the same two addresses is untouched.
        await dialled.send(b"secret")
        assert await asyncio.wait_for(accepted.recv(), STEP) == b"secret"
        await accepted.send(b"secret back")
        assert await asyncio.wait_for(dialled.recv(), STEP) == b"secret back"
        assert dialled.stats()["dropped"]["not_dtls"] == 0
    finally:
        dialled.close_nowait()
        accepted.close_nowait()


async def test_a_full_datagram_queue_drops_and_counts_the_rest(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory, identity_a: Identity
) -> None:
    queue = 4
    sent = 20
    ep = endpoint(udp_socket(socket.AF_INET), identity_a, datagram_queue_size=queue)
    plain = udp_socket(socket.AF_INET)
    for i in range(sent):
        plain.sendto(b"probe %d" % i, ep.local_address)

    def counted() -> int:
        stats = ep.stats()
        return int(stats["app_datagrams_in"]) + int(stats["dropped"]["datagram_queue_full"])

    await wait_until(lambda: counted() == sent, "every probe to be queued or counted as dropped")
    stats = ep.stats()
    assert stats["app_datagrams_in"] == queue
    assert stats["dropped"]["datagram_queue_full"] == sent - queue
    # The oldest are kept, in order.
    for i in range(queue):
        assert (await asyncio.wait_for(ep.recv_datagram(), STEP))[0] == b"probe %d" % i
    # The queue has room again.
    plain.sendto(b"after", ep.local_address)
    assert (await asyncio.wait_for(ep.recv_datagram(), STEP))[0] == b"after"


async def test_recv_datagram_can_be_cancelled_and_called_again(
    udp_socket: UdpSocketFactory, endpoint: EndpointFactory, identity_a: Identity
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    with_timeout = asyncio.wait_for(ep.recv_datagram(), 0.05)
    try:
        await with_timeout
        raise AssertionError("nothing was sent")
    except asyncio.TimeoutError:
        pass
    plain = udp_socket(socket.AF_INET)
    plain.sendto(b"late", ep.local_address)
    assert (await asyncio.wait_for(ep.recv_datagram(), STEP))[0] == b"late"
