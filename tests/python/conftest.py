"""Shared fixtures: identities, loopback UDP sockets (IPv4 and IPv6) and handshaken connection pairs."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from cli_peers import Peer, Spawn
from dtls_peer import DTLSPeerConnection, Identity
from impair import ImpairedLink, Impairment
from loops import NoAddReaderLoop

LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}

# Generous bound for anything that should take milliseconds on loopback.
STEP_TIMEOUT = 10.0

ALLOWED_CIPHERS = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
}

# The core of the suite runs twice: on the default loop and on a loop without add_reader /
# add_writer, as Windows' ProactorEventLoop is (tests/python/loops.py). Not test_concurrency:
# its tick-rate bound (a 1 ms ticker must tick 0.25 times per ms of handshaking) fails on
# uvloop and on the watcher-thread path when 20 handshakes take only ~25 ms in a warm process.
TWO_LOOP_FILES = {
    "test_batch.py",
    "test_cancellation.py",
    "test_connection.py",
    "test_endpoint.py",
    "test_errors.py",
    "test_liveness.py",
    "test_send_stall.py",
}


CORE_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "selector": asyncio.new_event_loop,
    "no_add_reader": NoAddReaderLoop,
}
# And a third time on uvloop where it is installed (the bench extra; not in .ci/run).
# Imported by name: the test extra does not install it, so its types may be absent.
if importlib.util.find_spec("uvloop") is not None:
    CORE_LOOPS["uvloop"] = importlib.import_module("uvloop").new_event_loop


# pytest-asyncio >= 1.5 (Python >= 3.10) parametrizes by this hook; older ones (3.9) ignore it
# and run every test on the default loop once.
@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in TWO_LOOP_FILES:
        return CORE_LOOPS
    return {"default": asyncio.new_event_loop}


def address(sock: socket.socket) -> tuple[str, int]:
    """The (host, port) a bound socket listens on, without IPv6 flow info and scope."""
    name = sock.getsockname()
    return str(name[0]), int(name[1])


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
    """Polls ``predicate`` until it holds; fails the test after ``timeout`` seconds."""
    interval = 0.002
    for _ in range(int(timeout / interval) + 1):
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def recv_within(conn: DTLSPeerConnection, timeout: float = STEP_TIMEOUT) -> bytes:
    return await asyncio.wait_for(conn.recv(), timeout)


async def handshake_all(*conns: DTLSPeerConnection, timeout: float = STEP_TIMEOUT) -> None:
    await asyncio.wait_for(asyncio.gather(*(c.handshake() for c in conns)), timeout)


@dataclass
class Pair:
    """Two connections to each other over two loopback sockets (a uses identity_a)."""

    a: DTLSPeerConnection
    b: DTLSPeerConnection
    sock_a: socket.socket
    sock_b: socket.socket
    identity_a: Identity
    identity_b: Identity


class UdpSocketFactory(Protocol):
    def __call__(self, family: socket.AddressFamily) -> socket.socket: ...


class UdpPairFactory(Protocol):
    def __call__(self, family: socket.AddressFamily) -> tuple[socket.socket, socket.socket]: ...


class ConnectionFactory(Protocol):
    def __call__(
        self, sock: Any, remote_addr: tuple[str, int], identity: Identity, **options: Any
    ) -> DTLSPeerConnection: ...


class PairFactory(Protocol):
    def __call__(
        self,
        family: socket.AddressFamily,
        *,
        options_a: Mapping[str, Any] | None = None,
        options_b: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Pair: ...


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def family(request: pytest.FixtureRequest) -> socket.AddressFamily:
    return socket.AddressFamily(request.param)


@pytest.fixture(scope="session")
def identity_a() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def identity_b() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def identity_c() -> Identity:
    return Identity.generate()


@pytest.fixture
def udp_socket() -> Iterator[UdpSocketFactory]:
    """Binds UDP sockets on the loopback address of a family (port 0); closes them afterwards."""
    created: list[socket.socket] = []

    def make(family: socket.AddressFamily) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        created.append(sock)
        sock.bind((LOOPBACK[family], 0))
        return sock

    yield make
    for sock in created:
        sock.close()


@pytest.fixture
def udp_pair(udp_socket: UdpSocketFactory) -> UdpPairFactory:
    """Two bound loopback UDP sockets of one family, closed after the test."""

    def make(family: socket.AddressFamily) -> tuple[socket.socket, socket.socket]:
        return udp_socket(family), udp_socket(family)

    return make


@pytest.fixture
def connection() -> Iterator[ConnectionFactory]:
    """Creates DTLSPeerConnections and closes every one of them after the test."""
    created: list[DTLSPeerConnection] = []

    def make(
        sock: Any, remote_addr: tuple[str, int], identity: Identity, **options: Any
    ) -> DTLSPeerConnection:
        conn = DTLSPeerConnection(sock, remote_addr, identity, **options)
        created.append(conn)
        return conn

    yield make
    for conn in created:
        conn.close_nowait()


@pytest.fixture
def make_pair(
    udp_pair: UdpPairFactory, connection: ConnectionFactory, identity_a: Identity, identity_b: Identity
) -> PairFactory:
    """Two not-yet-handshaken connections pinned to each other (role="auto" unless given).

    ``options`` go to both connections; ``options_a`` and ``options_b`` go to one side only and
    win over ``options`` and over the default pin (``expected_node_id``)."""

    def make(
        family: socket.AddressFamily,
        *,
        options_a: Mapping[str, Any] | None = None,
        options_b: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Pair:
        sock_a, sock_b = udp_pair(family)
        a_options = {"expected_node_id": identity_b.node_id, **options, **(options_a or {})}
        b_options = {"expected_node_id": identity_a.node_id, **options, **(options_b or {})}
        a = connection(sock_a, address(sock_b), identity_a, **a_options)
        b = connection(sock_b, address(sock_a), identity_b, **b_options)
        return Pair(a, b, sock_a, sock_b, identity_a, identity_b)

    return make


@pytest.fixture
async def connected_pair(make_pair: PairFactory, family: socket.AddressFamily) -> AsyncIterator[Pair]:
    """Two handshaken connections over loopback (IPv4 and IPv6); both closed afterwards."""
    pair = make_pair(family)
    await handshake_all(pair.a, pair.b)
    yield pair
    await pair.a.close()
    await pair.b.close()


@dataclass
class ImpairedPair:
    """Two connections whose every datagram crosses an ImpairedLink (a talks to link side a)."""

    a: DTLSPeerConnection
    b: DTLSPeerConnection
    link: ImpairedLink


class ImpairedPairFactory(Protocol):
    async def __call__(
        self,
        family: socket.AddressFamily,
        *,
        a_to_b: Impairment | None = None,
        b_to_a: Impairment | None = None,
        both: Impairment | None = None,
        seed: int = 0,
        **options: Any,
    ) -> ImpairedPair: ...


@pytest.fixture
async def make_impaired_pair(
    udp_pair: UdpPairFactory, connection: ConnectionFactory, identity_a: Identity, identity_b: Identity
) -> AsyncIterator[ImpairedPairFactory]:
    """Two not-yet-handshaken connections pinned to each other through an impairment proxy
    (``a`` the client); ``options`` go to both connections. Links are closed after the test."""
    links: list[ImpairedLink] = []

    async def make(
        family: socket.AddressFamily,
        *,
        a_to_b: Impairment | None = None,
        b_to_a: Impairment | None = None,
        both: Impairment | None = None,
        seed: int = 0,
        **options: Any,
    ) -> ImpairedPair:
        sock_a, sock_b = udp_pair(family)
        link = await ImpairedLink.start(
            address(sock_a), address(sock_b), a_to_b=a_to_b, b_to_a=b_to_a, both=both, seed=seed
        )
        links.append(link)
        a = connection(
            sock_a,
            link.address_for_a,
            identity_a,
            expected_node_id=identity_b.node_id,
            role="client",
            **options,
        )
        b = connection(
            sock_b,
            link.address_for_b,
            identity_b,
            expected_node_id=identity_a.node_id,
            role="server",
            **options,
        )
        return ImpairedPair(a, b, link)

    yield make
    for link in links:
        link.close()


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """Starts ``dtls-peer`` commands in ``tmp_path`` (cli_peers.Peer); kills any still running
    after the test."""
    started: list[Peer] = []

    async def start(*args: str | Path) -> Peer:
        argv = [sys.executable, "-m", "dtls_peer", *map(str, args)]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        peer = Peer(argv, proc)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        if peer.proc.returncode is None:
            peer.proc.kill()
            await peer.proc.wait()
