"""Guards that many connections work at once in one process and that handshakes never block the loop."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from conftest import STEP_TIMEOUT, Pair, PairFactory, handshake_all, recv_within
from dtls_peer import ConnectionClosed, DTLSPeerConnection


def build_pairs(
    count: int, family: socket.AddressFamily, make_pair: PairFactory
) -> list[tuple[DTLSPeerConnection, DTLSPeerConnection]]:
    pairs = []
    for _ in range(count):
        pair = make_pair(family)
        pairs.append((pair.a, pair.b))
    return pairs


async def test_fifty_connection_pairs_at_once(make_pair: PairFactory, family: socket.AddressFamily) -> None:
    pairs = build_pairs(50, family, make_pair)
    everyone = [conn for pair in pairs for conn in pair]
    await handshake_all(*everyone, timeout=30.0)
    assert all(conn.is_established for conn in everyone)

    async def exchange(index: int, a: DTLSPeerConnection, b: DTLSPeerConnection) -> None:
        await a.send(b"a->b on pair %d" % index)
        await b.send(b"b->a on pair %d" % index)
        assert await recv_within(b) == b"a->b on pair %d" % index
        assert await recv_within(a) == b"b->a on pair %d" % index

    await asyncio.wait_for(asyncio.gather(*(exchange(i, a, b) for i, (a, b) in enumerate(pairs))), 30.0)

    await asyncio.gather(*(a.close() for a, _ in pairs))

    async def sees_close(b: DTLSPeerConnection) -> None:
        with pytest.raises(ConnectionClosed):
            await b.recv()

    await asyncio.wait_for(asyncio.gather(*(sees_close(b) for _, b in pairs)), 30.0)
    await asyncio.gather(*(b.close() for _, b in pairs))
    assert not any(conn.is_established for conn in everyone)


async def test_concurrent_receivers_get_distinct_messages(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    receivers = [asyncio.ensure_future(b.recv()) for _ in range(8)]
    await asyncio.sleep(0)  # every receiver is waiting
    sent = [b"for whoever asks %d" % i for i in range(8)]
    for message in sent:
        await a.send(message)
    got = await asyncio.wait_for(asyncio.gather(*receivers), STEP_TIMEOUT)
    assert sorted(got) == sorted(sent)
    # Nothing was handed out twice, so nothing is left over.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(b.recv(), 0.05)


async def test_concurrent_senders_deliver_everything(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b

    async def send_some(sender: int) -> None:
        for i in range(10):
            await a.send(b"sender %d message %d" % (sender, i))
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(send_some(s) for s in range(4))), STEP_TIMEOUT)
    got = [await recv_within(b) for _ in range(40)]
    assert sorted(got) == sorted(b"sender %d message %d" % (s, i) for s in range(4) for i in range(10))
    for s in range(4):
        assert [m for m in got if m.startswith(b"sender %d " % s)] == [
            b"sender %d message %d" % (s, i) for i in range(10)
        ]


async def test_handshakes_do_not_block_the_event_loop(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pairs = build_pairs(20, family, make_pair)
    ticks = 0
    longest_gap = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks, longest_gap
        last = time.monotonic()
        for _ in range(1_000_000):
            if done.is_set():
                return
            await asyncio.sleep(0.001)
            now = time.monotonic()
            ticks += 1
            longest_gap = max(longest_gap, now - last)
            last = now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    started = time.monotonic()
    try:
        await handshake_all(*(conn for pair in pairs for conn in pair), timeout=30.0)
    finally:
        elapsed = time.monotonic() - started
        done.set()
        await asyncio.wait_for(ticking, STEP_TIMEOUT)
    # A 1 ms ticker on a free loop ticks about once per millisecond; a loop busy with crypto
    # would fall far behind. The bounds are generous for slow, shared machines.
    assert ticks >= 0.25 * elapsed * 1000, f"{ticks} ticks in {elapsed * 1000:.1f} ms"
    assert longest_gap < 0.25, f"the loop stalled for {longest_gap * 1000:.1f} ms"
