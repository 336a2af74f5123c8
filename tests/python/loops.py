"""An event loop like Windows' ProactorEventLoop where this package is concerned: it cannot
watch a descriptor for the application (``add_reader``/``add_writer`` raise
``NotImplementedError``), so the package must fall back to its watcher thread and leave
socket reads to the I/O thread. Its own transports and ``sock_*`` calls still work (they use
the selector's private registration)."""

from __future__ import annotations

import asyncio
from typing import Any


class NoAddReaderLoop(asyncio.SelectorEventLoop):
    # Any arguments: typeshed's signatures need TypeVarTuple, which 3.9 (a claimed Python,
    # where this suite also runs) lacks at run time.
    def add_reader(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise NotImplementedError

    def add_writer(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise NotImplementedError
