"""dtls_peer: turn a hole-punched UDP socket into a pinned, encrypted DTLS 1.2 channel."""

from __future__ import annotations

from ._native import Identity, node_id_from_certificate
from .channel import DataChannel
from .connection import DTLSPeerConnection
from .endpoint import DTLSEndpoint
from .exceptions import (
    ChannelClosed,
    ConnectionClosed,
    DTLSError,
    EndpointClosed,
    HandshakeError,
    HandshakeTimeout,
    MessageTooLarge,
    PeerVerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "ChannelClosed",
    "ConnectionClosed",
    "DTLSEndpoint",
    "DTLSError",
    "DTLSPeerConnection",
    "DataChannel",
    "EndpointClosed",
    "HandshakeError",
    "HandshakeTimeout",
    "Identity",
    "MessageTooLarge",
    "PeerVerificationError",
    "__version__",
    "node_id_from_certificate",
]
