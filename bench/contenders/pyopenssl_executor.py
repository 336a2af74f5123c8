"""pyOpenSSL DTLS on a blocking socket, each blocking call (do_handshake, send, recv) run in the
loop's default executor: what people write today when they need DTLS under asyncio. Calls on
one connection are awaited one at a time, so the SSL object is never used by two threads."""

from __future__ import annotations

import asyncio
import socket
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from OpenSSL import SSL

from . import Endpoint, Keys
from .pyopenssl_common import connection

T = TypeVar("T")


class ExecutorDtls:
    def __init__(self, conn: SSL.Connection, sock: socket.socket) -> None:
        self.conn = conn
        self.sock = sock
        self.busy = False

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        self.busy = True
        try:
            return await asyncio.get_running_loop().run_in_executor(None, call, *args)
        finally:
            self.busy = False

    async def handshake(self) -> None:
        await self._run(self.conn.do_handshake)

    async def send(self, data: bytes) -> None:
        await self._run(self.conn.send, data)

    async def send_many(self, messages: list[bytes]) -> None:
        for m in messages:
            await self.send(m)

    async def recv(self) -> bytes:
        return await self._run(self.conn.recv, 2048)

    async def recv_many(self, max_messages: int) -> list[bytes]:
        return [await self.recv()]

    def close(self) -> None:
        if self.busy:
            # A thread is blocked in this SSL object (the SSL object must not be used from two
            # threads at once); shutting the socket down wakes it with an error.
            self.sock.shutdown(socket.SHUT_RDWR)
        else:
            # close_notify ends the peer's blocked recv() (closing a socket does not wake one).
            try:
                self.conn.shutdown()
            except SSL.Error:
                pass
        self.sock.close()


# The stock executor has min(32, cores + 4) threads, and every idle server connection blocks
# one in recv(): with more connections than threads, new handshakes would never run.
_sized: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
MAX_THREADS = 2100


async def make(sock: socket.socket, peer: tuple[str, int], role: str, keys: Keys) -> Endpoint:
    loop = asyncio.get_running_loop()
    if loop not in _sized:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=MAX_THREADS))
        _sized.add(loop)
    sock.connect(peer)
    sock.setblocking(True)
    return ExecutorDtls(connection(keys, role, sock), sock)
