"""Handshakes through heavy loss over real loopback sockets: seeded random loss each way
through the tests' impairment proxy, default settings, then one message each way.

    python -m bench.loss [--sets 5] [--per-set 20] [--loss 0.3,0.5] [--delay 0.02]

Each seed set runs its handshakes concurrently (as an application upgrading many punched
paths would), on one event loop. Prints, per loss rate: the successes of each seed set within
the target time (3 s at 30%, 10 s at 50%), p50/p90/max handshake time over all sets, and the
bytes both ends sent per successful handshake. The in-memory sweep over more seeds is the
Rust test ``loss_sweep`` (docs/benchmarks.md, "Handshakes under loss")."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass

from dtls_peer import DTLSPeerConnection, Identity

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from impair import ImpairedLink, Impairment

MESSAGE_WAIT = 5.0


@dataclass
class Result:
    seed: int
    seconds: float | None
    exchanged: bool
    bytes_out: int


async def one(seed: int, loss: float, delay: float, ids: tuple[Identity, Identity]) -> Result:
    socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    addrs = [s.getsockname() for s in socks]
    link = await ImpairedLink.start(addrs[0], addrs[1], both=Impairment(loss=loss, delay=delay), seed=seed)
    a = DTLSPeerConnection(
        socks[0], link.address_for_a, ids[0], expected_node_id=ids[1].node_id, role="client"
    )
    b = DTLSPeerConnection(
        socks[1], link.address_for_b, ids[1], expected_node_id=ids[0].node_id, role="server"
    )
    started = time.monotonic()
    seconds = None
    exchanged = False
    try:
        await asyncio.gather(a.handshake(), b.handshake())
        seconds = time.monotonic() - started
        bytes_out = a.stats()["bytes_out"] + b.stats()["bytes_out"]
        # The keys must work: one message each way with loss turned off.
        link.set_impairment("a_to_b", Impairment(delay=delay))
        link.set_impairment("b_to_a", Impairment(delay=delay))
        await a.send(b"from a")
        await b.send(b"from b")
        got = await asyncio.wait_for(asyncio.gather(b.recv(), a.recv()), MESSAGE_WAIT)
        exchanged = list(got) == [b"from a", b"from b"]
    except Exception:
        bytes_out = a.stats()["bytes_out"] + b.stats()["bytes_out"]
    finally:
        a.close_nowait()
        b.close_nowait()
        link.close()
        for s in socks:
            s.close()
    return Result(seed, seconds, exchanged, bytes_out)


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[max(0, int(len(ordered) * q + 0.999999) - 1)]:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", type=int, default=5, help="seed sets per loss rate")
    parser.add_argument("--per-set", type=int, default=20, help="handshakes per seed set, run together")
    parser.add_argument("--loss", default="0.3,0.5", help="loss rates each way, comma-separated")
    parser.add_argument("--delay", type=float, default=0.02, help="one-way delay in seconds")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    ids = (Identity.generate(), Identity.generate())
    for loss in (float(x) for x in args.loss.split(",")):
        within = 3.0 if loss < 0.4 else 10.0
        results: list[Result] = []
        per_set = []
        for k in range(args.sets):
            first = args.first_seed + k * args.per_set
            batch = await asyncio.gather(
                *(one(seed, loss, args.delay, ids) for seed in range(first, first + args.per_set))
            )
            results += batch
            fast = sum(1 for r in batch if r.exchanged and r.seconds is not None and r.seconds <= within)
            per_set.append(f"{fast}/{args.per_set}")
        ok = [r for r in results if r.exchanged and r.seconds is not None]
        times = [r.seconds for r in ok if r.seconds is not None]
        per_success = statistics.mean(r.bytes_out for r in ok) if ok else 0
        print(
            f"{loss:.0%} loss each way, {args.delay * 1000:.0f} ms one way: within {within:.0f} s per set "
            f"{' '.join(per_set)}; {len(ok)}/{len(results)} connected; "
            f"p50 {pct(times, 0.5)} s, p90 {pct(times, 0.9)} s, max {pct(times, 1.0)} s; "
            f"{per_success:.0f} bytes sent per success"
        )
        for r in results:
            if not r.exchanged:
                print(f"  seed {r.seed}: no exchange (handshake {r.seconds})")


if __name__ == "__main__":
    asyncio.run(main())
