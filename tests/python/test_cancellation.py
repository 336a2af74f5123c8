"""Guards that cancelling a pending recv() never loses, duplicates or reorders a message."""

from __future__ import annotations

import asyncio
import random

import pytest
from conftest import STEP_TIMEOUT, Pair, recv_within


async def test_cancelled_recvs_leave_the_message_for_the_next_recv(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    for _ in range(5):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.recv(), 0.02)
    await a.send(b"first after cancellations")
    await a.send(b"second after cancellations")
    assert await recv_within(b) == b"first after cancellations"
    assert await recv_within(b) == b"second after cancellations"
    assert b.is_established


async def test_cancelling_a_recv_whose_message_has_arrived_keeps_the_message(connected_pair: Pair) -> None:
    """The message arrives while recv() waits, and the recv() is cancelled before it resumes."""
    a, b = connected_pair.a, connected_pair.b
    for i in range(10):
        pending = asyncio.ensure_future(b.recv())
        await asyncio.sleep(0)  # let recv() start waiting
        await a.send(b"raced %d" % i)
        # Cancel once the message has surely been queued: stats count it when it is decrypted.
        for _ in range(1000):
            if b.stats()["messages_in"] > i or pending.done():
                break
            await asyncio.sleep(0.001)
        pending.cancel()
        try:
            got = await pending
        except asyncio.CancelledError:
            got = await recv_within(b)
        assert got == b"raced %d" % i


async def test_cancelling_one_recv_does_not_disturb_another(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    doomed = asyncio.ensure_future(b.recv())
    survivor = asyncio.ensure_future(b.recv())
    await asyncio.sleep(0)  # both start waiting
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await a.send(b"for the survivor")
    assert await asyncio.wait_for(survivor, STEP_TIMEOUT) == b"for the survivor"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancellation_receives_every_message_once_in_order(
    connected_pair: Pair, seed: int
) -> None:
    a, b = connected_pair.a, connected_pair.b
    rng = random.Random(seed)
    count = 300
    expected = [b"message %04d" % i for i in range(count)]

    received: list[bytes] = []
    progress = asyncio.Event()
    # At most `window` messages in flight: UDP may drop what a lagging receiver cannot hold,
    # and this test is about cancellation, not about loss.
    window = 32

    async def sender() -> None:
        for i, message in enumerate(expected):
            while i - len(received) >= window:
                progress.clear()
                await progress.wait()
            await a.send(message)
            if rng.random() < 0.3:
                await asyncio.sleep(0)
            if rng.random() < 0.05:
                await asyncio.sleep(0.001)

    cancellations = 0

    def record(message: bytes) -> None:
        received.append(message)
        progress.set()

    async def receiver() -> None:
        nonlocal cancellations
        for _ in range(100 * count):
            if len(received) == count:
                return
            if rng.random() < 0.5:
                try:
                    record(await asyncio.wait_for(b.recv(), rng.uniform(0.0, 0.002)))
                except asyncio.TimeoutError:
                    cancellations += 1
            else:
                task = asyncio.ensure_future(b.recv())
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    record(await task)
                except asyncio.CancelledError:
                    cancellations += 1
        raise AssertionError(f"gave up with {len(received)} of {count} messages")

    await asyncio.wait_for(asyncio.gather(sender(), receiver()), 30.0)
    assert received == expected
    assert cancellations > 0
    # Nothing extra is left over either.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(b.recv(), 0.05)
    assert b.stats()["messages_in"] == count
