"""The table (one per loop), dtls_peer's ratio to each contender, and the issue's targets."""

from __future__ import annotations

from typing import Any, Callable

Results = dict[str, dict[str, Any]]
OTHERS = ["plain_udp", "pyopenssl_executor", "pyopenssl_membio"]
SHORT = {
    "plain_udp": "plain UDP",
    "pyopenssl_executor": "executor",
    "pyopenssl_membio": "memory BIO",
    "dtls_peer": "dtls_peer",
    "dtls_peer_batch": "dp batched",
}


def value(results: Results, contender: str, workload: str, key: str) -> float | None:
    v = results.get(contender, {}).get(workload, {}).get(key)
    return float(v) if isinstance(v, (int, float)) else None


def rows(sizes: list[int]) -> list[tuple[str, str, str]]:
    out = [
        ("handshake p50 (ms)", "handshake", "p50_ms"),
        ("handshake p99 (ms)", "handshake", "p99_ms"),
        ("echo RTT p50 (us)", "echo_rtt", "p50_us"),
        ("echo RTT p99 (us)", "echo_rtt", "p99_us"),
    ]
    for size in sizes:
        w = f"throughput_{size}"
        out += [
            (f"{size} B echoes/s", w, "msgs_per_s"),
            (f"{size} B MB/s", w, "mb_per_s"),
            (f"{size} B client CPU us/msg", w, "client_cpu_us_per_msg"),
            (f"{size} B server CPU us/msg", w, "server_cpu_us_per_msg"),
        ]
    return [
        *out,
        ("memory/conn client (KiB)", "memory", "client_kib"),
        ("memory/conn server (KiB)", "memory", "server_kib"),
        ("loop lag p99 (ms)", "lag", "lag_p99_ms"),
    ]


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def print_table(title: str, results: Results, checks: list[dict[str, Any]]) -> None:
    sizes = sorted({int(w.split("_")[1]) for r in results.values() for w in r if w.startswith("throughput_")})
    contenders = [c for c in SHORT if c in results]
    header = f"{'':28}" + "".join(f"{SHORT[c]:>12}" for c in contenders)
    header += "".join(f"{'dp/' + SHORT[o]:>16}" for o in OTHERS if o in results)
    header += "".join(f"{'batch/' + SHORT[o]:>16}" for o in OTHERS if o in results)
    print(f"\n== {title}")
    print(header)
    for label, workload, key in rows(sizes):
        values = {c: value(results, c, workload, key) for c in contenders}
        line = f"{label:28}" + "".join(f"{fmt(values[c]):>12}" for c in contenders)
        for variant in ("dtls_peer", "dtls_peer_batch"):
            for other in OTHERS:
                if other in results:
                    line += f"{ratio(values.get(variant), values[other]):>16}"
        print(line)
    for c, r in results.items():
        for workload, figures in r.items() if isinstance(r, dict) else []:
            if isinstance(figures, dict) and "error" in figures:
                print(f"  {c} {workload}: {figures['error']}")
        if "error" in r:
            print(f"  {c}: {r['error']}")
    print("targets:")
    for check in checks:
        verdict = "met" if check["met"] else ("MISSED" if check["met"] is not None else "n/a")
        print(f"  {check['target']:58} {check['measured']:>12}  {verdict}")


def targets(results: Results) -> list[dict[str, Any]]:
    def v(c: str, w: str, k: str) -> float | None:
        return value(results, c, w, k)

    def check(
        name: str, measured: float | None, ok: Callable[[float], bool], unit: str = "x"
    ) -> dict[str, Any]:
        shown = "-" if measured is None else (f"{measured:.2f}{unit}")
        return {
            "target": name,
            "measured": shown,
            "value": measured,
            "met": None if measured is None else ok(measured),
        }

    def r(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    t = "throughput_1024"
    dp, batch = v("dtls_peer", t, "msgs_per_s"), v("dtls_peer_batch", t, "msgs_per_s")
    memory = [
        m for m in (v("dtls_peer", "memory", "client_kib"), v("dtls_peer", "memory", "server_kib")) if m
    ]
    lags = [x for x in (v("dtls_peer", "lag", "lag_p99_ms"), v("dtls_peer_batch", "lag", "lag_p99_ms")) if x]
    return [
        check("1024 B throughput >= 10x pyOpenSSL+executor", r(dp, v("pyopenssl_executor", t, "msgs_per_s")),
              lambda x: x >= 10),
        check("1024 B throughput >= 2x memory BIO", r(dp, v("pyopenssl_membio", t, "msgs_per_s")),
              lambda x: x >= 2),
        check("1024 B throughput >= 1.0x plain UDP (per-message API)", r(dp, v("plain_udp", t, "msgs_per_s")),
              lambda x: x >= 1.0),
        check("1024 B throughput >= 3x plain UDP (batched calls)", r(batch, v("plain_udp", t, "msgs_per_s")),
              lambda x: x >= 3),
        check("handshake p50 <= 0.5x pyOpenSSL+executor",
              r(v("dtls_peer", "handshake", "p50_ms"), v("pyopenssl_executor", "handshake", "p50_ms")),
              lambda x: x <= 0.5),
        check("echo RTT p50 <= 1.2x plain UDP",
              r(v("dtls_peer", "echo_rtt", "p50_us"), v("plain_udp", "echo_rtt", "p50_us")),
              lambda x: x <= 1.2),
        check("memory <= 64 KiB per connection (larger side)", max(memory) if memory else None,
              lambda x: x <= 64, " KiB"),
        check("loop lag p99 <= 2 ms while saturating (worse variant)", max(lags) if lags else None,
              lambda x: x <= 2, " ms"),
    ]  # fmt: skip


def markdown(title: str, results: Results, checks: list[dict[str, Any]]) -> str:
    """The same table as ``print_table``, as Markdown (for docs/benchmarks.md)."""
    sizes = sorted({int(w.split("_")[1]) for r in results.values() for w in r if w.startswith("throughput_")})
    contenders = [c for c in SHORT if c in results]
    others = [o for o in OTHERS if o in results]
    head = ["", *(SHORT[c] for c in contenders)]
    head += [f"dp / {SHORT[o]}" for o in others] + [f"batched / {SHORT[o]}" for o in others]
    lines = [f"#### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, workload, key in rows(sizes):
        values = {c: value(results, c, workload, key) for c in contenders}
        cells = [label, *(fmt(values[c]) for c in contenders)]
        cells += [ratio(values.get(v), values[o]) for v in ("dtls_peer", "dtls_peer_batch") for o in others]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | |", "|---|---|---|"]
    for check in checks:
        verdict = "met" if check["met"] else ("**missed**" if check["met"] is not None else "n/a")
        lines.append(f"| {check['target']} | {check['measured']} | {verdict} |")
    return "\n".join(lines) + "\n"
