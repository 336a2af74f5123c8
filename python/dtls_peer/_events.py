"""Connection events for Python's ``logging``, under the ``dtls_peer`` logger.

Records are emitted on the event-loop thread, when the connection sees a change (after a
wake-up from the I/O thread, or on a call from the application); the I/O thread never takes
the GIL. Messages carry addresses, roles, node IDs (public), ciphers and reasons: never keys
and never message contents.
"""

from __future__ import annotations

import logging

from . import _native

logger = logging.getLogger("dtls_peer")


class EventLog:
    """Logs each change of one connection's state once, and handshake retransmissions."""

    __slots__ = ("_native", "_retransmissions", "_state")

    def __init__(self, native: _native.Connection) -> None:
        self._native = native
        self._state = "new"
        self._retransmissions = 0

    def observe(self) -> None:
        state = self._native.state
        if state == self._state:
            if state == "handshaking" and logger.isEnabledFor(logging.DEBUG):
                self._retransmitted()
            return
        previous, self._state = self._state, state
        if not logger.isEnabledFor(logging.INFO):
            return
        native = self._native
        peer = address(native.remote_address)
        if previous == "new" and state != "new":
            logger.debug("handshake with %s started (%s)", peer, native.role)
        if state == "established":
            self._retransmitted()
            took = native.stats()["handshake_duration"] or 0.0
            logger.info(
                "handshake with %s done in %.1f ms: %s %s, peer node ID %s",
                peer,
                took * 1000,
                native.protocol_version,
                native.cipher,
                native.peer_node_id,
            )
        elif state == "failed":
            logger.info("handshake with %s failed: %s", peer, native.end_reason)
        elif state == "closed":
            logger.info("connection to %s closed: %s", peer, native.end_reason)

    def _retransmitted(self) -> None:
        count = self._native.stats()["retransmissions"]
        if count > self._retransmissions:
            self._retransmissions = count
            logger.debug(
                "handshake with %s: flight retransmitted (%d so far)",
                address(self._native.remote_address),
                count,
            )


def address(pair: tuple[str, int]) -> str:
    """``host:port``, with IPv6 hosts in brackets."""
    host, port = pair
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
