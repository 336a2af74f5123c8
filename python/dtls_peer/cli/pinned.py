"""What opens one pinned connection from the command line, for every command that makes
one (``listen``/``connect``, ``send``/``receive``): the options (pin, identity, timeouts,
mtu), the socket (bound, or waiting for the first DTLS datagram), the handshake, and the
status lines on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from .._native import Identity
from ..connection import MAX_MTU, MIN_MTU, DTLSPeerConnection
from . import keys
from .errors import CliError

_PEEK_SIZE = 65_536
T = TypeVar("T")


def status(line: str) -> None:
    print(f"dtls-peer: {line}", file=sys.stderr, flush=True)


# -- arguments ---------------------------------------------------------------------------


_HEX = frozenset("0123456789abcdef")
_BASE58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


def _peer_id(text: str, scheme: str) -> str:
    """``--peer-id`` checked for its scheme's alphabet, so a typo is a usage error before any
    socket or identity is made. The library checks the rest (a libp2p ID must decode as a
    peer ID) when the connection is made."""
    if scheme == "sha256":
        value = text.strip().lower()
        if len(value) != 64 or not _HEX.issuperset(value):
            raise CliError(f"--peer-id: a node ID is 64 hex characters (see 'dtls-peer id'), not {text!r}", 2)
        return value
    value = text.strip()
    if not value or not _BASE58.issuperset(value):
        raise CliError(
            f"--peer-id: a libp2p peer ID is base58btc text (12D3KooW..., Qm..., 16Uiu2...), not {text!r}", 2
        )
    return value


def _parse(text: str, convert: Callable[[str], T], unit: str) -> T:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None


def port_number(text: str) -> int:
    value = _parse(text, int, "port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {value}")
    return value


def positive_seconds(text: str) -> float:
    value = _parse(text, float, "seconds")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _mtu(text: str) -> int:
    value = _parse(text, int, "bytes")
    if not MIN_MTU <= value <= MAX_MTU:
        raise argparse.ArgumentTypeError(f"must be between {MIN_MTU} and {MAX_MTU} bytes, not {value}")
    return value


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (IPv6 as [ADDR]:PORT), not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = port_number(port)
    if number == 0:
        raise argparse.ArgumentTypeError("the peer's port cannot be 0")
    return host, number


def connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--peer-id",
        required=True,
        metavar="ID",
        help="the node ID the peer must present (pinned), under --scheme",
    )
    parser.add_argument(
        "--cert",
        help="this node's certificate (PEM); optional with --key (one is made from the key); "
        "without --cert/--key a fresh P-256 identity is made",
    )
    parser.add_argument(
        "--key", help="this node's private key (PEM: PKCS#8, SEC1 or PKCS#1; P-256, Ed25519, RSA, secp256k1)"
    )
    keys.add_scheme_option(
        parser, "how node IDs are written, this node's and --peer-id (both peers use the same)"
    )
    parser.add_argument(
        "--handshake-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="S",
        help="give up after S seconds (default 10)",
    )
    parser.add_argument(
        "--keepalive",
        type=positive_seconds,
        metavar="S",
        help="while idle, send a keepalive every S seconds (keeps NAT bindings open)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=positive_seconds,
        metavar="S",
        help="end the session when nothing authenticated arrived for S seconds",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print the library's log (retransmissions, ...)"
    )
    parser.add_argument(
        "--mtu", type=_mtu, default=1200, help="largest datagram, handshake included (default 1200)"
    )


# -- setting up ----------------------------------------------------------------------------


def _check_identity_options(args: argparse.Namespace) -> None:
    if args.cert is not None and args.key is None:
        raise CliError("--cert needs --key (the --cert and --key options go together; --key alone works)", 2)


def _identity(args: argparse.Namespace) -> Identity:
    if args.key is None:
        return Identity.generate(node_id_scheme=args.scheme)
    try:
        return Identity.load(args.cert, args.key, node_id_scheme=args.scheme)
    except (OSError, ValueError) as e:
        files = f"{args.cert} and {args.key}" if args.cert is not None else args.key
        raise CliError(f"cannot load the identity from {files}: {e}") from None


def _check_pin(identity: Identity, peer_id: str) -> None:
    """Has the library check ``--peer-id`` under the identity's scheme before anything is
    printed or awaited (a listener would otherwise learn of a mistyped pin only when a peer
    arrives). The check runs when a connection is made; one made on a loopback socket towards
    itself and closed before any handshake sends nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        try:
            conn = DTLSPeerConnection(
                probe, probe.getsockname(), identity, expected_node_id=peer_id, role="client"
            )
        except ValueError as e:
            raise CliError(f"--peer-id: {e}", 2) from None
        conn.close_nowait()


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise CliError(f"cannot resolve {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def _bound_socket(host: str | None, port: int, family: socket.AddressFamily | None = None) -> socket.socket:
    if host is not None:
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        except ValueError:
            raise CliError(f"--bind takes an IP address, not {host!r}") from None
    family = family or socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    address = host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    try:
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        raise CliError(f"cannot bind UDP {address} port {port}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


def _looks_like_client_hello(datagram: bytes) -> bool:
    # A DTLS handshake record (content type 22, version major 0xfe) with its 13-byte header.
    return len(datagram) >= 13 and datagram[0] == 22 and datagram[1] == 0xFE


def settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), settle, ready, None)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _first_dtls_sender(sock: socket.socket) -> tuple[str, int]:
    """The source of the first DTLS datagram, left unread for the connection; anything else
    that arrives first (late hole-punch packets, noise) is read and ignored."""
    while True:
        try:
            data, source = sock.recvfrom(_PEEK_SIZE, socket.MSG_PEEK)
        except BlockingIOError:
            await _readable(sock)
            continue
        if _looks_like_client_hello(data):
            return str(source[0]), int(source[1])
        sock.recvfrom(_PEEK_SIZE)
        status(f"ignored a {len(data)}-byte non-DTLS datagram from {show(source)}")


def show(address: Any) -> str:
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_connection(args: argparse.Namespace, **options: Any) -> DTLSPeerConnection:
    """The connection ``args`` describe (``args.mode``: "listen" waits on ``args.port`` for the
    first DTLS datagram, "connect" dials ``args.peer``), not yet handshaken; ``options`` go to
    ``DTLSPeerConnection``."""
    role: Literal["client", "server"]
    peer_id = _peer_id(args.peer_id, args.scheme)
    _check_identity_options(args)
    # Addresses first: a typo there should not cost a fresh identity.
    if args.mode == "listen":
        sock = _bound_socket(args.bind, args.port)
    else:
        family, peer = _resolve(*args.peer)
        sock = _bound_socket(args.bind, args.local_port, family)
    with sock:
        identity = _identity(args)
        _check_pin(identity, peer_id)
        fresh = " (fresh identity: the peer pins it with --peer-id)" if args.key is None else ""
        status(f"this node's ID is {identity.node_id}{fresh}")
        if args.mode == "listen":
            status(f"listening on UDP {show(sock.getsockname())}")
            peer = await _first_dtls_sender(sock)
            status(f"handshake with {show(peer)}")
            role = "server"
        else:
            status(f"handshake from {show(sock.getsockname())} with {show(peer)}")
            role = "client"
        return DTLSPeerConnection(
            sock,
            peer,
            identity,
            expected_node_id=peer_id,
            role=role,
            mtu=args.mtu,
            handshake_timeout=args.handshake_timeout,
            keepalive_interval=args.keepalive,
            idle_timeout=args.idle_timeout,
            **options,
        )


def watch_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
    """A future that SIGINT or SIGTERM settles with the signal's number (until
    ``unwatch_signals``), so a command closes its session instead of dying mid-way."""
    stopped: asyncio.Future[int] = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, settle, stopped, int(signum))
    return stopped


def unwatch_signals(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)


async def handshake(conn: DTLSPeerConnection, stopped: asyncio.Future[int]) -> bool:
    """Runs the handshake and prints who the peer is; False if a signal came first."""
    running: asyncio.Future[None] = asyncio.ensure_future(conn.handshake())
    first: list[asyncio.Future[Any]] = [running, stopped]
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        running.cancel()
        return False
    running.result()
    took = conn.stats()["handshake_duration"] or 0.0
    status(
        f"connected to node {conn.peer_node_id} ({conn.protocol_version} {conn.cipher}), "
        f"handshake {took * 1000:.1f} ms"
    )
    return True
