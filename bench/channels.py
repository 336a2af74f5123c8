"""Reliable channels, side by side: a bulk transfer over dtls_peer's channels and over aiortc's
SCTP on a dtls_peer datagram connection (the baseline), on loopback, clean and through loss.

    python -m bench.channels [--mib 64] [--message-kib 1024] [--loss 0,0.01,0.05]
        [--stacks aiortc,channels] [--mtu 1200] [--seed 1] [--json PATH]

Each run is a fresh sender process (the DTLS client; it opens the channel) and receiver
process (bench/channels_peer.py), plus, with loss, a relay process between them that loses
that share of the datagrams each way (bench/channels_relay.py, the tests' impairment proxy;
its CPU is reported apart, since it is neither peer's). Without loss the peers talk directly.
Per run: MiB/s (``--mib`` MiB in ``--message-kib`` messages, from the sender's first send to
the receiver's answer that all arrived in order), CPU seconds per MiB (process CPU time of
sender plus receiver over the same span) and each end's peak RSS growth while transferring.

The ``channels`` stack needs the channel API (``DTLSPeerConnection(..., channels=True)``,
issue 12); with a build that has none it is skipped with a message saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import tempfile
from typing import Any

from dtls_peer import DTLSPeerConnection

from .__main__ import machine, make_keys
from .endpoint import Process

STACKS = {
    "aiortc": "aiortc SCTP over dtls_peer datagrams",
    "channels": "dtls_peer channels",
}
MIB = 1 << 20


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def channels_available() -> bool:
    return "channels" in inspect.signature(DTLSPeerConnection.__init__).parameters


async def one_run(stack: str, loss: float, keys: str, args: argparse.Namespace) -> dict[str, Any]:
    size = args.message_kib * 1024
    count = args.mib * MIB // size
    peer = [sys.executable, "-m", "bench.channels_peer"]
    options = ["--stack", stack, "--keys", keys, "--count", str(count), "--size", str(size)]
    options += ["--mtu", str(args.mtu)]
    sender = await Process.start([*peer, "sender", *options])
    receiver = await Process.start([*peer, "receiver", *options])
    processes = [sender, receiver]
    relay: Process | None = None
    try:
        sender_port = (await sender.reply())["port"]
        receiver_port = (await receiver.reply())["port"]
        for_sender: list[Any] = ["127.0.0.1", receiver_port]
        for_receiver: list[Any] = ["127.0.0.1", sender_port]
        if loss > 0:
            ends = ["--a", f"127.0.0.1:{sender_port}", "--b", f"127.0.0.1:{receiver_port}"]
            relay = await Process.start(
                [
                    sys.executable,
                    "-m",
                    "bench.channels_relay",
                    "--loss",
                    str(loss),
                    "--seed",
                    str(args.seed),
                    *ends,
                ]
            )
            processes.append(relay)
            addresses = await relay.reply()
            for_sender, for_receiver = addresses["for_a"], addresses["for_b"]
        sender.send({"peer": for_sender})
        receiver.send({"peer": for_receiver})
        sent, got = await asyncio.wait_for(asyncio.gather(sender.reply(), receiver.reply()), args.run_limit)
        result: dict[str, Any] = {
            "mib_per_s": args.mib / sent["seconds"],
            "seconds": sent["seconds"],
            "cpu_s_per_mib": (sent["cpu"] + got["cpu"]) / args.mib,
            "sender_rss_growth_mib": sent["rss_growth"] / MIB,
            "receiver_rss_growth_mib": got["rss_growth"] / MIB,
            "received_bytes": got["received"],
        }
        if relay is not None:
            relay.proc.stdin.close()  # type: ignore[union-attr]
            report = await relay.reply()
            result["relay_cpu_s"] = report["cpu"]
            result["relay"] = report["counters"]
        return result
    except (asyncio.TimeoutError, RuntimeError) as e:
        return {"error": str(e) or f"no result within {args.run_limit} s"}
    finally:
        for process in processes:
            await process.stop()


def row(stack: str, loss: float, result: dict[str, Any]) -> str:
    name = f"{STACKS[stack]:<40} {loss:>5.0%}"
    if "error" in result:
        return f"{name}  failed: {result['error']}"
    line = (
        f"{name} {result['mib_per_s']:>8.1f} {result['cpu_s_per_mib']:>10.4f}"
        f" {result['sender_rss_growth_mib']:>9.1f} {result['receiver_rss_growth_mib']:>9.1f}"
    )
    if "relay" in result:
        lost = [result["relay"][d].get("lost", 0) for d in ("a_to_b", "b_to_a")]
        line += f"   relay CPU {result['relay_cpu_s']:.1f} s, lost {lost[0]} / {lost[1]} datagrams"
    return line


async def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.channels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mib", type=int, default=64, help="MiB to transfer per run (default 64)")
    parser.add_argument("--message-kib", type=int, default=1024, help="message size (default 1024 KiB)")
    parser.add_argument("--loss", default="0,0.01,0.05", help="loss each way, comma-separated")
    parser.add_argument("--stacks", default="aiortc,channels", help="comma-separated: aiortc, channels")
    parser.add_argument("--mtu", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1, help="the relay's loss pattern")
    parser.add_argument("--run-limit", type=float, default=600.0, help="seconds before a run counts as hung")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    stacks = args.stacks.split(",")
    for stack in stacks:
        if stack not in STACKS:
            parser.error(f"unknown stack {stack!r}; choose from {', '.join(STACKS)}")
    if "channels" in stacks and not channels_available():
        log(
            "bench.channels: skipping 'channels': this dtls_peer build's DTLSPeerConnection takes no "
            "channels= option (the channel API of issue 12 has not landed in it)"
        )
        stacks.remove("channels")
    losses = [float(x) for x in args.loss.split(",")]
    results: dict[str, Any] = {"machine": machine(), "settings": vars(args), "runs": []}
    print(
        f"{args.mib} MiB in {args.message_kib} KiB messages, mtu {args.mtu}, loopback; "
        f"load average {results['machine']['load_average_at_start'][0]:.2f}"
    )
    print(f"{'stack':<40} {'loss':>5} {'MiB/s':>8} {'CPU s/MiB':>10} {'send RSS+':>9} {'recv RSS+':>9}")
    with tempfile.TemporaryDirectory() as keys:
        make_keys(keys, "p256")
        for loss in losses:
            for stack in stacks:
                result = await one_run(stack, loss, keys, args)
                results["runs"].append({"stack": stack, "loss": loss, **result})
                print(row(stack, loss, result), flush=True)
    print("RSS+: peak RSS growth while transferring, MiB; loss is each way")
    if args.json:
        with open(args.json, "w") as f:  # noqa: ASYNC230 (once, after every run)
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    asyncio.run(main())
