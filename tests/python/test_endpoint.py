"""DTLSEndpoint over real loopback sockets: many peers on one socket, dialling and accepting on
the same socket, endpoint to endpoint, closing, and the stats schema."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import pytest
from conftest import UdpSocketFactory, address, wait_until
from dtls_peer import (
    ConnectionClosed,
    DTLSEndpoint,
    DTLSPeerConnection,
    EndpointClosed,
    HandshakeError,
    HandshakeTimeout,
    Identity,
    PeerVerificationError,
)

# Generous: a hundred handshakes on a shared two-core machine.
MANY_TIMEOUT = 60.0
STEP = 10.0


class EndpointFactory(Protocol):
    def __call__(self, sock: socket.socket, identity: Identity, **options: Any) -> DTLSEndpoint: ...


@pytest.fixture(name="endpoint")
def make_endpoint() -> Iterator[EndpointFactory]:
    """Creates DTLSEndpoints (allow=None unless given) and closes every one after the test."""
    created: list[DTLSEndpoint] = []

    def make(sock: socket.socket, identity: Identity, **options: Any) -> DTLSEndpoint:
        ep = DTLSEndpoint(sock, identity, **{"allow": None, **options})
        created.append(ep)
        return ep

    yield make
    for ep in created:
        ep.close_nowait()


@pytest.fixture
async def closing() -> AsyncIterator[list[DTLSPeerConnection]]:
    """Connections to close after the test."""
    conns: list[DTLSPeerConnection] = []
    yield conns
    for conn in conns:
        conn.close_nowait()


async def dial_endpoint(
    ep: DTLSEndpoint,
    sock: socket.socket,
    identity: Identity,
    endpoint_identity: Identity,
    closing: list[DTLSPeerConnection],
) -> DTLSPeerConnection:
    """A standalone client on ``sock`` that handshakes with ``ep``."""
    conn = DTLSPeerConnection(
        sock, ep.local_address, identity, expected_node_id=endpoint_identity.node_id, role="client"
    )
    closing.append(conn)
    await asyncio.wait_for(conn.handshake(), STEP)
    return conn


async def dial_and_accept(
    ep: DTLSEndpoint,
    sock: socket.socket,
    identity: Identity,
    endpoint_identity: Identity,
    closing: list[DTLSPeerConnection],
) -> tuple[DTLSPeerConnection, DTLSPeerConnection]:
    """A standalone client on ``sock`` dials ``ep``; returns it and the endpoint's side of it."""
    client, conn = await asyncio.gather(
        dial_endpoint(ep, sock, identity, endpoint_identity, closing), ep.accept()
    )
    return client, conn


async def test_one_endpoint_accepts_a_hundred_peers_and_carries_their_messages_both_ways(
    family: socket.AddressFamily,
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    peers = 100
    ep = endpoint(udp_socket(family), identity_a, allow={identity_b.node_id})
    clients = [
        DTLSPeerConnection(
            udp_socket(family),
            ep.local_address,
            identity_b,
            expected_node_id=identity_a.node_id,
            role="client",
        )
        for _ in range(peers)
    ]
    closing.extend(clients)

    async def accept_all() -> list[DTLSPeerConnection]:
        accepted = []
        for _ in range(peers):
            conn = await ep.accept()
            closing.append(conn)
            accepted.append(conn)
        return accepted

    accepted, _ = await asyncio.wait_for(
        asyncio.gather(accept_all(), asyncio.gather(*(c.handshake() for c in clients))), MANY_TIMEOUT
    )
    assert ep.connections == peers
    by_address = {conn.remote_address: conn for conn in accepted}
    assert set(by_address) == {c.local_address for c in clients}
    assert all(conn.peer_node_id == identity_b.node_id for conn in accepted)

    # Each client's message reaches the endpoint's connection for that client, and back.
    for i, client in enumerate(clients):
        await client.send(b"to endpoint %d" % i)
    for i, client in enumerate(clients):
        server_side = by_address[client.local_address]
        assert await asyncio.wait_for(server_side.recv(), STEP) == b"to endpoint %d" % i
        await server_side.send(b"to client %d" % i)
    for i, client in enumerate(clients):
        assert await asyncio.wait_for(client.recv(), STEP) == b"to client %d" % i
    stats = ep.stats()
    assert stats["handshakes_accepted"] == peers
    assert stats["connections"] == peers


async def test_an_endpoint_dials_several_servers_from_one_socket(
    family: socket.AddressFamily,
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
) -> None:
    ep = endpoint(udp_socket(family), identity_a)
    server_ids = [identity_b, identity_c] * 3
    servers = [
        DTLSPeerConnection(
            udp_socket(family), ep.local_address, ident, expected_node_id=identity_a.node_id, role="server"
        )
        for ident in server_ids
    ]
    closing.extend(servers)
    conns, _ = await asyncio.wait_for(
        asyncio.gather(
            asyncio.gather(
                *(
                    ep.connect(s.local_address, expected_node_id=i.node_id)
                    for s, i in zip(servers, server_ids)
                )
            ),
            asyncio.gather(*(s.handshake() for s in servers)),
        ),
        MANY_TIMEOUT,
    )
    closing.extend(conns)
    for i, (conn, server, ident) in enumerate(zip(conns, servers, server_ids)):
        assert conn.peer_node_id == ident.node_id
        assert conn.role == "client"
        assert conn.local_address == ep.local_address
        await conn.send(b"hello %d" % i)
        assert await asyncio.wait_for(server.recv(), STEP) == b"hello %d" % i
        await server.send(b"reply %d" % i)
        assert await asyncio.wait_for(conn.recv(), STEP) == b"reply %d" % i
    assert ep.stats()["handshakes_started"] == 0, "dialled connections are not incoming handshakes"


async def test_endpoints_dial_and_accept_each_other_on_the_same_sockets(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
) -> None:
    # Three endpoints in a ring: each dials the next and accepts the previous on one socket.
    idents = [Identity.generate() for _ in range(3)]
    eps = [endpoint(udp_socket(socket.AF_INET), ident) for ident in idents]
    dials = [
        eps[i].connect(eps[(i + 1) % 3].local_address, expected_node_id=idents[(i + 1) % 3].node_id)
        for i in range(3)
    ]
    results = await asyncio.wait_for(asyncio.gather(*dials, *(ep.accept() for ep in eps)), STEP * 2)
    dialled, accepted = list(results[:3]), list(results[3:])
    closing.extend(dialled + accepted)
    for i in range(3):
        nxt, prev = (i + 1) % 3, (i - 1) % 3
        assert dialled[i].peer_node_id == idents[nxt].node_id
        assert accepted[i].peer_node_id == idents[prev].node_id
        assert accepted[i].remote_address == eps[prev].local_address
    for i in range(3):
        await dialled[i].send_many([b"ring %d" % i, b"again %d" % i])
    for i in range(3):
        prev = (i - 1) % 3
        assert await asyncio.wait_for(accepted[i].recv_many(), STEP) in (
            [b"ring %d" % prev, b"again %d" % prev],
            [b"ring %d" % prev],
        )
        await accepted[i].send(b"back %d" % i)
        assert await asyncio.wait_for(dialled[prev].recv(), STEP) == b"back %d" % i
    assert all(ep.connections == 2 for ep in eps)


async def test_connect_as_server_waits_for_that_peers_client_hello(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    sock = udp_socket(socket.AF_INET)
    client = DTLSPeerConnection(
        sock, ep.local_address, identity_b, expected_node_id=identity_a.node_id, role="client"
    )
    closing.append(client)
    conn, _ = await asyncio.wait_for(
        asyncio.gather(
            ep.connect(address(sock), expected_node_id=identity_b.node_id, role="server"), client.handshake()
        ),
        STEP,
    )
    closing.append(conn)
    assert conn.role == "server"
    await client.send(b"ping")
    assert await asyncio.wait_for(conn.recv(), STEP) == b"ping"
    assert ep.stats()["handshakes_started"] == 0


async def test_a_failed_dial_raises_like_a_handshake_and_frees_the_address(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a, handshake_timeout=1.0)
    silent = udp_socket(socket.AF_INET)
    with pytest.raises(HandshakeTimeout):
        await asyncio.wait_for(ep.connect(address(silent), expected_node_id=identity_b.node_id), STEP)
    server_sock = udp_socket(socket.AF_INET)
    server = DTLSPeerConnection(
        server_sock, ep.local_address, identity_b, expected_node_id=None, role="server"
    )
    closing.append(server)
    server_task = asyncio.ensure_future(server.handshake())
    with pytest.raises(PeerVerificationError):
        await asyncio.wait_for(ep.connect(address(server_sock), expected_node_id=identity_c.node_id), STEP)
    server_task.cancel()
    await asyncio.gather(server_task, return_exceptions=True)
    await wait_until(lambda: ep.connections == 0, "the failed dials to leave the table")
    # The address is free again: a new dial to the silent socket is not refused as in use.
    with pytest.raises(HandshakeTimeout):
        await asyncio.wait_for(ep.connect(address(silent), expected_node_id=identity_b.node_id), STEP)


async def test_closing_one_accepted_connection_leaves_the_others_working(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    clients = []
    accepted = []
    for _ in range(3):
        client, conn = await dial_and_accept(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing)
        clients.append(client)
        accepted.append(conn)
    closing.extend(accepted)
    await accepted[1].close()
    assert accepted[1].state == "closed"
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(clients[1].recv(), STEP)
    await wait_until(lambda: ep.connections == 2, "the closed connection to leave the table")
    for i in (0, 2):
        await clients[i].send(b"still here %d" % i)
        assert await asyncio.wait_for(accepted[i].recv(), STEP) == b"still here %d" % i
        await accepted[i].send(b"yes %d" % i)
        assert await asyncio.wait_for(clients[i].recv(), STEP) == b"yes %d" % i


async def test_dropping_an_accepted_connection_releases_its_slot(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    client, conn = await dial_and_accept(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing)
    assert ep.connections == 1
    del conn
    gc.collect()
    await wait_until(lambda: ep.connections == 0, "the dropped connection's slot to be released")
    # Released means closed: the peer hears close_notify.
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(client.recv(), STEP)


async def test_closing_an_endpoint_ends_its_peers_and_every_pending_call(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    clients, accepted = [], []
    for _ in range(3):
        client, conn = await dial_and_accept(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing)
        clients.append(client)
        accepted.append(conn)
    closing.extend(accepted)
    silent = udp_socket(socket.AF_INET)
    pending_accept = asyncio.ensure_future(ep.accept())
    pending_datagram = asyncio.ensure_future(ep.recv_datagram())
    pending_connect = asyncio.ensure_future(ep.connect(address(silent), expected_node_id=identity_b.node_id))
    await asyncio.sleep(0.05)
    assert not (pending_accept.done() or pending_datagram.done() or pending_connect.done())

    await ep.close()

    for task in (pending_accept, pending_datagram, pending_connect):
        with pytest.raises(EndpointClosed):
            await asyncio.wait_for(task, STEP)
    for client in clients:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), STEP)
    for conn in accepted:
        with pytest.raises(ConnectionClosed):
            await conn.recv()
    with pytest.raises(EndpointClosed):
        await ep.accept()
    with pytest.raises(EndpointClosed):
        await ep.connect(address(silent), expected_node_id=None)
    with pytest.raises(EndpointClosed):
        await ep.send_datagram(b"PUNCH", address(silent))
    async for _ in ep:
        pytest.fail("async for over a closed endpoint yields nothing")
    await ep.close()  # idempotent


async def test_async_for_yields_peers_until_the_endpoint_closes(
    udp_socket: UdpSocketFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    seen: list[str | None] = []
    async with DTLSEndpoint(udp_socket(socket.AF_INET), identity_a, allow=None) as ep:

        async def serve() -> None:
            async for conn in ep:
                closing.append(conn)
                seen.append(conn.peer_node_id)

        server = asyncio.ensure_future(serve())
        for _ in range(2):
            await dial_endpoint(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing)
        await wait_until(lambda: len(seen) == 2, "both peers to be accepted")
    await asyncio.wait_for(server, STEP)
    assert seen == [identity_b.node_id] * 2


@pytest.mark.parametrize("policy", ["set", "callable"])
async def test_a_peer_outside_the_allow_policy_is_refused_inside_the_handshake(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
    policy: str,
) -> None:
    asked: list[str] = []

    def allow_c(node_id: str) -> bool:
        asked.append(node_id)
        return node_id == identity_c.node_id

    allow: Any = [identity_c.node_id.upper()] if policy == "set" else allow_c
    ep = endpoint(udp_socket(socket.AF_INET), identity_a, allow=allow)
    accepting = asyncio.ensure_future(ep.accept())
    refused = DTLSPeerConnection(
        udp_socket(socket.AF_INET),
        ep.local_address,
        identity_b,
        expected_node_id=identity_a.node_id,
        role="client",
    )
    closing.append(refused)
    with pytest.raises(HandshakeError, match="unknown_ca") as refusal:
        await asyncio.wait_for(refused.handshake(), STEP)
    assert not isinstance(refusal.value, HandshakeTimeout)
    assert refused.state == "failed"
    await wait_until(lambda: ep.stats()["handshakes_refused"] == 1, "the refusal to be counted")
    assert not accepting.done()
    assert ep.stats()["handshakes_accepted"] == 0
    await dial_endpoint(ep, udp_socket(socket.AF_INET), identity_c, identity_a, closing)
    conn = await asyncio.wait_for(accepting, STEP)
    closing.append(conn)
    assert conn.peer_node_id == identity_c.node_id
    if policy == "callable":
        assert asked == [identity_b.node_id, identity_c.node_id]


async def test_a_failing_allow_callable_refuses_the_peer(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    def broken(node_id: str) -> bool:
        raise RuntimeError("policy store unavailable")

    ep = endpoint(udp_socket(socket.AF_INET), identity_a, allow=broken)
    client = DTLSPeerConnection(
        udp_socket(socket.AF_INET),
        ep.local_address,
        identity_b,
        expected_node_id=identity_a.node_id,
        role="client",
    )
    closing.append(client)
    with pytest.raises(HandshakeError, match="unknown_ca"):
        await asyncio.wait_for(client.handshake(), STEP)
    await wait_until(lambda: ep.stats()["handshakes_refused"] == 1, "the refusal to be counted")
    assert ep.connections == 0


async def test_stats_keys(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a)
    _, conn = await dial_and_accept(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing)
    closing.append(conn)
    stats = ep.stats()
    assert set(stats) == {
        "datagrams_in",
        "datagrams_out",
        "connections",
        "pending_handshakes",
        "backlog",
        "hello_verify_requests",
        "handshakes_started",
        "handshakes_accepted",
        "handshakes_refused",
        "dropped",
        "app_datagrams_in",
        "app_datagrams_out",
        "migrations",
        "send_errors",
    }
    assert stats["send_errors"] == 0
    assert set(stats["dropped"]) == {"over_limit", "unknown_source", "datagram_queue_full"}
    assert stats["connections"] == 1
    assert stats["handshakes_accepted"] == 1
    assert stats["pending_handshakes"] == stats["backlog"] == 0
    assert stats["datagrams_in"] > 0 and stats["datagrams_out"] > 0
    # The accepted connection's own stats have a standalone connection's keys.
    assert conn.stats()["messages_in"] == 0
    assert "dropped" in conn.stats()


async def test_python_in_the_handshake_never_deadlocks_against_calls_on_the_loop(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
) -> None:
    # A callable allow policy takes the GIL inside handshakes, on the I/O thread, holding the
    # endpoint's lock; every call from the loop must release the GIL before it locks (a
    # deadlock, hanging the test, when `remote_address` did not).
    def slow_allow(node_id: str) -> bool:
        time.sleep(0.002)
        return node_id == identity_b.node_id

    ep = endpoint(udp_socket(socket.AF_INET), identity_a, allow=slow_allow)
    _, first = await dial_and_accept(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing)
    closing.append(first)
    dialling = [
        asyncio.ensure_future(dial_endpoint(ep, udp_socket(socket.AF_INET), identity_b, identity_a, closing))
        for _ in range(20)
    ]
    for _ in range(2000):
        assert first.remote_address[0] == "127.0.0.1"
        assert first.state == "established"
        assert first.peer_node_id == identity_b.node_id
        ep.stats()
        if all(d.done() for d in dialling):
            break
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*dialling), STEP)
    accepted = [await asyncio.wait_for(ep.accept(), STEP) for _ in dialling]
    closing.extend(accepted)
    assert ep.connections == len(dialling) + 1


@pytest.mark.parametrize("client_keepalive", [None, 0.1])
async def test_liveness_options_apply_to_every_peer_of_an_endpoint(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
    client_keepalive: float | None,
) -> None:
    ep = endpoint(udp_socket(socket.AF_INET), identity_a, idle_timeout=0.5)
    client = DTLSPeerConnection(
        udp_socket(socket.AF_INET),
        ep.local_address,
        identity_b,
        expected_node_id=identity_a.node_id,
        role="client",
        keepalive_interval=client_keepalive,
    )
    closing.append(client)
    _, conn = await asyncio.wait_for(asyncio.gather(client.handshake(), ep.accept()), STEP)
    closing.append(conn)
    if client_keepalive is None:
        # A silent peer: the endpoint's idle_timeout ends its session.
        with pytest.raises(ConnectionClosed, match="idle"):
            await asyncio.wait_for(conn.recv(), STEP)
    else:
        # The peer's keepalives hold it open past the idle timeout, and stay the endpoint's.
        await asyncio.sleep(1.2)
        assert conn.state == "established"
        assert conn.stats()["keepalives_in"] >= 5
        assert ep.stats()["app_datagrams_in"] == 0


@pytest.mark.parametrize("late", ["none", "client", "server"])
async def test_two_endpoints_punch_then_both_connect_with_role_auto(
    udp_socket: UdpSocketFactory,
    endpoint: EndpointFactory,
    closing: list[DTLSPeerConnection],
    identity_a: Identity,
    identity_b: Identity,
    late: str,
) -> None:
    # The README's one-socket pattern: each node punches from its endpoint's socket, hears the
    # other's punch through recv_datagram(), then both call connect(role="auto"). The one whose
    # connect() comes late may have had the other's ClientHello already, even a whole
    # handshake (the server side): that handshake becomes its dial, not an accept().
    ids = {identity_a.node_id: identity_a, identity_b.node_id: identity_b}
    eps = {node: endpoint(udp_socket(socket.AF_INET), ids[node], allow=set(ids) - {node}) for node in ids}
    late_id = {"none": None, "client": min(eps), "server": max(eps)}[late]
    me, peer = eps[identity_a.node_id], eps[identity_b.node_id]
    await me.send_datagram(b"PUNCH", peer.local_address)
    await peer.send_datagram(b"PUNCH", me.local_address)
    assert await asyncio.wait_for(peer.recv_datagram(), STEP) == (b"PUNCH", me.local_address)
    assert await asyncio.wait_for(me.recv_datagram(), STEP) == (b"PUNCH", peer.local_address)

    async def dial(node: str, other: str) -> DTLSPeerConnection:
        if node == late_id:
            await asyncio.sleep(0.6)
        return await eps[node].connect(eps[other].local_address, expected_node_id=other, role="auto")

    a, b = await asyncio.wait_for(
        asyncio.gather(
            dial(identity_a.node_id, identity_b.node_id), dial(identity_b.node_id, identity_a.node_id)
        ),
        STEP * 2,
    )
    closing.extend([a, b])
    assert (a.peer_node_id, b.peer_node_id) == (identity_b.node_id, identity_a.node_id)
    assert {a.role, b.role} == {"client", "server"}
    await a.send(b"over the punched path")
    assert await asyncio.wait_for(b.recv(), STEP) == b"over the punched path"
    await b.send(b"and back")
    assert await asyncio.wait_for(a.recv(), STEP) == b"and back"
    # Each node has one connection, its dial; nothing waits for accept().
    for ep in eps.values():
        assert ep.connections == 1
        assert ep.stats()["backlog"] == 0
