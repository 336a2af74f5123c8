"""What the processes of ``python -m bench.endpoint`` share, whatever their event loop: the
control lines (JSON, one per line, on stdin and stdout), the server's counters and the client's
result. The asyncio (dtls_peer) and trio sides differ only in how they wait."""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .server import rss_bytes
from .workloads import percentile

# Every wait on the other processes is bounded by this; a run that takes longer has hung.
LIMIT = 600.0
# One handshake that takes longer than this has failed (on loopback it takes milliseconds; a
# burst that overflows the server's limits costs retransmissions, seconds at most).
HANDSHAKE_LIMIT = 60.0
# The lag ticker's period: how late each 1 ms sleep wakes up is one sample.
TICK = 0.001
# The clients check their peers with one echo each, this many at a time: a lost ping is not
# resent (datagrams), so no burst that could overflow a socket buffer.
ECHO_CHUNK = 100


def setup_process(cpu: int | None) -> None:
    """Pins this process to one core (before any runtime thread starts, so they inherit it)
    and lifts the soft descriptor limit (a client process holds one socket per peer)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def read_line() -> str:
    """The next control line (blocking; the loops call it from a thread). EOF reads as quit."""
    line = sys.stdin.readline()
    return line.strip() or '{"op": "quit"}'


def summary(samples: list[float], scale: float, unit: str) -> dict[str, Any]:
    if not samples:
        return {"samples": 0}
    return {
        "samples": len(samples),
        f"p50_{unit}": percentile(samples, 0.5) * scale,
        f"p99_{unit}": percentile(samples, 0.99) * scale,
        f"max_{unit}": max(samples) * scale,
    }


@dataclass
class Failures:
    """Failed handshakes: how many, and the first few errors (for the report's notes)."""

    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(f"{type(error).__name__}: {error}")


@dataclass
class ServerCounters(Failures):
    """The server's side of the figures: accepted peers, live peers, lag samples."""

    accepted: int = 0
    live: int = 0
    lags: list[float] = field(default_factory=list)
    ticking: bool = False

    def accept(self) -> None:
        self.accepted += 1
        self.live += 1

    def tick(self, late: float) -> None:
        self.lags.append(late)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to a control request the loop-specific side does not handle itself."""
        op = request["op"]
        if op == "usage":
            # The figure after a collection: what the peers hold, not garbage not yet freed.
            gc.collect()
            return {
                "rss": rss_bytes(),
                "cpu": time.process_time(),
                "accepted": self.accepted,
                "failed": self.failed,
                "live": self.live,
                "errors": self.errors,
            }
        if op == "lag_start":
            self.lags = []
            self.ticking = True
            return {}
        if op == "lag_stop":
            self.ticking = False
            return summary(self.lags, 1e3, "ms")
        raise ValueError(f"unknown op {op!r}")


@dataclass
class ClientResult(Failures):
    """One client process's handshakes: how many completed, how long each took, and how long
    the whole set took from the go signal."""

    durations: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def done(self, seconds: float) -> None:
        self.durations.append(seconds)

    def report(self) -> dict[str, Any]:
        """Called when the last handshake has ended (before the echo check)."""
        return {
            "ok": len(self.durations),
            "failed": self.failed,
            "seconds": time.perf_counter() - self.started,
            "errors": self.errors,
            # Raw, so the percentiles can be taken over every process's handshakes.
            "durations": self.durations,
        }


def batches(count: int, batch: int) -> list[int]:
    """Sizes of the batches ``count`` handshakes start in (each batch at once)."""
    return [min(batch, count - start) for start in range(0, count, batch)]
