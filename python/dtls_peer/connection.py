"""DTLSPeerConnection: a pinned DTLS 1.2 channel over an already hole-punched UDP socket."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:
    from typing import TypeGuard  # 3.10; the package runs on 3.9

from . import _events, _native, _wake
from .channel import DataChannel
from .exceptions import ConnectionClosed, DTLSError, HandshakeError, MessageTooLarge

SocketLike = Union[socket.socket, int, asyncio.DatagramTransport]
BytesLike = Union[bytes, bytearray, memoryview]

DEFAULT_RECEIVE_QUEUE_SIZE = 1024
DEFAULT_RECV_MANY = 64
MAX_RECEIVE_QUEUE_SIZE = 1 << 20
# The same bounds the engine enforces; checked here too so no value overflows on the way in.
MIN_MTU, MAX_MTU = 256, 65_507
DEFAULT_MAX_CHANNEL_MESSAGE_SIZE = 16 << 20
DEFAULT_CHANNEL_HIGH_WATER = 1 << 20
MAX_CHANNEL_MESSAGE_SIZE = 1 << 30
# How long close() waits for the peer to acknowledge everything sent on the data channels.
CHANNEL_SHUTDOWN_TIMEOUT = 2.0


def _dup_handle(fileno: int) -> int:
    """A duplicate of socket ``fileno`` made with ``socket.dup()``, which is
    ``WSADuplicateSocketW`` on Windows, where ``os.dup`` knows no sockets."""
    probe = socket.socket(fileno=fileno)
    try:
        return probe.dup().detach()
    finally:
        probe.detach()


# What the native side takes over: its own descriptor (Unix) or socket handle (Windows).
_dup = _dup_handle if sys.platform == "win32" else os.dup


def _is_transport(sock: object) -> TypeGuard[asyncio.BaseTransport]:
    return isinstance(sock, asyncio.BaseTransport) or (
        hasattr(sock, "get_extra_info") and hasattr(sock, "close") and hasattr(sock, "is_closing")
    )


def _take_socket(sock: object) -> int:
    """A duplicate descriptor (a socket handle on Windows) of ``sock`` for the connection to
    own."""
    # Selector-based datagram transports do not subclass DatagramTransport, and uvloop's
    # subclass no asyncio class at all; accept any transport that carries a datagram socket.
    if _is_transport(sock):
        inner = sock.get_extra_info("socket")
        if inner is None or inner.fileno() < 0:
            raise ValueError("the transport has no open socket (is it closed?)")
        if inner.type != socket.SOCK_DGRAM:
            raise ValueError(f"the transport's socket must be UDP (SOCK_DGRAM), not {inner.type!r}")
        fd = _dup(inner.fileno())
        # The transport must stop reading now, or it would steal the peer's datagrams.
        sock.close()
        return fd
    if isinstance(sock, socket.socket):
        if sock.fileno() < 0:
            raise ValueError("the socket is closed")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"the socket must be AF_INET or AF_INET6, not {sock.family!r}")
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"the socket must be a UDP (SOCK_DGRAM) socket, not {sock.type!r}")
        return _dup(sock.fileno())
    if isinstance(sock, int) and not isinstance(sock, bool):
        try:
            return _dup(sock)
        except OSError as e:
            raise ValueError(f"descriptor {sock} is not open: {e.strerror}") from None
    raise TypeError(
        "sock must be a socket.socket, a file descriptor (int) or an asyncio.DatagramTransport, "
        f"not {type(sock).__name__}"
    )


def _parse_remote(remote_addr: object) -> tuple[str, int]:
    if not isinstance(remote_addr, tuple) or len(remote_addr) not in (2, 4):
        raise TypeError(f"remote_addr must be a (host, port) tuple, not {remote_addr!r}")
    host, port = remote_addr[0], remote_addr[1]
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"remote_addr must be (str, int), not ({type(host).__name__}, {type(port).__name__})")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"remote_addr host must be an IP address literal, not {host!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"remote_addr port must be between 1 and 65535, not {port}")
    return str(ip), port


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def _ciphers(value: object) -> str | None:
    """The suite list as OpenSSL's ``:``-separated string; a list or tuple of names is joined."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, (list, tuple)):
        kind = type(value).__name__
        raise TypeError(
            f"ciphers must be a str like 'A:B', a list or tuple of suite names, or None, not {kind}"
        )
    if not value:
        raise ValueError("ciphers is an empty list; give at least one suite name, or None for the default")
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise TypeError(f"ciphers[{i}] must be a suite name (str), not {type(name).__name__}")
        if not name or ":" in name:
            raise ValueError(f"ciphers[{i}] must be one suite name, not {name!r}")
    return ":".join(value)


def _integer(name: str, value: object, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}{unit}, got {value}")
    return value


def _channel_sizes(channels: object, max_message_size: object, high_water: object) -> tuple[int, int] | None:
    """``(max_channel_message_size, channel_high_water)`` with ``channels=True``, else None."""
    if not isinstance(channels, bool):
        raise TypeError(f"channels must be True or False, not {type(channels).__name__}")
    if not channels:
        return None
    return (
        _integer("max_channel_message_size", max_message_size, 1, MAX_CHANNEL_MESSAGE_SIZE, " bytes"),
        _integer("channel_high_water", high_water, 1, MAX_CHANNEL_MESSAGE_SIZE, " bytes"),
    )


class DTLSPeerConnection(_wake.Waiting):
    """An authenticated, encrypted DTLS 1.2 channel to one peer over a UDP socket.

    ``sock`` is the application's UDP socket (``socket.socket``, a descriptor, or an asyncio
    ``DatagramTransport``, which is closed). The connection works on its own duplicate of the
    descriptor; do not read from the original afterwards. ``expected_node_id`` pins the peer
    (checked during the handshake): the peer's node ID under this side's
    ``identity.node_id_scheme`` ("sha256": 64 hex characters, any case; "libp2p": a base58btc
    peer ID; a callable: the exact string it returns). ``None`` explicitly accepts any peer,
    which encrypts but authenticates nothing. ``role="auto"`` makes the smaller node ID the
    client and needs a pin; it compares the two node IDs as strings of the local scheme, so both
    sides must use the same scheme (or choose ``"client"``/``"server"`` explicitly).
    ``ciphers`` restricts the suites: an OpenSSL ``"A:B"`` string or a list or tuple of names,
    all ECDHE-ECDSA AEAD suites (``None``: the default list).
    ``keepalive_interval`` (seconds) sends an authenticated keepalive, which any DTLS stack
    ignores, whenever nothing else was sent for that long, to hold NAT bindings open;
    ``idle_timeout`` ends the session with ``ConnectionClosed`` when nothing authenticated (a
    message, or a dtls_peer peer's keepalive) arrived for that long. Both are off by default.
    """

    def __init__(
        self,
        sock: SocketLike,
        remote_addr: tuple[str, int],
        identity: _native.Identity,
        *,
        expected_node_id: str | None,
        role: Literal["auto", "client", "server"] = "auto",
        mtu: int = 1200,
        handshake_timeout: float = 10.0,
        initial_retransmit_timeout: float = 0.25,
        ciphers: str | Sequence[str] | None = None,
        receive_queue_size: int = DEFAULT_RECEIVE_QUEUE_SIZE,
        keepalive_interval: float | None = None,
        idle_timeout: float | None = None,
        channels: bool = False,
        max_channel_message_size: int = DEFAULT_MAX_CHANNEL_MESSAGE_SIZE,
        channel_high_water: int = DEFAULT_CHANNEL_HIGH_WATER,
    ) -> None:
        if not isinstance(identity, _native.Identity):
            raise TypeError(f"identity must be a dtls_peer.Identity, not {type(identity).__name__}")
        if expected_node_id is not None and not isinstance(expected_node_id, str):
            raise TypeError(f"expected_node_id must be str or None, not {type(expected_node_id).__name__}")
        suites = _ciphers(ciphers)
        host, port = _parse_remote(remote_addr)
        mtu = _integer("mtu", mtu, MIN_MTU, MAX_MTU, " bytes")
        queue_size = _integer("receive_queue_size", receive_queue_size, 1, MAX_RECEIVE_QUEUE_SIZE)
        keepalive = None if keepalive_interval is None else _number("keepalive_interval", keepalive_interval)
        idle = None if idle_timeout is None else _number("idle_timeout", idle_timeout)
        timeout = _number("handshake_timeout", handshake_timeout)
        rto = _number("initial_retransmit_timeout", initial_retransmit_timeout)
        channel_sizes = _channel_sizes(channels, max_channel_message_size, channel_high_water)
        resolved_role = self._resolve_role(role, identity, expected_node_id)
        fd = _take_socket(sock)
        # The native constructor owns `fd` from its first line, even when it raises.
        native = _native.Connection(
            fd,
            host,
            port,
            identity,
            expected_node_id,
            resolved_role,
            mtu,
            timeout,
            rto,
            suites,
            queue_size,
            keepalive,
            idle,
            channel_sizes,
        )
        self._setup(native, channel_sizes, timeout)

    @classmethod
    def _adopt(
        cls, native: _native.Connection, channels: tuple[int, int] | None, timeout: float
    ) -> DTLSPeerConnection:
        """Wraps one peer of a ``DTLSEndpoint`` (its handshake already started there)."""
        conn = cls.__new__(cls)
        conn._setup(native, channels, timeout)
        return conn

    def _setup(self, native: _native.Connection, channels: tuple[int, int] | None, timeout: float) -> None:
        self._native = native
        self._channels = channels
        self._handshake_timeout = timeout
        self._init_waiting(self._native)
        self._closed = False
        self._events = _events.EventLog(self._native)
        self._unwatch: Callable[[], object] | None = None

    @staticmethod
    def _resolve_role(role: object, identity: _native.Identity, expected_node_id: str | None) -> str:
        if not isinstance(role, str):
            raise TypeError(f"role must be a str ('auto', 'client' or 'server'), not {type(role).__name__}")
        if role not in ("auto", "client", "server"):
            raise ValueError(f"role must be 'auto', 'client' or 'server', not {role!r}")
        if role != "auto":
            return str(role)
        if expected_node_id is None:
            raise ValueError("role='auto' needs expected_node_id: the roles are chosen by comparing node IDs")
        # Node IDs compare as strings of the local scheme; only "sha256" IDs (hex) ignore case.
        # The peer compares the same two strings only if it uses the same scheme.
        peer = expected_node_id.lower() if identity.node_id_scheme == "sha256" else expected_node_id
        if peer == identity.node_id:
            raise ValueError("expected_node_id is this identity's own node ID")
        return "client" if identity.node_id < peer else "server"

    # -- waiting -----------------------------------------------------------------------

    def _wake(self) -> None:
        self._events.observe()
        super()._wake()

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ConnectionClosed(f"{what}: the connection was closed with close()")

    # -- the API -------------------------------------------------------------------------

    async def handshake(self) -> None:
        """Runs the handshake; returns once the peer is verified.

        Raises ``HandshakeTimeout``, ``PeerVerificationError`` or ``HandshakeError``; after a
        successful handshake, calling it again returns at once.
        """
        self._check_open("handshake()")
        self._bind_loop()
        self._native.start_handshake()
        self._events.observe()
        while not self._native.handshake_done():
            await self._wait()
        self._read_on_loop()
        if self._channels is not None:
            await self._channels_up()

    async def _channels_up(self) -> None:
        """Waits for the data channels' SCTP association, within the handshake timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._handshake_timeout
        while not self._channels_ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.close_nowait()
                raise HandshakeError(
                    f"the peer did not start data channels within {self._handshake_timeout:g} s "
                    "after the DTLS handshake: does it use channels=True?"
                )
            try:
                await asyncio.wait_for(self._wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _channels_ready(self) -> bool:
        try:
            return self._native.channels_ready()
        except ConnectionClosed as e:
            # The association could not start: the handshake, as the application asked for
            # it, failed.
            self.close_nowait()
            raise HandshakeError(str(e)) from None

    async def _association(self) -> None:
        """Waits until the channels' association is up (a peer taken from a ``DTLSEndpoint``
        may still be starting it); raises ``ConnectionClosed`` if it ended."""
        while not self._native.channels_ready():
            await self._wait()
            self._check_open("data channels")

    def _no_channels(self, what: str) -> None:
        if self._channels is not None:
            raise DTLSError(
                f"{what}: this connection carries data channels (channels=True); "
                "use create_channel() / accept_channel()"
            )

    def _need_channels(self, what: str) -> None:
        if self._channels is None:
            raise DTLSError(f"{what}: this connection was made without channels=True")
        self._check_open(what)

    async def create_channel(
        self,
        label: str,
        *,
        ordered: bool = True,
        max_retransmits: int | None = None,
        max_lifetime: float | None = None,
        protocol: str = "",
    ) -> DataChannel:
        """Opens a data channel and returns it once the peer has acknowledged it (DCEP).

        ``ordered=False`` lets messages overtake each other; ``max_retransmits`` (a count) or
        ``max_lifetime`` (seconds), not both, make it partially reliable (RFC 3758): a message
        is given up after that many retransmissions or that long. ``protocol`` names the
        sub-protocol for the peer."""
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        if not isinstance(protocol, str):
            raise TypeError(f"protocol must be a str, not {type(protocol).__name__}")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True or False, not {type(ordered).__name__}")
        if max_retransmits is not None and max_lifetime is not None:
            raise ValueError("max_retransmits and max_lifetime are mutually exclusive (RFC 8831 §6.1)")
        retransmits = None
        if max_retransmits is not None:
            retransmits = _integer("max_retransmits", max_retransmits, 0, 65535)
        lifetime_ms = None
        if max_lifetime is not None:
            if isinstance(max_lifetime, bool) or not isinstance(max_lifetime, (int, float)):
                kind = type(max_lifetime).__name__
                raise TypeError(f"max_lifetime must be a number of seconds, not {kind}")
            if not 0 <= max_lifetime <= 65.535:
                raise ValueError(f"max_lifetime must be between 0 and 65.535 seconds, not {max_lifetime!r}")
            lifetime_ms = round(max_lifetime * 1000)
        self._need_channels("create_channel()")
        if not self._native.is_established:
            raise DTLSError("create_channel(): the handshake has not completed; await handshake() first")
        await self._association()
        channel_id = self._native.open_channel(label, protocol, ordered, retransmits, lifetime_ms)
        try:
            while not self._native.channel_open(channel_id):
                await self._wait()
        except BaseException:
            self._native.close_channel(channel_id)
            raise
        return DataChannel(self, channel_id)

    async def accept_channel(self) -> DataChannel:
        """The next channel the peer opened, oldest first. Raises ``ConnectionClosed`` once the
        connection has ended. Cancelling it loses no channel."""
        self._need_channels("accept_channel()")
        await self._association()
        while True:
            channel_id = self._native.accept_channel()
            if channel_id is not None:
                return DataChannel(self, channel_id)
            await self._wait()
            self._check_open("accept_channel()")

    @property
    def channels(self) -> bool:
        """Whether this connection carries data channels (``channels=True``)."""
        return self._channels is not None

    @property
    def max_channel_message_size(self) -> int:
        """The largest message a data channel sends or receives (0 without channels)."""
        return 0 if self._channels is None else self._channels[0]

    def _read_on_loop(self) -> None:
        """Established: the event loop reads the socket itself from now on, so a datagram
        reaches a waiting ``recv()`` with no hand-over from the I/O thread (docs/design.md)."""
        if self._unwatch is not None or self._loop is None or self._waker is None:
            return
        if not self._waker.selects:
            return  # a loop without add_reader (Proactor): the I/O thread keeps reading
        fd = self._native.take_over_reads()
        if fd is None:
            return
        self._loop.add_reader(fd, _on_readable, weakref.ref(self))
        # Unregistered on close, or when the connection is collected without one (before
        # its descriptor closes, so the loop never watches a reused number).
        self._unwatch = weakref.finalize(self, _remove_reader, self._loop, fd)

    async def send(self, data: BytesLike) -> None:
        """Sends one message as one datagram (at most ``max_message_size`` bytes)."""
        if isinstance(data, bytes):
            payload = data
        elif isinstance(data, (bytearray, memoryview)):
            payload = bytes(data)
        else:
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        self._no_channels("send()")
        self._check_open("send()")
        while not self._native.send(payload):
            await self._wait()

    async def send_many(self, messages: Iterable[BytesLike]) -> None:
        """Sends each message as one datagram, in order, with one lock and one batched system
        call per group instead of one per message. Every message is checked before any is
        sent: a non-bytes item raises ``TypeError``, an empty one ``ValueError`` and one over
        ``max_message_size`` ``MessageTooLarge``; an empty batch is a ``ValueError``."""
        self._no_channels("send_many()")
        payloads = self._batch(messages)
        self._check_open("send_many()")
        sent = 0
        while sent < len(payloads):
            taken = self._native.send_many(payloads, sent)
            sent += taken
            if taken == 0:
                await self._wait()
                self._check_open("send_many()")

    def _batch(self, messages: object) -> list[bytes]:
        if isinstance(messages, (bytes, bytearray, memoryview, str)) or not isinstance(messages, Iterable):
            kind = type(messages).__name__
            raise TypeError(f"messages must be an iterable of bytes-like objects, not {kind}")
        limit = self._native.max_message_size
        payloads = []
        for i, item in enumerate(messages):
            if isinstance(item, bytes):
                payload = item
            elif isinstance(item, (bytearray, memoryview)):
                payload = bytes(item)
            else:
                raise TypeError(f"messages[{i}] must be bytes-like, not {type(item).__name__}")
            if not payload:
                raise ValueError(f"messages[{i}] is empty; DTLS 1.2 cannot carry an empty message")
            if len(payload) > limit:
                raise MessageTooLarge(f"messages[{i}] is {len(payload)} bytes; max_message_size is {limit}")
            payloads.append(payload)
        if not payloads:
            raise ValueError("send_many() needs at least one message")
        return payloads

    async def recv_many(self, max_messages: int = DEFAULT_RECV_MANY) -> list[bytes]:
        """Between 1 and ``max_messages`` messages, oldest first: waits for the first, then
        takes whatever else is already queued. Raises ``ConnectionClosed`` like ``recv()``;
        cancelling it loses no message."""
        limit = _integer("max_messages", max_messages, 1, MAX_RECEIVE_QUEUE_SIZE)
        self._no_channels("recv_many()")
        self._check_open("recv_many()")
        while True:
            batch = self._native.try_recv_many(limit)
            if batch is not None:
                return batch
            await self._wait()
            self._check_open("recv_many()")

    async def recv(self) -> bytes:
        """The next message. Raises ``ConnectionClosed`` once the peer has closed and every
        message received before that has been returned. Cancelling it loses no message."""
        self._no_channels("recv()")
        self._check_open("recv()")
        while True:
            message = self._native.try_recv()
            if message is not None:
                return message
            await self._wait()
            self._check_open("recv()")

    async def close(self) -> None:
        """Sends close_notify and releases the socket. Idempotent. With data channels it first
        waits (at most 2 s) until the peer has acknowledged every message sent, so none is
        lost by closing."""
        if self._channels is not None and not self._closed and self._native.is_established:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CHANNEL_SHUTDOWN_TIMEOUT
            while not self._native.channels_flushed() and loop.time() < deadline:
                try:
                    await asyncio.wait_for(self._wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
        self.close_nowait()

    def close_nowait(self) -> None:
        """``close()`` for code that cannot await (e.g. finalisers)."""
        if self._closed:
            return
        self._closed = True
        if self._unwatch is not None:
            self._unwatch()
        self._native.close()
        self._stop_waking()

    async def __aenter__(self) -> DTLSPeerConnection:
        try:
            await self.handshake()
        except BaseException:
            self.close_nowait()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return

    # -- properties ----------------------------------------------------------------------

    @property
    def peer_node_id(self) -> str | None:
        """The verified peer's node ID under this side's ``identity.node_id_scheme``, once the
        handshake has completed."""
        return self._native.peer_node_id

    @property
    def peer_public_key(self) -> bytes | None:
        """The verified peer's node key (DER SubjectPublicKeyInfo), once the handshake has
        completed: the key its node ID was computed from, which is not the DTLS certificate's
        key when the peer's certificate carries a node key endorsement (libp2p extension)."""
        return self._native.peer_public_key

    @property
    def peer_certificate(self) -> bytes | None:
        """The peer's certificate (DER), once the handshake has completed."""
        return self._native.peer_certificate

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite (OpenSSL name), while established."""
        return self._native.cipher

    @property
    def protocol_version(self) -> str | None:
        """``"DTLSv1.2"`` while established."""
        return self._native.protocol_version

    @property
    def role(self) -> str:
        """``"client"`` or ``"server"`` (``"auto"`` resolved)."""
        return self._native.role

    @property
    def local_address(self) -> tuple[str, int]:
        return self._native.local_address

    @property
    def remote_address(self) -> tuple[str, int]:
        return self._native.remote_address

    @property
    def max_message_size(self) -> int:
        """The largest message ``send()`` accepts: MTU minus the largest record overhead."""
        return self._native.max_message_size

    @property
    def is_established(self) -> bool:
        return not self._closed and self._native.is_established

    @property
    def state(self) -> str:
        """``"new"``, ``"handshaking"``, ``"established"``, ``"failed"`` (the handshake failed)
        or ``"closed"`` (by either side, or with ``close()`` whatever came before)."""
        return "closed" if self._closed else self._native.state

    def stats(self) -> dict[str, Any]:
        """Counters: datagrams/bytes in and out, messages, retransmissions, handshake
        duration, and datagrams dropped by reason (under ``"dropped"``)."""
        return self._native.stats()

    def __repr__(self) -> str:
        if not hasattr(self, "_closed"):
            return "<DTLSPeerConnection (not constructed)>"
        local, remote = _events.address(self.local_address), _events.address(self.remote_address)
        return f"<DTLSPeerConnection {self.role} {local} -> {remote} {self.state} peer={self.peer_node_id}>"


def _on_readable(ref: weakref.ref[DTLSPeerConnection]) -> None:
    conn = ref()
    if conn is not None and conn._native.receive_now():
        conn._wake()
        # The session ended: stop reading, or this connection would keep taking datagrams
        # meant for a new one on the same socket (what was received stays readable).
        if not conn._native.is_established and conn._unwatch is not None:
            conn._unwatch()


def _remove_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    if not loop.is_closed():
        loop.remove_reader(fd)


__all__ = ["DTLSError", "DTLSPeerConnection"]
