"""A client process of ``python -m bench.endpoint``: ``--count`` peers, each on its own socket,
handshake with the server endpoint in batches (each batch started at once). Prints
``{"ready": true}`` once set up, waits for a line on stdin (go), runs, checks every peer with one
echo, prints the result, holds the peers until the next line (or EOF), then closes them.

    python -m bench.endpoint_client --contender dtls_peer|trio --keys DIR --port P --count N"""

from __future__ import annotations

import argparse
import asyncio
import time

from .contenders import CIPHER, MTU, Keys
from .endpoint_common import ECHO_CHUNK, HANDSHAKE_LIMIT, ClientResult, batches, read_line, say, setup_process
from .peer import keys_for
from .server import bound_socket


async def dtls_peer_clients(port: int, keys: Keys, count: int, batch: int) -> None:
    from dtls_peer import DTLSError, DTLSPeerConnection, Identity

    # One identity per process, as an application holds it (one OpenSSL context).
    identity = Identity.load(keys.cert_path, keys.key_path)
    loop = asyncio.get_running_loop()
    say({"ready": True})
    await loop.run_in_executor(None, read_line)
    result = ClientResult()
    held: list[DTLSPeerConnection] = []

    async def one() -> None:
        sock = bound_socket()
        conn = DTLSPeerConnection(
            sock,
            ("127.0.0.1", port),
            identity,
            expected_node_id=keys.peer_node_id,
            role="client",
            ciphers=CIPHER,
            mtu=MTU,
            handshake_timeout=HANDSHAKE_LIMIT,
        )
        sock.close()  # the connection owns a duplicate
        held.append(conn)
        started = time.perf_counter()
        try:
            await conn.handshake()
        except DTLSError as e:
            result.fail(e)
            return
        result.done(time.perf_counter() - started)

    for size in batches(count, batch):
        await asyncio.gather(*(one() for _ in range(size)))
    report = result.report()

    async def echo(conn: DTLSPeerConnection) -> bool:
        try:
            await conn.send(b"ping")
            return await asyncio.wait_for(conn.recv(), 30) == b"ping"
        except (DTLSError, asyncio.TimeoutError):
            return False

    echoed = 0
    established = [c for c in held if c.is_established]
    for start in range(0, len(established), ECHO_CHUNK):
        echoed += sum(await asyncio.gather(*(echo(c) for c in established[start : start + ECHO_CHUNK])))
    say({**report, "echoed": echoed})
    await loop.run_in_executor(None, read_line)
    for conn in held:
        conn.close_nowait()
    # Time for the close_notify of every peer to leave before the process exits.
    await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.endpoint_client")
    parser.add_argument("--contender", choices=["dtls_peer", "trio"], required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, default=50, help="handshakes started at once")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    args = parser.parse_args()
    setup_process(args.cpu)
    keys = keys_for(args.keys, "client")
    batch = max(1, args.batch)
    if args.contender == "trio":
        from .contenders.trio_endpoint import run_clients

        run_clients(args.port, keys, args.count, batch)
    else:
        asyncio.run(dtls_peer_clients(args.port, keys, args.count, batch))


if __name__ == "__main__":
    main()
