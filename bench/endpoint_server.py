"""The server process of ``python -m bench.endpoint``: one endpoint on one UDP socket accepting
every client, each accepted peer echoed by a task of its own (as an application holds its
peers). Prints ``{"port": ...}``, then answers control lines on stdin (endpoint_common.py).

    python -m bench.endpoint_server --contender dtls_peer|trio --keys DIR [--cpu N] [--loop L]"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from .contenders import CIPHER, MTU, Keys
from .endpoint_common import TICK, ServerCounters, read_line, say, setup_process
from .peer import keys_for
from .server import bound_socket


async def _ticker(counters: ServerCounters) -> None:
    # perf_counter, not loop.time(): uvloop's clock has millisecond steps.
    while counters.ticking:
        started = time.perf_counter()
        await asyncio.sleep(TICK)
        counters.tick(time.perf_counter() - started - TICK)


async def serve_dtls_peer(keys: Keys, max_connections: int) -> None:
    from dtls_peer import DTLSEndpoint, DTLSError, DTLSPeerConnection, Identity

    counters = ServerCounters()
    sock = bound_socket()
    port = sock.getsockname()[1]
    endpoint = DTLSEndpoint(
        sock,
        Identity.load(keys.cert_path, keys.key_path),
        allow={keys.peer_node_id},
        ciphers=CIPHER,
        mtu=MTU,
        max_connections=max_connections,
    )
    sock.close()  # the endpoint owns a duplicate
    peers: set[asyncio.Task[None]] = set()

    async def echo(conn: DTLSPeerConnection) -> None:
        try:
            async for message in conn:
                await conn.send(message)
        except DTLSError:
            pass
        finally:
            counters.live -= 1

    async def accept() -> None:
        async for conn in endpoint:
            counters.accept()
            task = asyncio.ensure_future(echo(conn))
            peers.add(task)
            task.add_done_callback(peers.discard)

    acceptor = asyncio.ensure_future(accept())
    ticker: asyncio.Future[None] | None = None
    say({"port": port})
    loop = asyncio.get_running_loop()
    while True:
        request = json.loads(await loop.run_in_executor(None, read_line))
        if request["op"] == "quit":
            break
        reply: dict[str, Any] = counters.answer(request)
        if request["op"] == "usage":
            stats = endpoint.stats()
            reply["stats"] = stats
            reply["failed"] = stats["handshakes_refused"]
        if request["op"] == "lag_start":
            ticker = asyncio.ensure_future(_ticker(counters))
        say(reply)
    acceptor.cancel()
    if ticker is not None:
        ticker.cancel()
    await endpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.endpoint_server")
    parser.add_argument("--contender", choices=["dtls_peer", "trio"], required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--max-connections", type=int, default=20_000)
    args = parser.parse_args()
    setup_process(args.cpu)
    keys = keys_for(args.keys, "server")
    if args.contender == "trio":
        from .contenders.trio_endpoint import run_server

        run_server(keys)
    elif args.loop == "uvloop":
        import uvloop

        uvloop.run(serve_dtls_peer(keys, args.max_connections))
    else:
        asyncio.run(serve_dtls_peer(keys, args.max_connections))


if __name__ == "__main__":
    main()
