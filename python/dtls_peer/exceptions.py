"""Exceptions raised by dtls_peer; the native module raises these same classes."""

from __future__ import annotations


class DTLSError(Exception):
    """Base class for every dtls_peer error about a connection."""


class HandshakeError(DTLSError):
    """The handshake did not produce a verified session; fall back (e.g. to a relay)."""


class HandshakeTimeout(HandshakeError, TimeoutError):
    """No verified session within ``handshake_timeout``."""


class PeerVerificationError(HandshakeError):
    """The peer's certificate was refused: wrong node ID, wrong key type or bad signature.

    ``expected_node_id`` and ``actual_node_id`` are set when the node IDs differed.
    """

    def __init__(
        self, message: str, expected_node_id: str | None = None, actual_node_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.expected_node_id = expected_node_id
        self.actual_node_id = actual_node_id


class ConnectionClosed(DTLSError):
    """The session ended (close_notify, close(), or a fatal error); no message will arrive."""


class MessageTooLarge(DTLSError, ValueError):
    """A message larger than ``max_message_size`` (one datagram) was passed to send()."""


class ChannelClosed(DTLSError):
    """The data channel was closed (by either side); nothing more can be sent on it, and
    ``recv()`` raises this once every message received before the close was returned."""


class EndpointClosed(DTLSError):
    """The DTLSEndpoint was closed: accept(), connect(), recv_datagram() and send_datagram()
    raise this from then on (its connections raise ConnectionClosed)."""
