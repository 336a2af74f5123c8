"""``listen`` and ``connect``: one pinned session that chats over stdin/stdout or echoes.

Status lines (addresses, node IDs, cipher, handshake time, why the session ended) go to
stderr; stdout carries only the peer's messages, one per line, so it can be piped.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from .._native import Identity
from ..connection import MAX_MTU, MIN_MTU, DTLSPeerConnection
from ..exceptions import ConnectionClosed, MessageTooLarge
from . import keys
from .errors import CliError

_STDIN_CHUNK = 65_536
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


def _port(text: str) -> int:
    value = _parse(text, int, "port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {value}")
    return value


def _seconds(text: str) -> float:
    value = _parse(text, float, "seconds")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _mtu(text: str) -> int:
    value = _parse(text, int, "bytes")
    if not MIN_MTU <= value <= MAX_MTU:
        raise argparse.ArgumentTypeError(f"must be between {MIN_MTU} and {MAX_MTU} bytes, not {value}")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (IPv6 as [ADDR]:PORT), not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = _port(port)
    if number == 0:
        raise argparse.ArgumentTypeError("the peer's port cannot be 0")
    return host, number


def _common_options(parser: argparse.ArgumentParser) -> None:
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
        "--echo", action="store_true", help="send every received message back instead of reading stdin"
    )
    parser.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="give up after S seconds (default 10)",
    )
    parser.add_argument(
        "--keepalive",
        type=_seconds,
        metavar="S",
        help="while idle, send a keepalive every S seconds (keeps NAT bindings open)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        metavar="S",
        help="end the session when nothing authenticated arrived for S seconds",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print the library's log (retransmissions, ...)"
    )
    parser.add_argument(
        "--mtu", type=_mtu, default=1200, help="largest datagram, handshake included (default 1200)"
    )


def add_commands(commands: Any) -> None:
    listen = commands.add_parser(
        "listen",
        help="wait for a peer on a UDP port, then chat (stdin/stdout) or echo",
        description="Wait on a UDP port for the first DTLS datagram, then run a pinned DTLS "
        "session (as the DTLS server) with its sender. Stdin lines are sent as messages; "
        "received messages are printed one per line. EOF on stdin closes the session.",
    )
    listen.add_argument("--port", type=_port, required=True, help="UDP port to listen on")
    listen.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDR", help="local address (default 0.0.0.0; :: for IPv6)"
    )
    _common_options(listen)
    listen.set_defaults(run=_run, mode="listen")

    connect = commands.add_parser(
        "connect",
        help="open a pinned session to HOST:PORT, then chat (stdin/stdout) or echo",
        description="Run a pinned DTLS session (as the DTLS client) with the peer at HOST:PORT. "
        "Stdin lines are sent as messages; received messages are printed one per line. EOF on "
        "stdin closes the session.",
    )
    connect.add_argument("peer", type=_host_port, metavar="HOST:PORT", help="the peer's address")
    connect.add_argument("--bind", metavar="ADDR", help="local address (default: any)")
    connect.add_argument(
        "--local-port", type=_port, default=0, metavar="P", help="local UDP port (default: any)"
    )
    _common_options(connect)
    connect.set_defaults(run=_run, mode="connect")


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


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), _settle, ready, None)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _first_dtls_sender(sock: socket.socket) -> tuple[str, int]:
    """The source of the first DTLS datagram, left unread for the connection; anything else
    that arrives first (late hole-punch packets, noise) is read and ignored."""
    while True:
        try:
            data, source = sock.recvfrom(_STDIN_CHUNK, socket.MSG_PEEK)
        except BlockingIOError:
            await _readable(sock)
            continue
        if _looks_like_client_hello(data):
            return str(source[0]), int(source[1])
        sock.recvfrom(_STDIN_CHUNK)
        status(f"ignored a {len(data)}-byte non-DTLS datagram from {_show(source)}")


def _show(address: Any) -> str:
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _open(args: argparse.Namespace) -> DTLSPeerConnection:
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
            status(f"listening on UDP {_show(sock.getsockname())}")
            peer = await _first_dtls_sender(sock)
            status(f"handshake with {_show(peer)}")
            role = "server"
        else:
            status(f"handshake from {_show(sock.getsockname())} with {_show(peer)}")
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
        )


# -- the session ---------------------------------------------------------------------------


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes | None]) -> None:
    """Feeds stdin lines to the loop; a thread, because a regular file cannot be polled.

    It reads the raw descriptor: a daemon thread blocked inside ``sys.stdin`` would hold its
    buffer lock while the interpreter shuts down."""

    def put(item: bytes | None) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop has ended
            return False
        return True

    def pump() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(0, _STDIN_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    put(pending)
                put(None)
                return
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                if not put(line):
                    return

    threading.Thread(target=pump, name="dtls-peer-stdin", daemon=True).start()


def _print_message(message: bytes) -> None:
    sys.stdout.buffer.write(message + b"\n")
    sys.stdout.buffer.flush()


async def _receive(conn: DTLSPeerConnection, echo: bool) -> str:
    while True:
        try:
            message = await conn.recv()
        except ConnectionClosed as e:
            return str(e)
        _print_message(message)
        if echo:
            try:
                await conn.send(message)
            except ConnectionClosed as e:
                return str(e)


async def _send_stdin(conn: DTLSPeerConnection) -> bool:
    """Sends stdin lines until end of input (True) or until the session ends (False)."""
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()
    _read_stdin(asyncio.get_running_loop(), lines)
    while True:
        line = await lines.get()
        if line is None:
            return True
        line = line.rstrip(b"\r")
        if not line:
            continue  # DTLS carries no empty message
        try:
            await conn.send(line)
        except MessageTooLarge as e:
            status(f"line not sent: {e}")
        except ConnectionClosed:
            return False


async def _converse(conn: DTLSPeerConnection, echo: bool) -> int:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _settle, stopped, int(signum))
    tasks: list[asyncio.Future[Any]] = [stopped]
    try:
        handshake: asyncio.Future[None] = asyncio.ensure_future(conn.handshake())
        first: list[asyncio.Future[Any]] = [handshake, stopped]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not handshake.done():
            handshake.cancel()
            return 128 + stopped.result()
        handshake.result()
        took = conn.stats()["handshake_duration"] or 0.0
        status(
            f"connected to node {conn.peer_node_id} ({conn.protocol_version} {conn.cipher}), "
            f"handshake {took * 1000:.1f} ms"
        )
        receiving = asyncio.ensure_future(_receive(conn, echo))
        tasks = [receiving, stopped]
        if not echo:
            sending = asyncio.ensure_future(_send_stdin(conn))
            tasks.append(sending)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if sending.done() and sending.result():
                status("end of input; closing the session")
                return 0
        # The session ends when the peer closes it (sending stops then too) or on a signal.
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            status("interrupted; closing the session")
            return 128 + stopped.result()
        status(f"session ended: {receiving.result()}")
        return 0
    finally:
        for task in tasks:
            task.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await conn.close()


async def _session(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="dtls-peer: log: %(message)s")
    conn = await _open(args)
    return await _converse(conn, args.echo)


def _run(args: argparse.Namespace) -> Any:
    return _session(args)


__all__ = ["add_commands"]
