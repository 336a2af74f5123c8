"""Guards connection set-up against corrupted handshake datagrams: anyone who can spoof the
peer's address can flip a byte in an unencrypted handshake message, and OpenSSL alone aborts
on one. The engine restarts such a handshake inside the same time budget."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

from conftest import ImpairedPair, ImpairedPairFactory
from impair import Impairment

HANDSHAKES = 20
HANDSHAKE_TIMEOUT = 10.0


async def timed_handshake(pair: ImpairedPair) -> float:
    started = time.monotonic()
    await asyncio.gather(pair.a.handshake(), pair.b.handshake())
    return time.monotonic() - started


async def test_handshakes_complete_under_5_percent_corruption(
    make_impaired_pair: ImpairedPairFactory,
) -> None:
    pairs = [
        await make_impaired_pair(socket.AF_INET, both=Impairment(corrupt=0.05), seed=s)
        for s in range(HANDSHAKES)
    ]
    results = await asyncio.gather(*(timed_handshake(p) for p in pairs), return_exceptions=True)
    times = sorted(r for r in results if isinstance(r, float))
    failures = {p.link.seed: repr(r) for p, r in zip(pairs, results) if isinstance(r, BaseException)}
    corrupted = sum(p.link.counters(d)["corrupted"] for p in pairs for d in ("a_to_b", "b_to_a"))
    print(
        f"\n5% corruption each way: {len(times)}/{HANDSHAKES} handshakes, {corrupted} datagrams corrupted; "
        + (f"median {statistics.median(times):.2f} s, worst {times[-1]:.2f} s" if times else "")
    )
    for seed, failure in failures.items():
        print(f"  seed {seed}: {failure}")
    assert corrupted > 0, "nothing was corrupted, so this proved nothing"
    assert len(times) >= HANDSHAKES - 1, failures
    assert all(t < HANDSHAKE_TIMEOUT for t in times), times
