"""The lossy path of a ``python -m bench.channels`` run, in its own process (its CPU is not the
peers'): the tests' seeded impairment proxy (tests/python/impair.py) losing ``--loss`` of the
datagrams each way.

    python -m bench.channels_relay --a HOST:PORT --b HOST:PORT --loss 0.01 [--seed 1]

Prints ``{"for_a": [host, port], "for_b": [host, port]}`` (where each peer sends), runs until
its stdin closes, then prints its CPU seconds and what it did to each direction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from impair import ImpairedLink, Impairment


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=address, required=True)
    parser.add_argument("--b", type=address, required=True)
    parser.add_argument("--loss", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cpu_before = time.process_time()
    link = await ImpairedLink.start(args.a, args.b, both=Impairment(loss=args.loss), seed=args.seed)
    print(json.dumps({"for_a": link.address_for_a, "for_b": link.address_for_b}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    link.close()
    counters = {direction: dict(link.counters(direction)) for direction in ("a_to_b", "b_to_a")}
    print(json.dumps({"cpu": time.process_time() - cpu_before, "counters": counters}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
