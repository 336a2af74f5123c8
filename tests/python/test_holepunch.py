"""A real hole punch end to end (examples/holepunch.py): two private networks behind two
masquerading NATs in network namespaces, a rendezvous service on the public side, a UDP hole
punch from both sides, then the pinned DTLS upgrade and a message each way. With the direct
path blocked, the handshake ends in HandshakeTimeout and the peers fall back to the relay.

The test builds and removes its namespaces itself (also when it fails); the peers run as
subprocesses inside them (``ip netns exec``), never in this process's namespace. It needs
root and the ``ip`` and ``nft`` tools (.ci/run installs iproute2 and nftables); it skips only
where the machine forbids network namespaces."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from holepunch import PUBLIC_A, PUBLIC_B, Lab, Outcome, run_peers

_labs = itertools.count()

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lab() -> Iterator[Lab]:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found (apt-get install iproute2 nftables)", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    probe = f"dpprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"this machine forbids network namespaces: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    with Lab(prefix=f"dpt{os.getpid()}x{next(_labs)}") as built:
        yield built
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert built.prefix not in leftover, leftover


def check_session(outcome: Outcome, path: str) -> None:
    report = "\n".join(f"{name}: {outcome.lines[name]}\n{outcome.stderr[name]}" for name in ("alice", "bob"))
    assert outcome.status == {"alice": 0, "bob": 0}, report
    nodes = {name: outcome.value(name, "node")[0] for name in ("alice", "bob")}
    for name, other in (("alice", "bob"), ("bob", "alice")):
        assert outcome.value(name, "path") == [path], report
        # Each side verified the node ID it pinned.
        assert outcome.value(name, "peer") == [nodes[other]], report
        assert outcome.value(name, "cipher") == ["ECDHE-ECDSA-AES128-GCM-SHA256"], report
        assert outcome.value(name, "received") == [f"hello from {other} over the {path} path"], report


def test_hole_punch_through_two_nats_then_pinned_dtls(lab: Lab, tmp_path: Path) -> None:
    outcome = run_peers(lab, tmp_path)
    check_session(outcome, "direct")
    # The rendezvous saw each peer behind its NAT's public address, not its private one.
    assert outcome.value("alice", "peer public address")[0].startswith(f"{PUBLIC_B}:")
    assert outcome.value("bob", "peer public address")[0].startswith(f"{PUBLIC_A}:")
    assert outcome.value("alice", "hole punched") == outcome.value("bob", "hole punched") == ["True"]
    assert outcome.value("alice", "direct path failed") == []


def test_blocked_hole_punch_falls_back_to_the_relay_after_handshake_timeout(lab: Lab, tmp_path: Path) -> None:
    lab.block_direct()
    outcome = run_peers(lab, tmp_path)
    for name in ("alice", "bob"):
        assert outcome.value(name, "hole punched") == ["False"], outcome.lines[name]
        assert outcome.value(name, "direct path failed") == ["HandshakeTimeout: handshake timed out"]
    check_session(outcome, "relay")
