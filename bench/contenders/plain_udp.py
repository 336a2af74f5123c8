"""Plain asyncio UDP (no encryption): the ceiling. A DatagramProtocol queues datagrams and an
awaitable ``recv`` takes them, the shape of every other contender's API."""

from __future__ import annotations

import asyncio
import collections
import socket

from . import Endpoint, Keys


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.append(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class PlainUdp:
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    async def handshake(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        self.transport.sendto(data)

    async def send_many(self, messages: list[bytes]) -> None:
        for m in messages:
            self.transport.sendto(m)

    async def recv(self) -> bytes:
        queue = self.protocol.queue
        while not queue:
            self.protocol.waiter = asyncio.get_running_loop().create_future()
            await self.protocol.waiter
        return queue.popleft()

    async def recv_many(self, max_messages: int) -> list[bytes]:
        first = await self.recv()
        queue = self.protocol.queue
        out = [first]
        while queue and len(out) < max_messages:
            out.append(queue.popleft())
        return out

    def close(self) -> None:
        self.transport.close()


async def make(sock: socket.socket, peer: tuple[str, int], role: str, keys: Keys) -> Endpoint:
    sock.connect(peer)
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(_Protocol, sock=sock)
    return PlainUdp(transport, protocol)
