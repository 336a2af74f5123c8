"""A UDP impairment proxy for the tests: a seeded, lossy, duplicating, reordering, corrupting
and delaying path between two loopback endpoints, with counters and a capture of all traffic.

Endpoint A talks to ``link.address_for_a`` and endpoint B to ``link.address_for_b``; the proxy
forwards each datagram to the other side from the matching socket, so each endpoint sees its
peer's datagrams come from the one address it was given. Every random decision comes from one
``random.Random`` per direction, seeded from ``seed``, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["a_to_b", "b_to_a"]

# A datagram held back for reordering goes out after this long if nothing follows it.
REORDER_HOLD = 0.05


@dataclass(frozen=True)
class Impairment:
    """What the path does to the datagrams of one direction (probabilities are 0..1)."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    drop_first: int = 0
    # Forward only this many datagrams, then lose everything: the other end vanished.
    cut_after: int | None = None


@dataclass
class _Path:
    impairment: Impairment
    rng: random.Random
    out: asyncio.DatagramTransport | None = None
    destination: tuple[str, int] | None = None
    held: bytes | None = None
    counters: Counter[str] = field(default_factory=Counter)


class _Side(asyncio.DatagramProtocol):
    def __init__(self, link: ImpairedLink, direction: Direction) -> None:
        self.link = link
        self.direction = direction

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.link._arrived(self.direction, data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        # The endpoint behind the proxy went away (ICMP port unreachable); like loss.
        self.link.errors += 1


class ImpairedLink:
    """The proxy. Create with ``await ImpairedLink.start(a, b, ...)``; ``close()`` when done.

    ``a`` and ``b`` are the endpoints' addresses. ``capture`` keeps every datagram each
    endpoint sent, as sent (before any impairment).
    """

    def __init__(
        self, a: tuple[str, int], b: tuple[str, int], a_to_b: Impairment, b_to_a: Impairment, seed: int
    ):
        self.endpoints = {"a_to_b": a, "b_to_a": b}
        self.paths: dict[Direction, _Path] = {
            "a_to_b": _Path(a_to_b, random.Random(f"{seed}/a_to_b")),
            "b_to_a": _Path(b_to_a, random.Random(f"{seed}/b_to_a")),
        }
        self.capture: list[tuple[Direction, bytes]] = []
        self.errors = 0
        self.seed = seed
        self._transports: list[asyncio.DatagramTransport] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.address_for_a: tuple[str, int] = ("", 0)
        self.address_for_b: tuple[str, int] = ("", 0)

    @classmethod
    async def start(
        cls,
        a: tuple[str, int],
        b: tuple[str, int],
        *,
        a_to_b: Impairment | None = None,
        b_to_a: Impairment | None = None,
        both: Impairment | None = None,
        seed: int = 0,
    ) -> ImpairedLink:
        link = cls(a, b, a_to_b or both or Impairment(), b_to_a or both or Impairment(), seed)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in a[0] else socket.AF_INET
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        # A talks to side_a, which receives a_to_b traffic and sends b_to_a traffic to A.
        side_a, _ = await loop.create_datagram_endpoint(
            lambda: _Side(link, "a_to_b"), local_addr=(host, 0), family=family
        )
        side_b, _ = await loop.create_datagram_endpoint(
            lambda: _Side(link, "b_to_a"), local_addr=(host, 0), family=family
        )
        link._transports = [side_a, side_b]
        for side in (side_a, side_b):
            side.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 212_992)
        link.paths["a_to_b"].out, link.paths["a_to_b"].destination = side_b, b
        link.paths["b_to_a"].out, link.paths["b_to_a"].destination = side_a, a
        link.address_for_a = _address(side_a)
        link.address_for_b = _address(side_b)
        return link

    def counters(self, direction: Direction) -> Counter[str]:
        """What happened to the datagrams of one direction, by name: ``received`` (from the
        endpoint), ``forwarded``, ``lost``, ``dropped_first``, ``duplicated``, ``reordered``,
        ``corrupted``, ``delayed``, ``cut``, ``stray`` (from an unexpected address)."""
        return self.paths[direction].counters

    def report(self) -> str:
        """One line per direction, for test output."""
        return "; ".join(
            f"{d}: " + " ".join(f"{k}={v}" for k, v in sorted(p.counters.items()))
            for d, p in self.paths.items()
        )

    def set_impairment(self, direction: Direction, impairment: Impairment) -> None:
        """Changes a direction's impairment from now on (e.g. a clean handshake, then loss)."""
        self.paths[direction].impairment = impairment

    def inject(self, direction: Direction, data: bytes) -> None:
        """Sends ``data`` to the endpoint that ``direction`` leads to, from the address its
        peer uses, unimpaired and uncounted: a forged datagram from the peer's address."""
        path = self.paths[direction]
        assert path.out is not None and path.destination is not None
        path.out.sendto(data, path.destination)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for transport in self._transports:
            transport.close()

    async def __aenter__(self) -> ImpairedLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding ------------------------------------------------------------------------

    def _arrived(self, direction: Direction, data: bytes, source: tuple[str, int]) -> None:
        path = self.paths[direction]
        expected = self.endpoints[direction]
        if source != expected:
            path.counters["stray"] += 1
            return
        path.counters["received"] += 1
        self.capture.append((direction, data))
        imp, rng = path.impairment, path.rng
        # Draw every decision for every datagram so one choice never shifts the others.
        lost, dup, reorder, corrupt = (rng.random() for _ in range(4))
        at, value = rng.randrange(max(len(data), 1)), rng.randrange(1, 256)
        extra_delay = rng.uniform(-imp.jitter, imp.jitter)
        if path.counters["received"] <= imp.drop_first:
            path.counters["dropped_first"] += 1
            return
        if imp.cut_after is not None and path.counters["received"] > imp.cut_after:
            path.counters["cut"] += 1
            return
        if lost < imp.loss:
            path.counters["lost"] += 1
            return
        if corrupt < imp.corrupt and data:
            # XOR with a non-zero byte: the datagram always changes.
            data = data[:at] + bytes([data[at] ^ value]) + data[at + 1 :]
            path.counters["corrupted"] += 1
        copies = 2 if dup < imp.duplicate else 1
        if copies == 2:
            path.counters["duplicated"] += 1
        delay = max(0.0, imp.delay + extra_delay)
        for _ in range(copies):
            if delay > 0:
                path.counters["delayed"] += 1
                self._later(delay, path, data, reorder < imp.reorder)
            else:
                self._forward(path, data, reorder < imp.reorder)

    def _later(self, delay: float, path: _Path, data: bytes, reorder: bool) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._forward(path, data, reorder)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _forward(self, path: _Path, data: bytes, reorder: bool) -> None:
        if reorder and path.held is None:
            # Hold it back until the next datagram has gone out (or briefly, if none comes).
            path.held = data
            path.counters["reordered"] += 1
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle

            def release() -> None:
                self._timers.discard(handle)
                self._release(path)

            handle = loop.call_later(REORDER_HOLD, release)
            self._timers.add(handle)
            return
        self._send(path, data)
        self._release(path)

    def _release(self, path: _Path) -> None:
        if path.held is not None:
            held, path.held = path.held, None
            self._send(path, held)

    def _send(self, path: _Path, data: bytes) -> None:
        assert path.out is not None and path.destination is not None
        if path.out.is_closing():
            return
        path.out.sendto(data, path.destination)
        path.counters["forwarded"] += 1


def _address(transport: asyncio.DatagramTransport) -> tuple[str, int]:
    name = transport.get_extra_info("sockname")
    return str(name[0]), int(name[1])
