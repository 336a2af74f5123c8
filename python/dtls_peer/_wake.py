"""Per-event-loop wake-ups from the I/O thread: one reader callback serves every connection.

A loop that watches descriptors (selector loops, uvloop) watches the native waker's socket
with ``add_reader``. A loop that cannot (Windows' default ``ProactorEventLoop`` raises
``NotImplementedError``) gets a watcher thread instead: it waits on the same socket and hands
each wake-up to the loop with ``call_soon_threadsafe``, so the I/O thread still never takes
the GIL (docs/design.md, portability)."""

from __future__ import annotations

import asyncio
import itertools
import select
import threading
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
        # Set each time the loop has drained the waker, so the watcher thread (if any) posts
        # one callback per wake-up rather than one per poll.
        self._drained = threading.Event()
        try:
            # The loop holds this object through the reader callback; nothing here holds the
            # loop, so both go away together.
            loop.add_reader(self.native.fileno(), self._on_readable)
            #: Whether the loop watches descriptors itself (connections then read their
            #: socket on the loop too).
            self.selects = True
        except NotImplementedError:
            self.selects = False
            watcher = threading.Thread(
                target=_watch, args=(weakref.ref(loop), weakref.ref(self), self.native), name="dtls-peer-wake"
            )
            watcher.daemon = True
            watcher.start()

    def register(self, connection: _Wakeable) -> int:
        token = next(self._ids)
        self._connections[token] = connection
        return token

    def unregister(self, token: int) -> None:
        self._connections.pop(token, None)

    def _on_readable(self) -> None:
        tokens = self.native.drain()
        self._drained.set()
        for token in tokens:
            connection = self._connections.get(token)
            if connection is not None:
                connection._wake()


# How long the watcher thread waits at a time before it checks whether its loop is gone.
_WATCH_POLL = 0.5


def _watch(
    loop_ref: weakref.ref[asyncio.AbstractEventLoop], waker_ref: weakref.ref[LoopWaker], native: _native.Waker
) -> None:
    """The watcher thread of a loop without ``add_reader``: waits (GIL released) until the
    waker's socket is readable, asks the loop to drain it, and waits for the drain before
    looking again; ends when the loop is closed or collected. Holds ``native`` so the socket
    stays open while it is watched."""
    fd = native.fileno()

    def alive() -> bool:
        loop = loop_ref()
        return loop is not None and not loop.is_closed()

    while alive():
        readable, _, _ = select.select([fd], [], [], _WATCH_POLL)
        waker, loop = waker_ref(), loop_ref()
        if waker is None or loop is None:
            return
        if not readable:
            continue
        waker._drained.clear()
        try:
            loop.call_soon_threadsafe(waker._on_readable)
        except RuntimeError:
            return  # the loop closed meanwhile
        drained = waker._drained
        del waker, loop
        while not drained.wait(_WATCH_POLL):
            if not alive():
                return


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
