"""Plaintext UDP on a non-blocking socket before the DTLS upgrade (hole punching).

``loop.sock_sendto``/``loop.sock_recvfrom`` exist only from Python 3.11, while the package
supports 3.9; these two use ``add_reader``/``add_writer``, which 3.9's selector loops and uvloop
have. The demo and the examples share them, so the socket stays a plain ``socket.socket`` that
the connection can take over afterwards.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, TypeVar

T = TypeVar("T")


async def send_to(sock: socket.socket, data: bytes, address: Any) -> None:
    """Sends one datagram, waiting for the socket to become writable if its buffer is full."""
    await _when_ready(sock, lambda: sock.sendto(data, address), writable=True)


async def recv_from(sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
    """Receives one datagram (data, source address), waiting until one arrives."""
    return await _when_ready(sock, lambda: sock.recvfrom(bufsize), writable=False)


async def _when_ready(sock: socket.socket, attempt: Callable[[], T], *, writable: bool) -> T:
    # Try at once; only a would-block result parks on the loop. The reader/writer is removed
    # on every way out (result, error, cancellation by wait_for), so the socket can be handed
    # to a DTLSPeerConnection right after.
    try:
        return attempt()
    except (BlockingIOError, InterruptedError):
        pass
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def ready() -> None:
        if done.done():
            return
        try:
            done.set_result(attempt())
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:  # the caller's await raises it
            done.set_exception(exc)

    fd = sock.fileno()
    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        return await done
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
