"""Runs every contender under each event loop, prints one table per loop and writes JSON.

    python -m bench [--loops asyncio,uvloop] [--same-process] [--json PATH] [counts...]

Each (loop, contender) runs in fresh processes: an echo server and a client that runs the
workloads (or one process for both with --same-process)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

from .report import markdown, print_table, targets

CONTENDERS = ["plain_udp", "pyopenssl_executor", "pyopenssl_membio", "dtls_peer", "dtls_peer_batch"]


def make_keys(directory: str, key_type: str) -> None:
    from dtls_peer import Identity

    for side in ("client", "server"):
        identity = Identity.generate(key_type)  # type: ignore[arg-type]
        identity.save(f"{directory}/{side}.crt", f"{directory}/{side}.key")
        with open(f"{directory}/{side}.id", "w") as f:
            f.write(identity.node_id)


def peer_command(role: str, loop: str, keys: str, args: argparse.Namespace, contender: str = "") -> list[str]:
    command = [sys.executable, "-m", "bench.peer", role, "--loop", loop, "--keys", keys]
    if role != "server":
        command += [
            "--contender", contender,
            "--handshakes", str(args.handshakes),
            "--echoes", str(args.echoes),
            "--messages", str(args.messages),
            "--window", str(args.window),
            "--connections", str(args.connections),
            "--sizes", ",".join(map(str, args.sizes)),
            "--only", args.only,
        ]  # fmt: skip
    return command


# One contender's workloads under one loop; a run that takes longer has hung and is reported.
RUN_LIMIT = 900


def run_one(loop: str, contender: str, keys: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        return run_processes(loop, contender, keys, args)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {RUN_LIMIT} s"}


def run_processes(loop: str, contender: str, keys: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.same_process:
        out = subprocess.run(
            peer_command("both", loop, keys, args, contender),
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT,
        )
    else:
        server = subprocess.Popen(
            peer_command("server", loop, keys, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            port = server.stdout.readline().strip()
            command = [*peer_command("client", loop, keys, args, contender), "--port", port]
            out = subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {"python": platform.python_version()}
    for label, module in (("pyOpenSSL", "OpenSSL"), ("uvloop", "uvloop"), ("dtls_peer", "dtls_peer")):
        try:
            versions[label] = __import__(module).__version__
        except ImportError:
            versions[label] = "missing"
    try:
        from OpenSSL import SSL

        versions["pyOpenSSL's OpenSSL"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "versions": versions,
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--loops", default="asyncio,uvloop", help="comma-separated: asyncio, uvloop")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    parser.add_argument("--same-process", action="store_true", help="client and server in one process")
    parser.add_argument("--handshakes", type=int, default=200, help="fresh handshakes timed")
    parser.add_argument("--echoes", type=int, default=2000, help="sequential 64-byte round trips timed")
    parser.add_argument("--messages", type=int, default=20000, help="echoes per throughput run")
    parser.add_argument("--window", type=int, default=32, help="messages in flight in throughput runs")
    parser.add_argument(
        "--connections", type=int, default=1000, help="connections held for the memory figure"
    )
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 1024, 1200])
    parser.add_argument(
        "--only", default="", help="comma-separated subset of: memory, handshake, echo_rtt, throughput, lag"
    )
    parser.add_argument(
        "--key-type",
        default="p256",
        choices=["p256", "ed25519", "rsa", "secp256k1"],
        help="node key of both peers; other than p256 only dtls_peer can use it (the pyOpenSSL "
        "contenders present the key's own certificate, which needs P-256 for ECDHE-ECDSA)",
    )
    parser.add_argument("--json", default="bench-results.json", help="where to write the results")
    parser.add_argument("--markdown", default="", help="also write the tables as Markdown here")
    args = parser.parse_args()
    if args.key_type != "p256" and set(args.contenders.split(",")) - {"dtls_peer"}:
        parser.error("--key-type other than p256 needs --contenders dtls_peer")
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": machine(),
        "mode": "same process" if args.same_process else "two processes",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "results": {},
    }
    started = time.time()
    with tempfile.TemporaryDirectory() as keys:
        make_keys(keys, args.key_type)
        for loop in args.loops.split(","):
            report["results"][loop] = {}
            for contender in args.contenders.split(","):
                print(f"running {contender} on {loop} ...", file=sys.stderr, flush=True)
                report["results"][loop][contender] = run_one(loop, contender, keys, args)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["seconds"] = round(time.time() - started, 1)
    report["targets"] = {loop: targets(results) for loop, results in report["results"].items()}
    for loop, results in report["results"].items():
        print_table(f"{loop}, {report['mode']}", results, report["targets"][loop])
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            for loop, results in report["results"].items():
                f.write(markdown(f"{loop}, {report['mode']}", results, report["targets"][loop]) + "\n")
    print(f"\nwrote {args.json} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
