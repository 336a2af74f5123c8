"""DataChannel: one WebRTC data channel (SCTP over the pinned DTLS session, RFC 8831/8832)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Union

from .exceptions import ChannelClosed, MessageTooLarge

if TYPE_CHECKING:
    from .connection import DTLSPeerConnection

Payload = Union[bytes, bytearray, memoryview, str]


def _payload(data: object) -> tuple[bytes, bool]:
    """The message's bytes and whether it is text (a ``str`` travels as UTF-8 text)."""
    if isinstance(data, str):
        return data.encode("utf-8"), True
    if isinstance(data, bytes):
        return data, False
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data), False
    raise TypeError(f"data must be bytes-like or str, not {type(data).__name__}")


class DataChannel:
    """A channel of a ``DTLSPeerConnection`` made with ``channels=True``: messages of any size
    up to the connection's ``max_channel_message_size``, delivered whole, and (unless opened
    with ``ordered=False`` or partial reliability) reliably and in order.

    Made by ``create_channel()`` or ``accept_channel()``, not directly."""

    def __init__(self, connection: DTLSPeerConnection, channel_id: int) -> None:
        self._conn = connection
        self._native = connection._native
        self._id = channel_id
        info = self._native.channel_info(channel_id)
        if info is None:
            raise ChannelClosed(f"channel {channel_id} is gone")
        self._label, self._protocol, self._ordered, self._max_retransmits, lifetime_ms = info
        self._max_lifetime = None if lifetime_ms is None else lifetime_ms / 1000

    async def send(self, data: Payload) -> None:
        """Sends one message: ``bytes``-like as binary, ``str`` as text. Waits while more than
        the connection's ``channel_high_water`` bytes are buffered on this channel, so a fast
        sender cannot grow memory without bound. Raises ``MessageTooLarge`` (nothing sent)
        above ``max_channel_message_size``, ``ChannelClosed`` once the channel is closed.
        Cancelling it while it waits sends nothing."""
        payload, text = _payload(data)
        limit = self._conn.max_channel_message_size
        if len(payload) > limit:
            raise MessageTooLarge(
                f"a message of {len(payload)} bytes exceeds max_channel_message_size ({limit})"
            )
        while not self._native.channel_send(self._id, payload, text):
            await self._conn._wait()

    async def recv(self) -> bytes | str:
        """The next message: ``bytes``, or ``str`` for a text message. Raises
        ``ChannelClosed`` once the channel is closed and every message received before that
        has been returned. Cancelling it loses no message."""
        while True:
            message = self._native.channel_recv(self._id)
            if message is not None:
                return message
            await self._conn._wait()

    async def close(self) -> None:
        """Closes the channel on both sides (an SCTP stream reset); messages already sent
        are delivered first. Idempotent."""
        self._native.close_channel(self._id)

    def __aiter__(self) -> AsyncIterator[bytes | str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[bytes | str]:
        while True:
            try:
                yield await self.recv()
            except ChannelClosed:
                return

    @property
    def id(self) -> int:
        """The SCTP stream id: even for channels the DTLS client opened, odd for the server's."""
        return self._id

    @property
    def label(self) -> str:
        return self._label

    @property
    def protocol(self) -> str:
        """The sub-protocol named when it was opened (``""`` for none)."""
        return self._protocol

    @property
    def ordered(self) -> bool:
        return self._ordered

    @property
    def max_retransmits(self) -> int | None:
        return self._max_retransmits

    @property
    def max_lifetime(self) -> float | None:
        """Seconds after which an unsent or unacknowledged message is given up, or None."""
        return self._max_lifetime

    @property
    def buffered_amount(self) -> int:
        """Bytes sent on this channel and not yet acknowledged by the peer."""
        return self._native.buffered_amount(self._id)

    def __repr__(self) -> str:
        return f"<DataChannel {self._id} {self._label!r} ordered={self._ordered}>"


__all__ = ["DataChannel"]
