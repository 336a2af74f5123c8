"""pyOpenSSL DTLS with memory BIOs on the event loop (the aiortc pattern): datagrams from a
DatagramProtocol go into the incoming BIO, records come out of the outgoing BIO to sendto,
and the DTLS retransmission timer is a loop timer."""

from __future__ import annotations

import asyncio
import collections
import socket

from OpenSSL import SSL

from . import Endpoint, Keys
from .pyopenssl_common import connection

# Larger than any datagram here; aiortc reads with 1,500.
BUFFER = 2048


class MemoryBioDtls(asyncio.DatagramProtocol):
    def __init__(self, conn: SSL.Connection) -> None:
        self.conn = conn
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.established = False
        self.timer: asyncio.TimerHandle | None = None

    # -- transport side
    def datagram_received(self, data: bytes, addr: object) -> None:
        self.conn.bio_write(data)
        if not self.established:
            self._drive_handshake()
        else:
            try:
                while True:
                    self.queue.append(self.conn.recv(BUFFER))
            except SSL.WantReadError:
                pass
            self._flush()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _flush(self) -> None:
        assert self.transport is not None
        while True:
            try:
                data = self.conn.bio_read(BUFFER)
            except SSL.WantReadError:
                return
            self.transport.sendto(data)

    def _drive_handshake(self) -> None:
        try:
            self.conn.do_handshake()
            self.established = True
        except SSL.WantReadError:
            pass
        self._flush()
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        timeout = self.conn.DTLSv1_get_timeout()
        if timeout is not None and not self.established:
            self.timer = asyncio.get_running_loop().call_later(timeout, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.conn.DTLSv1_handle_timeout()
        self._flush()
        self._arm_timer()

    # -- application side
    async def handshake(self) -> None:
        self._drive_handshake()
        while not self.established:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    async def send(self, data: bytes) -> None:
        self.conn.send(data)
        self._flush()

    async def send_many(self, messages: list[bytes]) -> None:
        for m in messages:
            self.conn.send(m)
            self._flush()

    async def recv(self) -> bytes:
        while not self.queue:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.queue.popleft()

    async def recv_many(self, max_messages: int) -> list[bytes]:
        out = [await self.recv()]
        while self.queue and len(out) < max_messages:
            out.append(self.queue.popleft())
        return out

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def make(sock: socket.socket, peer: tuple[str, int], role: str, keys: Keys) -> Endpoint:
    sock.connect(peer)
    endpoint = MemoryBioDtls(connection(keys, role, None))
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, sock=sock)
    endpoint.transport = transport
    return endpoint
