"""Data channels on bad paths and under pressure: reliable delivery through 5% loss each way,
an unordered no-retransmit channel through loss (a subset, nothing altered or twice), a
channel nobody reads next to one that flows, cancellation that loses nothing, liveness
(keepalive, idle timeout) with channels on, and closing the connection."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

import pytest
from conftest import ImpairedPair, ImpairedPairFactory, Pair, PairFactory, handshake_all
from dtls_peer import ChannelClosed, ConnectionClosed, DataChannel
from impair import Impairment

STEP = 30.0


def pattern(size: int, seed: int) -> bytes:
    block = hashlib.sha256(f"{seed}".encode()).digest()
    return (seed.to_bytes(4, "big") + block * (size // len(block) + 1))[:size]


async def opened(a: Any, b: Any, label: str = "c", **options: Any) -> tuple[DataChannel, DataChannel]:
    """``a`` opens a channel and ``b`` accepts it; (a's end, b's end)."""
    ours = asyncio.ensure_future(a.create_channel(label, **options))
    theirs = await asyncio.wait_for(b.accept_channel(), STEP)
    return await asyncio.wait_for(ours, STEP), theirs


async def impaired(make: ImpairedPairFactory, loss: float, seed: int, **options: Any) -> ImpairedPair:
    pair = await make(socket.AF_INET, both=Impairment(loss=loss), seed=seed, channels=True, **options)
    await asyncio.wait_for(asyncio.gather(pair.a.handshake(), pair.b.handshake()), 60)
    return pair


async def test_reliable_channel_delivers_everything_in_order_through_5_percent_loss_each_way(
    make_impaired_pair: ImpairedPairFactory,
) -> None:
    pair = await impaired(make_impaired_pair, 0.05, seed=11)
    ours, theirs = await opened(pair.a, pair.b)
    messages = [pattern(size, i) for i, size in enumerate([90_000, 1, 64 << 10, 300_000, 5, 1 << 20] * 3)]

    async def send_all() -> None:
        for m in messages:
            await ours.send(m)

    sender = asyncio.ensure_future(send_all())
    got = [await asyncio.wait_for(theirs.recv(), 60) for _ in messages]
    await sender
    assert got == messages
    # Both directions: the reply path is lossy too.
    await theirs.send(b"thanks")
    assert await asyncio.wait_for(ours.recv(), STEP) == b"thanks"


async def test_unordered_no_retransmit_channel_gives_a_subset_unaltered_and_once(
    make_impaired_pair: ImpairedPairFactory,
) -> None:
    pair = await impaired(make_impaired_pair, 0.15, seed=3)
    ours, theirs = await opened(pair.a, pair.b, "telemetry", ordered=False, max_retransmits=0)
    assert (theirs.ordered, theirs.max_retransmits) == (False, 0)
    messages = [pattern(300, i) for i in range(300)]
    for m in messages:
        await ours.send(m)
    await ours.send(b"")  # not a pattern: marks nothing, just more traffic
    got: list[bytes] = []
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + 3.0
    while loop.time() < quiet_until:
        try:
            message = await asyncio.wait_for(theirs.recv(), 0.5)
        except asyncio.TimeoutError:
            continue
        assert isinstance(message, bytes)
        if message:
            got.append(message)
    indexes = [int.from_bytes(m[:4], "big") for m in got]
    assert all(m == messages[i] for m, i in zip(got, indexes)), "a message was altered"
    assert len(set(indexes)) == len(indexes), "a message arrived twice"
    assert 0 < len(got) < len(messages), (
        f"{len(got)} of {len(messages)} through 15% loss without retransmission"
    )


async def test_a_channel_nobody_reads_does_not_stop_another(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET, channels=True, channel_high_water=256 << 10)
    await handshake_all(pair.a, pair.b, timeout=STEP)
    slow_out, slow_in = await opened(pair.a, pair.b, "slow")
    fast_out, fast_in = await opened(pair.a, pair.b, "fast")
    # 2 MiB waits unread on the slow channel (8x its high-water mark)...
    for i in range(8):
        await asyncio.wait_for(slow_out.send(pattern(256 << 10, i)), STEP)
    # ...while the other channel flows.
    frames = [pattern(90_000, 100 + i) for i in range(30)]
    for frame in frames:
        await asyncio.wait_for(fast_out.send(frame), STEP)
    assert [await asyncio.wait_for(fast_in.recv(), STEP) for _ in frames] == frames
    # A fast sender on the unread channel is made to wait (its buffer is bounded)...
    stalled = asyncio.ensure_future(_send_forever(slow_out))
    await asyncio.sleep(1.0)
    assert not stalled.done()
    assert slow_out.buffered_amount < 8 << 20
    stalled.cancel()
    # ...and nothing on it was lost.
    assert [await asyncio.wait_for(slow_in.recv(), STEP) for _ in range(8)] == [
        pattern(256 << 10, i) for i in range(8)
    ]


async def _send_forever(channel: DataChannel) -> None:
    for i in range(10_000):
        await channel.send(pattern(256 << 10, 1000 + i))


async def test_cancelled_recv_and_send_lose_nothing(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET, channels=True, channel_high_water=64 << 10)
    await handshake_all(pair.a, pair.b, timeout=STEP)
    ours, theirs = await opened(pair.a, pair.b)
    for _ in range(5):
        pending = asyncio.ensure_future(theirs.recv())
        await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    await ours.send(b"first")
    assert await asyncio.wait_for(theirs.recv(), STEP) == b"first"
    # A send cancelled while it waits for room sent nothing; the ones before it all arrive.
    sent = []
    blocked = None
    for i in range(50):
        task = asyncio.ensure_future(ours.send(pattern(64 << 10, i)))
        await asyncio.sleep(0)
        if not task.done():
            blocked = (i, task)
            break
        await task
        sent.append(pattern(64 << 10, i))
    assert blocked is not None, "the sender was never asked to wait"
    blocked[1].cancel()
    await ours.send(b"after")
    got = [await asyncio.wait_for(theirs.recv(), STEP) for _ in range(len(sent) + 1)]
    assert got == [*sent, b"after"]


async def test_keepalives_and_idle_timeout_work_with_channels(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET, channels=True, keepalive_interval=0.2, idle_timeout=1.0)
    await handshake_all(pair.a, pair.b, timeout=STEP)
    ours, theirs = await opened(pair.a, pair.b)
    await asyncio.sleep(2.5)  # idle for 2.5 idle timeouts: only keepalives flow
    assert pair.a.is_established and pair.b.is_established
    await ours.send(b"still here")
    assert await asyncio.wait_for(theirs.recv(), STEP) == b"still here"
    # The peer vanishes: the idle timeout ends the session and the channel with it.
    pair.b.close_nowait()
    with pytest.raises((ChannelClosed, ConnectionClosed)):
        await asyncio.wait_for(ours.recv(), STEP)


async def test_closing_the_connection_ends_the_peers_channels(make_pair: PairFactory) -> None:
    pair: Pair = make_pair(socket.AF_INET, channels=True)
    await handshake_all(pair.a, pair.b, timeout=STEP)
    ours, theirs = await opened(pair.a, pair.b)
    await ours.send(pattern(200_000, 1))
    await pair.a.close()  # SCTP shutdown first: what was sent is delivered
    assert await asyncio.wait_for(theirs.recv(), STEP) == pattern(200_000, 1)
    with pytest.raises((ChannelClosed, ConnectionClosed)):
        await asyncio.wait_for(theirs.recv(), STEP)
    with pytest.raises((ChannelClosed, ConnectionClosed)):
        await theirs.send(b"nobody")
