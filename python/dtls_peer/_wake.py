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


class _Attachable(Protocol):
    def attach(self, waker: _native.Waker, token: int, /) -> None: ...


class Waiting:
    """Waiting on the event loop for the I/O thread's news about one native object (a
    connection or an endpoint): binds it to the first loop it is used on, registers it with
    that loop's waker, and wakes every coroutine waiting on it. Subclasses call
    ``_init_waiting`` with their native object and may extend ``_wake``."""

    def _init_waiting(self, native: _Attachable) -> None:
        self._attachable = native
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waker: LoopWaker | None = None
        self._token = 0

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop, self._waker = for_running_loop()
            self._token = self._waker.register(self)
            self._attachable.attach(self._waker.native, self._token)
        elif self._loop is not loop:
            raise RuntimeError(f"a {type(self).__name__} is bound to the event loop it was first used on")
        return loop

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._bind_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _stop_waking(self) -> None:
        """No more news will come (closed): forget the registration and wake every waiter."""
        if self._waker is not None:
            self._waker.unregister(self._token)
        self._wake()
