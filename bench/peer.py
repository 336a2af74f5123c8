"""One benchmark process: ``server`` (echo side behind a control port), ``client`` (runs the
workloads against a server process) or ``both`` (the --same-process variant). Prints JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from collections.abc import Coroutine
from typing import Any

from .contenders import Keys
from .server import RemoteServer, Server, serve_control
from .workloads import STALL, Client, ServerApi


def keys_for(directory: str, side: str) -> Keys:
    other = "server" if side == "client" else "client"
    with open(f"{directory}/{side}.id") as f:
        node_id = f.read().strip()
    with open(f"{directory}/{other}.id") as f:
        peer_node_id = f.read().strip()
    return Keys(f"{directory}/{side}.crt", f"{directory}/{side}.key", node_id, peer_node_id)


async def run_workloads(server: ServerApi, args: argparse.Namespace, same_process: bool) -> dict[str, Any]:
    client = Client(server, args.contender, keys_for(args.keys, "client"), same_process)
    results: dict[str, Any] = {}

    async def step(name: str, work: Coroutine[Any, Any, dict[str, Any]]) -> None:
        try:
            results[name] = await asyncio.wait_for(work, STALL)
        except Exception as e:  # a stalled or failing workload is reported, the rest go on
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            await server.close_all()

    batched = args.contender.endswith("_batch")
    wanted = set(args.only.split(",")) if args.only else None

    def want(workload: str) -> bool:
        return wanted is None or workload in wanted

    # Memory first, in a fresh process, so earlier workloads' freed memory does not hide it.
    if not batched:
        if want("memory"):
            await step("memory", client.memory(args.connections))
        if args.contender != "plain_udp" and want("handshake"):
            await step("handshake", client.handshakes(args.handshakes))
        if want("echo_rtt"):
            await step("echo_rtt", client.echo_rtt(args.echoes))
    if want("throughput"):
        for size in args.sizes:
            await step(f"throughput_{size}", client.throughput(args.messages, size, args.window, False))
    if want("lag"):
        await step("lag", client.throughput(args.messages, 1024, args.window, True))
    return results


async def main_async(args: argparse.Namespace) -> None:
    if args.role == "server":
        await serve_control(keys_for(args.keys, "server"))
        os._exit(0)
    if args.role == "both":
        results = await run_workloads(Server(keys_for(args.keys, "server")), args, True)
    else:
        remote = await RemoteServer.connect(args.port)
        results = await run_workloads(remote, args, False)
    print(json.dumps(results), flush=True)
    # Done: do not wait for executor threads still blocked in a socket call (the executor
    # contender's leftovers), which asyncio.run() would join forever.
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["server", "client", "both"])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--contender", default="dtls_peer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--echoes", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated subset of the workloads")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 1024, 1200])
    args = parser.parse_args()
    # Two sockets per connection on the same-process variant; lift the soft descriptor limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main_async(args))
    else:
        asyncio.run(main_async(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
