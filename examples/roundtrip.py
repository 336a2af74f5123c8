"""Measures handshake time and sequential 64-byte round trips between two connections on
loopback in one process: ``python examples/roundtrip.py [count]``."""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time

from dtls_peer import DTLSPeerConnection, Identity


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def main(count: int) -> None:
    a_id, b_id = Identity.generate(), Identity.generate()
    sa, sb = _bound(), _bound()
    a = DTLSPeerConnection(sa, sb.getsockname(), a_id, expected_node_id=b_id.node_id)
    b = DTLSPeerConnection(sb, sa.getsockname(), b_id, expected_node_id=a_id.node_id)
    sa.close()
    sb.close()
    started = time.perf_counter()
    await asyncio.gather(a.handshake(), b.handshake())
    print(f"handshake: {(time.perf_counter() - started) * 1000:.2f} ms ({a.cipher})")
    message = b"x" * 64
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        await a.send(message)
        await b.send(await b.recv())
        await a.recv()
        samples.append(time.perf_counter() - t)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(
        f"{count} echo round trips: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us, "
        f"{count / sum(samples):.0f} round trips/s (mean {statistics.mean(samples) * 1e6:.0f} us)"
    )
    await a.close()
    await b.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
