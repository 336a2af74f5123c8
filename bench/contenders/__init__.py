"""The contenders: each turns a bound UDP socket and the peer's address into an ``Endpoint``.

All speak the same small async API, so every workload is written once (bench/workloads.py)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable, Protocol


class Endpoint(Protocol):
    async def handshake(self) -> None: ...
    async def send(self, data: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    async def send_many(self, messages: list[bytes]) -> None: ...
    async def recv_many(self, max_messages: int) -> list[bytes]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Keys:
    """One side's certificate and key (PEM files, ECDSA P-256) and the peer's pinned node ID."""

    cert_path: str
    key_path: str
    node_id: str
    peer_node_id: str


Factory = Callable[[socket.socket, "tuple[str, int]", str, Keys], Awaitable[Endpoint]]

CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
# Room for the 1,200-byte workload plus DTLS record overhead, for every DTLS contender.
MTU = 1400


def factories() -> dict[str, Factory]:
    """Every contender by name; imported lazily so a missing optional package names itself."""
    from . import dtls_peer_endpoint, plain_udp, pyopenssl_executor, pyopenssl_membio

    return {
        "plain_udp": plain_udp.make,
        "pyopenssl_executor": pyopenssl_executor.make,
        "pyopenssl_membio": pyopenssl_membio.make,
        "dtls_peer": dtls_peer_endpoint.make,
        "dtls_peer_batch": dtls_peer_endpoint.make,
    }
