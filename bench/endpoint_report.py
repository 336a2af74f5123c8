"""The table of ``python -m bench.endpoint`` (one column per contender) and issue 11's targets."""

from __future__ import annotations

from typing import Any

from .report import fmt

Results = dict[str, dict[str, Any]]
SHORT = {"dtls_peer": "dtls_peer", "trio": "trio"}

# (label, workload, path of keys into its result)
ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("accepts/s (wall clock)", "accepts", ("accepts_per_s",)),
    ("accepts per server CPU second", "accepts", ("accepts_per_cpu_s",)),
    ("server CPU per accept (ms)", "accepts", ("server_cpu_ms_per_accept",)),
    ("handshake p50, client (ms)", "accepts", ("handshake", "p50_ms")),
    ("handshake p99, client (ms)", "accepts", ("handshake", "p99_ms")),
    ("accepts: peers ok / failed", "accepts", ("ok",)),
    ("memory: peers held", "memory", ("live_peers",)),
    ("memory per peer, server (KiB)", "memory", ("kib_per_peer",)),
    ("server RSS with all peers (MiB)", "memory", ("rss_after_mib",)),
    ("lag p50 during burst (ms)", "lag", ("lag", "p50_ms")),
    ("lag p99 during burst (ms)", "lag", ("lag", "p99_ms")),
    ("lag max during burst (ms)", "lag", ("lag", "max_ms")),
    ("burst: all connected after (s)", "lag", ("seconds",)),
]


def value(results: Results, contender: str, workload: str, path: tuple[str, ...]) -> float | None:
    v: Any = results.get(contender, {}).get(workload, {})
    for key in path:
        v = v.get(key) if isinstance(v, dict) else None
    return float(v) if isinstance(v, (int, float)) else None


def cell(results: Results, contender: str, workload: str, path: tuple[str, ...]) -> str:
    if path == ("ok",):
        r = results.get(contender, {}).get(workload, {})
        return f"{r['ok']} / {r['failed']}" if "ok" in r else "-"
    return fmt(value(results, contender, workload, path))


def targets(results: Results) -> list[dict[str, Any]]:
    def check(name: str, measured: float | None, ok: bool, unit: str) -> dict[str, Any]:
        return {
            "target": name,
            "measured": "-" if measured is None else f"{measured:,.1f}{unit}",
            "value": measured,
            "met": None if measured is None else ok,
        }

    per_cpu = value(results, "dtls_peer", "accepts", ("accepts_per_cpu_s",))
    wall = value(results, "dtls_peer", "accepts", ("accepts_per_s",))
    memory = value(results, "dtls_peer", "memory", ("kib_per_peer",))
    peers = value(results, "dtls_peer", "memory", ("live_peers",))
    lag = value(results, "dtls_peer", "lag", ("lag", "p99_ms"))
    return [
        check("accepts >= 1,000/s on one core (per server CPU second)", per_cpu,
              per_cpu is not None and per_cpu >= 1000, "/s"),
        check("accepts >= 1,000/s on one core (wall clock)", wall, wall is not None and wall >= 1000, "/s"),
        check("10,000 established peers on one socket", peers, peers is not None and peers >= 10_000, ""),
        check("memory per peer <= 48 KiB (server)", memory, memory is not None and memory <= 48, " KiB"),
        check("loop lag p99 <= 5 ms while 1,000 peers connect", lag, lag is not None and lag <= 5, " ms"),
    ]  # fmt: skip


def _notes(results: Results) -> list[str]:
    notes = []
    for contender, workloads in results.items():
        for name, r in workloads.items():
            if "error" in r:
                notes.append(f"{contender} {name}: {r['error']}")
            elif r.get("failed") or r.get("echoed", r.get("ok")) != r.get("ok"):
                notes.append(
                    f"{contender} {name}: {r['failed']} handshakes failed, {r['echoed']} of {r['ok']} "
                    f"echoed; first errors: {r['errors']}"
                )
    return notes


def print_table(results: Results, checks: list[dict[str, Any]]) -> None:
    contenders = [c for c in SHORT if c in results]
    print("\n== one socket, many peers")
    print(f"{'':34}" + "".join(f"{SHORT[c]:>14}" for c in contenders))
    for label, workload, path in ROWS:
        print(f"{label:34}" + "".join(f"{cell(results, c, workload, path):>14}" for c in contenders))
    for note in _notes(results):
        print(f"  {note}")
    print("targets (dtls_peer):")
    for check in checks:
        verdict = "met" if check["met"] else ("MISSED" if check["met"] is not None else "n/a")
        print(f"  {check['target']:58} {check['measured']:>12}  {verdict}")


def markdown(results: Results, checks: list[dict[str, Any]]) -> str:
    contenders = [c for c in SHORT if c in results]
    head = ["", *(SHORT[c] for c in contenders)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, workload, path in ROWS:
        lines.append(
            "| " + " | ".join([label, *(cell(results, c, workload, path) for c in contenders)]) + " |"
        )
    lines += ["", "| target (dtls_peer) | measured | |", "|---|---|---|"]
    for check in checks:
        verdict = "met" if check["met"] else ("**missed**" if check["met"] is not None else "n/a")
        lines.append(f"| {check['target']} | {check['measured']} | {verdict} |")
    lines += ["", *(f"- {note}" for note in _notes(results))]
    return "\n".join(lines) + "\n"
