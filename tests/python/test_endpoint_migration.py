"""NAT rebinding through a DTLSEndpoint: with ``allow_migration=True`` an established peer whose
mapping changes mid-session is followed to its new address; without it, the records from the
new address are dropped."""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import UdpSocketFactory
from dtls_peer import DTLSPeerConnection, Identity
from test_endpoint import STEP, EndpointFactory, make_endpoint  # noqa: F401 (the endpoint fixture)


class _Forward(asyncio.DatagramProtocol):
    def __init__(self, nat: Nat, inside: bool) -> None:
        self.nat, self.inside = nat, inside

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.nat.forward(self.inside, data, (str(addr[0]), int(str(addr[1]))))


class Nat:
    """A loopback NAT: the client talks to ``inside``; the endpoint sees the current outside
    port, which ``rebind()`` replaces (a NAT that lost its mapping and made a new one)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: tuple[str, int] | None = None
        self.inside: asyncio.DatagramTransport | None = None
        self.outside: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: _Forward(self, True), local_addr=("127.0.0.1", 0)
        )
        await self.rebind()

    async def rebind(self) -> None:
        old = self.outside
        self.outside, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Forward(self, False), local_addr=("127.0.0.1", 0)
        )
        if old is not None:
            old.close()

    def forward(self, inside: bool, data: bytes, source: tuple[str, int]) -> None:
        assert self.inside is not None and self.outside is not None
        if inside:
            self.client = source
            self.outside.sendto(data, self.server)
        elif source == self.server and self.client is not None:
            self.inside.sendto(data, self.client)

    @property
    def inside_address(self) -> tuple[str, int]:
        assert self.inside is not None
        return self.inside.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    @property
    def outside_address(self) -> tuple[str, int]:
        assert self.outside is not None
        return self.outside.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def close(self) -> None:
        for transport in (self.inside, self.outside):
            if transport is not None:
                transport.close()


@pytest.mark.parametrize("allow_migration", [True, False])
async def test_a_rebound_peer_is_followed_only_with_allow_migration(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    identity_a: Identity,
    identity_b: Identity,
    allow_migration: bool,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a, allow_migration=allow_migration)
    nat = Nat(ep.local_address)
    await nat.start()
    client = DTLSPeerConnection(
        udp_socket(socket.AF_INET),
        nat.inside_address,
        identity_b,
        expected_node_id=identity_a.node_id,
        role="client",
    )
    try:
        _, conn = await asyncio.wait_for(asyncio.gather(client.handshake(), ep.accept()), STEP)
        before = nat.outside_address
        assert conn.remote_address == before
        await client.send(b"before")
        assert await asyncio.wait_for(conn.recv(), STEP) == b"before"

        await nat.rebind()
        await client.send(b"after the rebinding")
        if allow_migration:
            assert await asyncio.wait_for(conn.recv(), STEP) == b"after the rebinding"
            assert conn.remote_address == nat.outside_address != before
            assert ep.stats()["migrations"] == 1
            await conn.send(b"reply to the new address")
            assert await asyncio.wait_for(client.recv(), STEP) == b"reply to the new address"
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.recv(), 0.5)
            assert conn.remote_address == before
            assert ep.stats()["migrations"] == 0
            assert ep.stats()["dropped"]["unknown_source"] >= 1
        conn.close_nowait()
    finally:
        client.close_nowait()
        nat.close()
