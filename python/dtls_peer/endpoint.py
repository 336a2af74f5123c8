"""DTLSEndpoint: many pinned DTLS peers, and the application's own datagrams, on one UDP socket."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Literal, Union

from . import _native, _wake
from .connection import (
    DEFAULT_CHANNEL_HIGH_WATER,
    DEFAULT_MAX_CHANNEL_MESSAGE_SIZE,
    DEFAULT_RECEIVE_QUEUE_SIZE,
    MAX_MTU,
    MAX_RECEIVE_QUEUE_SIZE,
    MIN_MTU,
    BytesLike,
    DTLSPeerConnection,
    SocketLike,
    _channel_sizes,
    _ciphers,
    _integer,
    _number,
    _parse_remote,
    _take_socket,
)
from .exceptions import DTLSError, EndpointClosed

AllowPolicy = Union[frozenset[str], set[str], list[str], tuple[str, ...], Callable[[str], bool], None]

# Bounds on the table sizes: generous, but no value that could not be meant.
MAX_TABLE_SIZE = 1 << 20


def _v6only(fd: int) -> bool:
    """Whether ``fd`` is an IPv6 socket that cannot reach IPv4 peers (IPV6_V6ONLY)."""
    try:
        probe = socket.socket(fileno=fd)
    except OSError:
        return False  # not a socket: the native constructor says so
    try:
        return probe.family == socket.AF_INET6 and bool(
            probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        )
    finally:
        probe.detach()


class DTLSEndpoint(_wake.Waiting):
    """Many authenticated, encrypted DTLS 1.2 peers on one UDP socket (one NAT mapping).

    ``sock`` is the application's UDP socket, as for ``DTLSPeerConnection``: bound, not
    connected; the endpoint works on its own duplicate of the descriptor. ``allow`` decides
    which peers ``accept()`` returns: a set (or list, tuple) of node IDs, a
    ``callable(node_id) -> bool``, or ``None`` for any verified peer (explicit, like
    ``expected_node_id=None``). ``connect()`` pins each peer it dials with its own
    ``expected_node_id`` instead. The per-peer options (``mtu``, timeouts, ``ciphers``,
    ``receive_queue_size``, ``keepalive_interval``, ``idle_timeout``) are
    ``DTLSPeerConnection``'s and apply to every peer. At most ``max_pending_handshakes``
    incoming handshakes run at once and ``max_connections`` peers live at once;
    ``accept_backlog`` established peers wait for ``accept()``; ``datagram_queue_size``
    datagrams that are not DTLS wait for ``recv_datagram()``. Beyond any bound, new datagrams
    are dropped and counted in ``stats()``. ``require_cookie`` answers a ClientHello from an
    unknown address with a stateless cookie challenge (RFC 6347 §4.2.1). ``channels=True``
    (with ``max_channel_message_size`` and ``channel_high_water``) gives every peer data
    channels, as for ``DTLSPeerConnection``; ``accept()`` returns a peer once its DTLS
    handshake is done, and its ``create_channel()``/``accept_channel()`` wait for the
    channels' association.
    """

    def __init__(
        self,
        sock: SocketLike,
        identity: _native.Identity,
        *,
        allow: AllowPolicy,
        mtu: int = 1200,
        handshake_timeout: float = 10.0,
        initial_retransmit_timeout: float = 0.25,
        ciphers: str | Sequence[str] | None = None,
        receive_queue_size: int = DEFAULT_RECEIVE_QUEUE_SIZE,
        keepalive_interval: float | None = None,
        idle_timeout: float | None = None,
        max_pending_handshakes: int = 256,
        max_connections: int = 4096,
        accept_backlog: int = 128,
        datagram_queue_size: int = 1024,
        require_cookie: bool = True,
        allow_migration: bool = False,
        channels: bool = False,
        max_channel_message_size: int = DEFAULT_MAX_CHANNEL_MESSAGE_SIZE,
        channel_high_water: int = DEFAULT_CHANNEL_HIGH_WATER,
    ) -> None:
        if not isinstance(identity, _native.Identity):
            raise TypeError(f"identity must be a dtls_peer.Identity, not {type(identity).__name__}")
        suites = _ciphers(ciphers)
        mtu = _integer("mtu", mtu, MIN_MTU, MAX_MTU, " bytes")
        queue_size = _integer("receive_queue_size", receive_queue_size, 1, MAX_RECEIVE_QUEUE_SIZE)
        keepalive = None if keepalive_interval is None else _number("keepalive_interval", keepalive_interval)
        idle = None if idle_timeout is None else _number("idle_timeout", idle_timeout)
        timeout = _number("handshake_timeout", handshake_timeout)
        rto = _number("initial_retransmit_timeout", initial_retransmit_timeout)
        pending = _integer("max_pending_handshakes", max_pending_handshakes, 1, MAX_TABLE_SIZE)
        connections = _integer("max_connections", max_connections, 1, MAX_TABLE_SIZE)
        backlog = _integer("accept_backlog", accept_backlog, 1, MAX_TABLE_SIZE)
        datagrams = _integer("datagram_queue_size", datagram_queue_size, 1, MAX_RECEIVE_QUEUE_SIZE)
        for name, flag in (("require_cookie", require_cookie), ("allow_migration", allow_migration)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
        self._channels = _channel_sizes(channels, max_channel_message_size, channel_high_water)
        self._handshake_timeout = timeout
        fd = _take_socket(sock)
        self._v6only = _v6only(fd)
        # The native constructor owns `fd` from its first line, even when it raises.
        self._native = _native.Endpoint(
            fd,
            identity,
            allow,
            mtu,
            timeout,
            rto,
            suites,
            queue_size,
            keepalive,
            idle,
            pending,
            connections,
            backlog,
            datagrams,
            require_cookie,
            allow_migration,
            self._channels,
        )
        self._identity = identity
        self._init_waiting(self._native)
        self._closed = False

    # -- waiting -----------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise EndpointClosed(f"{what}: the endpoint was closed with close()")

    def _reachable(self, addr: object) -> tuple[str, int]:
        host, port = _parse_remote(addr)
        # The native side refuses IPv6 on an IPv4 socket; an IPv6-only socket cannot reach
        # IPv4 either, which only the socket option tells.
        if self._v6only and ipaddress.ip_address(host).version == 4:
            raise ValueError(f"remote address {host} is IPv4 but the socket is IPv6-only (IPV6_V6ONLY)")
        return host, port

    # -- peers ---------------------------------------------------------------------------

    async def connect(
        self,
        remote_addr: tuple[str, int],
        *,
        expected_node_id: str | None,
        role: Literal["auto", "client", "server"] = "client",
    ) -> DTLSPeerConnection:
        """Dials ``remote_addr`` from the endpoint's socket and returns the established
        connection. ``role="server"`` waits for that peer's ClientHello instead (through the
        same stateless cookie exchange, pinned to ``expected_node_id``); ``"auto"`` makes the
        smaller node ID the client and needs ``expected_node_id``.
        Raises ``HandshakeTimeout``, ``PeerVerificationError`` or ``HandshakeError`` as
        ``DTLSPeerConnection.handshake()`` does; ``ValueError`` for an address that is not an
        IP literal, port 0, a family the socket cannot reach, or an address that already has a
        connection; ``DTLSError`` at ``max_connections``; ``EndpointClosed`` once closed."""
        host, port = self._reachable(remote_addr)
        if expected_node_id is not None and not isinstance(expected_node_id, str):
            raise TypeError(f"expected_node_id must be str or None, not {type(expected_node_id).__name__}")
        resolved_role = DTLSPeerConnection._resolve_role(role, self._identity, expected_node_id)
        self._check_open("connect()")
        native = self._native.connect(host, port, expected_node_id, resolved_role)
        conn = DTLSPeerConnection._adopt(native, self._channels, self._handshake_timeout)
        try:
            await conn.handshake()
        except DTLSError as e:
            conn.close_nowait()
            if self._native.is_closed:
                raise EndpointClosed("connect(): the endpoint was closed during the handshake") from e
            raise
        except BaseException:
            conn.close_nowait()
            raise
        return conn

    async def accept(self) -> DTLSPeerConnection:
        """The next verified, allowed peer that dialled this endpoint, established. Raises
        ``EndpointClosed`` once the endpoint is closed."""
        while True:
            self._check_open("accept()")
            native = self._native.try_accept()
            if native is not None:
                conn = DTLSPeerConnection._adopt(native, self._channels, self._handshake_timeout)
                # A backlog of hundreds of peers is taken one loop turn each, so that
                # `async for conn in ep` does not hold the event loop for all of them at once.
                await asyncio.sleep(0)
                return conn
            await self._wait()

    def __aiter__(self) -> AsyncIterator[DTLSPeerConnection]:
        return self._connections()

    async def _connections(self) -> AsyncIterator[DTLSPeerConnection]:
        while True:
            try:
                yield await self.accept()
            except EndpointClosed:
                return

    # -- the application's own datagrams -------------------------------------------------

    async def recv_datagram(self) -> tuple[bytes, tuple[str, int]]:
        """The next datagram that was not DTLS (a hole-punch probe, STUN, ...) and its source."""
        while True:
            self._check_open("recv_datagram()")
            got = self._native.try_recv_datagram()
            if got is not None:
                return got
            await self._wait()

    async def send_datagram(self, data: BytesLike, addr: tuple[str, int]) -> None:
        """Sends ``data`` as one plaintext UDP datagram from the endpoint's socket. ``ValueError``
        if it is empty, over 65507 bytes, or starts with a byte in 20..=63 (RFC 7983's DTLS
        range: the peer would take it for DTLS)."""
        if isinstance(data, bytes):
            payload = data
        elif isinstance(data, (bytearray, memoryview)):
            payload = bytes(data)
        else:
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        host, port = self._reachable(addr)
        self._check_open("send_datagram()")
        while not self._native.send_datagram(payload, host, port):
            await self._wait()
            self._check_open("send_datagram()")

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Ends every connection (close_notify) and releases the socket. Pending ``accept()``,
        ``recv_datagram()`` and ``connect()`` raise ``EndpointClosed``. Idempotent."""
        self.close_nowait()

    def close_nowait(self) -> None:
        """``close()`` for code that cannot await."""
        if self._closed:
            return
        self._closed = True
        self._native.close()
        self._stop_waking()

    async def __aenter__(self) -> DTLSEndpoint:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- properties ----------------------------------------------------------------------

    @property
    def local_address(self) -> tuple[str, int]:
        return self._native.local_address

    @property
    def connections(self) -> int:
        """Connections handshaking or established now."""
        return self._native.connections

    def stats(self) -> dict[str, Any]:
        """The endpoint's counters (each connection has its own ``stats()``); dropped
        datagrams by reason under ``"dropped"``."""
        return self._native.stats()

    def __repr__(self) -> str:
        if not hasattr(self, "_closed"):
            return "<DTLSEndpoint (not constructed)>"
        host, port = self.local_address
        state = "closed" if self._closed else f"{self.connections} connections"
        return f"<DTLSEndpoint {host}:{port} {state}>"


__all__ = ["AllowPolicy", "DTLSEndpoint"]
