"""aiortc's SCTP (``RTCSctpTransport``, hence ``RTCDataChannel``) over a dtls_peer datagram
connection: the interop peer of the channel tests and the baseline of ``python -m bench.channels``;
and aiortc's whole data path (its own DTLS too) on a UDP socket, ``open_aiortc_dtls``.

``RTCSctpTransport`` uses little of the ``RTCDtlsTransport`` it is given (aiortc 1.16,
rtcsctptransport.py): ``state`` (refused if "closed"), ``_role`` (RFC 8832: the DTLS server
takes odd stream IDs), ``_register_data_receiver``/``_unregister_data_receiver`` (it then
gets each decrypted datagram through ``await receiver._handle_data(data)``) and
``await _send_data(packet)`` (one SCTP packet per DTLS record; ``ConnectionError`` once
closed). ``DatagramLink`` provides exactly those over a handshaken ``DTLSPeerConnection``
made without channels.

aiortc sizes its DATA chunks for 1,189-byte SCTP packets, which do not fit one record at
dtls_peer's default mtu of 1200 (``max_message_size`` 1,163). The chunk size is a module
constant that aiortc reads at each use, so ``open_sctp`` lowers it to fit (``fit_chunks``);
it never raises it, so several links in one process all fit. A packet that still does not
fit is dropped and counted, as a path with a smaller MTU would drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from typing import Any, Protocol, Union

from aiortc import (
    RTCCertificate,
    RTCDataChannel,
    RTCDataChannelParameters,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    rtcsctptransport,
)
from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport
from cryptography.hazmat.primitives.serialization import Encoding
from dtls_peer import ConnectionClosed, DTLSPeerConnection, MessageTooLarge

# SCTP common header (12 bytes) and DATA chunk header (16) around a chunk's user data (RFC 4960).
_PACKET_OVERHEAD = 12 + 16
# Datagrams taken from the connection per wake-up of the reader.
_READ_BATCH = 256


class _Receiver(Protocol):
    async def _handle_data(self, data: bytes) -> None: ...


class _IceRole:
    def __init__(self, role: str) -> None:
        self.role = role


def fit_chunks(max_message_size: int) -> None:
    """Lowers aiortc's DATA chunk size so that a full packet fits ``max_message_size``
    (chunks are padded to 4 bytes, so the size is rounded down to a multiple of 4)."""
    fitting = (max_message_size - _PACKET_OVERHEAD) // 4 * 4
    rtcsctptransport.USERDATA_MAX_LENGTH = min(rtcsctptransport.USERDATA_MAX_LENGTH, fitting)


class DatagramLink:
    """Stands in for aiortc's ``RTCDtlsTransport`` under one ``RTCSctpTransport``."""

    def __init__(self, conn: DTLSPeerConnection) -> None:
        if not conn.is_established:
            raise ValueError("the connection must be handshaken before SCTP runs over it")
        self.conn = conn
        self._role = conn.role
        # Older aiortc releases took the SCTP role from the ICE role (the controlled side was
        # the SCTP server); this answers that question the same way as ``_role``.
        self.transport = _IceRole("controlled" if conn.role == "server" else "controlling")
        self.state = "connected"
        self.dropped_too_large = 0
        self._receiver: _Receiver | None = None
        self._reader: asyncio.Task[None] | None = None

    def _register_data_receiver(self, receiver: _Receiver) -> None:
        assert self._receiver is None, "one SCTP transport per link"
        self._receiver = receiver
        self._reader = asyncio.ensure_future(self._read())

    def _unregister_data_receiver(self, receiver: _Receiver) -> None:
        if self._receiver is receiver:
            self._receiver = None
            if self._reader is not None:
                self._reader.cancel()

    async def _send_data(self, data: bytes) -> None:
        if self.state != "connected":
            raise ConnectionError("the dtls_peer connection is closed")
        try:
            await self.conn.send(data)
        except MessageTooLarge:
            self.dropped_too_large += 1
        except ConnectionClosed as e:
            self.state = "closed"
            raise ConnectionError(str(e)) from e

    async def _read(self) -> None:
        try:
            while self._receiver is not None:
                for datagram in await self.conn.recv_many(_READ_BATCH):
                    if self._receiver is None:
                        return
                    await self._receiver._handle_data(datagram)
        except ConnectionClosed:
            self.state = "closed"
            # RTCDtlsTransport does not tell its SCTP transport either; closing the
            # association here lets its channels see the end instead of waiting forever.
            receiver = self._receiver
            if isinstance(receiver, RTCSctpTransport):
                receiver._set_state(RTCSctpTransport.State.CLOSED)


async def open_sctp(
    conn: DTLSPeerConnection, port: int = 5000, peer_max_message_size: int | None = None
) -> RTCSctpTransport:
    """Starts an aiortc SCTP association over ``conn`` (both sides call this; RFC 8841
    lets both send INIT). Returns at once; ``wait_connected`` waits for the association.

    ``peer_max_message_size`` is what the peer is taken to accept (SDP's max-message-size);
    by default aiortc's own 256 KiB. aiortc refuses to send a larger message, but reassembles
    any size it receives, so an aiortc peer given a larger figure takes larger messages."""
    fit_chunks(conn.max_message_size)
    return await start_sctp(DatagramLink(conn), port, peer_max_message_size)


async def start_sctp(
    transport: DatagramLink | RTCDtlsTransport, port: int = 5000, peer_max_message_size: int | None = None
) -> RTCSctpTransport:
    """aiortc's SCTP over ``transport`` (a ``DatagramLink`` or aiortc's own DTLS transport)."""
    if peer_max_message_size is None:
        capabilities = RTCSctpTransport.getCapabilities()
    else:
        capabilities = RTCSctpCapabilities(maxMessageSize=peer_max_message_size)
    sctp = RTCSctpTransport(transport, port=port)  # type: ignore[arg-type]
    await sctp.start(capabilities, port)
    return sctp


async def wait_connected(sctp: RTCSctpTransport, timeout: float) -> None:
    """Waits until the association is established; ``TimeoutError`` after ``timeout`` seconds.
    (RTCSctpTransport emits no event when it connects, so this polls.)"""
    interval = 0.005
    for _ in range(int(timeout / interval) + 1):
        if sctp.state == "connected":
            return
        if sctp.state == "closed":
            raise ConnectionError("the SCTP association closed before it was established")
        await asyncio.sleep(interval)
    raise TimeoutError(f"no SCTP association within {timeout} s")


async def close_sctp(sctp: RTCSctpTransport) -> None:
    """Stops the association (an ABORT to the peer if it is still up)."""
    with contextlib.suppress(ConnectionError):
        await sctp.stop()


def link_of(sctp: RTCSctpTransport) -> DatagramLink:
    link: Any = sctp.transport
    assert isinstance(link, DatagramLink)
    return link


Message = Union[bytes, str]
# What QueuedChannel.recv() returns once the channel has closed.
_CLOSED = object()


class QueuedChannel:
    """An aiortc data channel with awaitable reads and a bounded send buffer, the shape the
    tests and the benchmark use on both stacks. aiortc delivers messages as events and lets
    ``send()`` buffer without limit; this queues the former and bounds the latter."""

    def __init__(self, channel: RTCDataChannel, high_water: int = 1 << 20) -> None:
        self.channel = channel
        self.high_water = high_water
        self._messages: asyncio.Queue[object] = asyncio.Queue()
        self._opened = asyncio.Event()
        self._drained = asyncio.Event()
        channel.bufferedAmountLowThreshold = high_water // 2
        channel.on("message", self._messages.put_nowait)
        channel.on("open", self._opened.set)
        channel.on("close", lambda: self._messages.put_nowait(_CLOSED))
        channel.on("bufferedamountlow", self._drained.set)
        if channel.readyState == "open":
            self._opened.set()

    async def wait_open(self, timeout: float) -> None:
        await asyncio.wait_for(self._opened.wait(), timeout)

    async def send(self, data: Message) -> None:
        """Sends one message; first waits while more than ``high_water`` bytes are queued."""
        while self.channel.bufferedAmount > self.high_water:
            self._drained.clear()
            await self._drained.wait()
        self.channel.send(data)

    async def recv(self) -> Message:
        """The next message; ``ConnectionError`` once the channel has closed."""
        message = await self._messages.get()
        if message is _CLOSED:
            self._messages.put_nowait(_CLOSED)
            raise ConnectionError(f"aiortc channel {self.channel.label!r} closed")
        assert isinstance(message, (bytes, str))
        return message

    def close(self) -> None:
        self.channel.close()


def create_channel(sctp: RTCSctpTransport, label: str, **parameters: Any) -> QueuedChannel:
    """Opens a channel from the aiortc side (DCEP DATA_CHANNEL_OPEN is sent at once, or when
    the association comes up)."""
    return QueuedChannel(RTCDataChannel(sctp, RTCDataChannelParameters(label=label, **parameters)))


class ChannelAcceptor:
    """Collects the channels the peer opens to an aiortc SCTP transport."""

    def __init__(self, sctp: RTCSctpTransport) -> None:
        self._channels: asyncio.Queue[QueuedChannel] = asyncio.Queue()
        sctp.on("datachannel", lambda channel: self._channels.put_nowait(QueuedChannel(channel)))

    async def accept(self, timeout: float) -> QueuedChannel:
        return await asyncio.wait_for(self._channels.get(), timeout)


class _UdpPath(asyncio.DatagramProtocol):
    """Stands in for aiortc's ``RTCIceTransport`` under an ``RTCDtlsTransport``, which uses
    its ``role`` (the ICE controlling side is the DTLS server), ``_send`` and ``_recv``
    (``ConnectionError`` once closed): datagrams to and from one peer on a UDP socket."""

    def __init__(self, dtls_role: str) -> None:
        self.role = "controlling" if dtls_role == "server" else "controlled"
        self._datagrams: asyncio.Queue[bytes | None] = asyncio.Queue()
        # asyncio's selector datagram transport does not subclass DatagramTransport.
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._datagrams.put_nowait(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._datagrams.put_nowait(None)

    async def _send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("the UDP path is closed")
        self._transport.sendto(data)

    async def _recv(self) -> bytes:
        data = await self._datagrams.get()
        if data is None:
            self._datagrams.put_nowait(None)
            raise ConnectionError("the UDP path is closed")
        return data

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class AiortcDtls:
    """aiortc's own DTLS transport on a UDP socket, with its certificate; ``start`` runs the
    handshake against a peer pinned by its certificate's SHA-256 fingerprint."""

    def __init__(self, path: _UdpPath, dtls: RTCDtlsTransport, certificate: RTCCertificate) -> None:
        self.path = path
        self.dtls = dtls
        self.certificate_der = certificate._cert.public_bytes(Encoding.DER)

    async def start(self, peer_certificate_der: bytes) -> None:
        digest = hashlib.sha256(peer_certificate_der).hexdigest().upper()
        value = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
        await self.dtls.start(RTCDtlsParameters(fingerprints=[RTCDtlsFingerprint("sha-256", value)]))
        if self.dtls.state != "connected":
            raise ConnectionError(f"aiortc's DTLS handshake ended {self.dtls.state}")

    async def stop(self) -> None:
        await self.dtls.stop()
        self.path.close()


async def open_aiortc_dtls(sock: socket.socket, peer: tuple[str, int], dtls_role: str) -> AiortcDtls:
    """aiortc's ``RTCDtlsTransport`` (pyOpenSSL, its own certificate) talking to ``peer`` from
    ``sock``, in ``dtls_role``; not started. aiortc also requires an SRTP profile from the
    handshake, which a data-only peer (dtls_peer) does not negotiate: that step is skipped."""
    sock.connect(peer)
    sock.setblocking(False)
    _, path = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _UdpPath(dtls_role), sock=sock
    )
    certificate = RTCCertificate.generateCertificate()
    dtls = RTCDtlsTransport(path, [certificate])  # type: ignore[arg-type]
    dtls._set_role(dtls_role)
    dtls._setup_srtp = lambda: None  # type: ignore[method-assign]
    return AiortcDtls(path, dtls, certificate)
