"""A transfer's progress on stderr: a tqdm bar when tqdm is installed (``pip install
'dtls_peer[cli]'``) and stderr is a terminal, else a plain status line every few seconds, so
logs and pipes get readable lines instead of carriage returns."""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

from .pinned import status

MIB = 1 << 20
# Seconds between plain-text progress lines.
_PLAIN_EVERY = 2.0


def _bar_module() -> Any:
    # A terminal of unknown width (a bare pseudo-terminal) would get an empty bar.
    try:
        if not sys.stderr.isatty() or os.get_terminal_size(sys.stderr.fileno()).columns <= 0:
            return None
    except (OSError, ValueError):
        return None
    try:
        return importlib.import_module("tqdm")
    except ImportError:
        return None


class Progress:
    """Bytes moved out of ``total``; ``advance`` after each chunk, ``close`` at the end."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self._started = self._shown = time.monotonic()
        tqdm = _bar_module()
        self._bar: Any = None
        if tqdm is not None:
            self._bar = tqdm.tqdm(
                total=total, desc=what, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr
            )

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._shown >= _PLAIN_EVERY:
            self._shown = now
            status(f"{self.what}: {self.line(now)}")

    def amount(self) -> str:
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        return f"{self.done / MIB:.1f} of {self.total / MIB:.1f} MiB{share}"

    def line(self, now: float) -> str:
        seconds = now - self._started
        rate = f", {self.done / MIB / seconds:.1f} MiB/s" if seconds > 0 else ""
        return self.amount() + rate

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
