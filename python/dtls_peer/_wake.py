"""Per-event-loop wake-ups from the I/O thread: one reader callback serves every connection."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from typing import Protocol

from . import _native


class _Wakeable(Protocol):
    def _wake(self) -> None: ...


class LoopWaker:
    """Watches the native waker's socket on one loop and dispatches to the connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.native = _native.Waker()
        self._ids = itertools.count(1)
        self._connections: weakref.WeakValueDictionary[int, _Wakeable] = weakref.WeakValueDictionary()
        # The loop holds this object through the reader callback; nothing here holds the
        # loop, so both go away together.
        loop.add_reader(self.native.fileno(), self._on_readable)

    def register(self, connection: _Wakeable) -> int:
        token = next(self._ids)
        self._connections[token] = connection
        return token

    def unregister(self, token: int) -> None:
        self._connections.pop(token, None)

    def _on_readable(self) -> None:
        for token in self.native.drain():
            connection = self._connections.get(token)
            if connection is not None:
                connection._wake()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker] = weakref.WeakKeyDictionary()


def for_running_loop() -> tuple[asyncio.AbstractEventLoop, LoopWaker]:
    """The running loop and its waker, created on first use."""
    loop = asyncio.get_running_loop()
    waker = _wakers.get(loop)
    if waker is None:
        waker = _wakers[loop] = LoopWaker(loop)
    return loop, waker
