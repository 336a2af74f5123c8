"""A sender whose socket is full must never wait forever (issue 10, "the send stall").

Loopback UDP never reports a full socket (the kernel frees a datagram's buffer as it is
delivered), so the sender here runs in a network namespace of its own whose loopback device
has a rate-limiting queue (``tc qdisc ... tbf``): datagrams wait in that queue, charged to
the sending socket, and with a small ``SO_SNDBUF`` the socket reports ``EAGAIN`` as a slow
link would. Traffic stays on 127.0.0.1. Before the fix, the datagrams left in the outbox by
a refused send waited for an event that never came on an idle connection, and ``send()``
waited forever once the outbox was full.

The namespace is made with ``unshare -n`` for one subprocess (this file run as a script), so
it disappears with it. It needs root and ``tc`` (iproute2, which .ci/run installs); it skips
only where the machine forbids network namespaces."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

MESSAGES = 600
SIZE = 1000
# 600 kB at 8 Mbit/s takes 0.6 s on the wire; the socket takes two such datagrams at most.
RATE_BITS = 8_000_000
SNDBUF = 4096
CHILD_LIMIT = 20.0

pytestmark = pytest.mark.timeout(120)


def test_a_sender_on_a_full_socket_gets_every_message_through() -> None:
    missing = [tool for tool in ("unshare", "tc", "ip") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found (apt-get install util-linux iproute2)", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"this machine forbids network namespaces: {probe.stderr.strip()}")
    child = subprocess.run(
        ["unshare", "-n", sys.executable, __file__],
        capture_output=True,
        text=True,
        timeout=CHILD_LIMIT + 30,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "delivered", result
    assert result["received"] == MESSAGES, result
    # The sender really had to wait for the socket: the messages took about the link's time.
    wire_time = MESSAGES * SIZE * 8 / RATE_BITS
    assert result["seconds"] >= 0.7 * wire_time, result


def message(i: int) -> bytes:
    return b"%08d" % i + b"." * (SIZE - 8)


def slow_down_loopback() -> None:
    """In the fresh namespace: loopback up, behind a queue that drains at RATE_BITS."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tbf = ["tbf", "rate", f"{RATE_BITS}bit", "burst", "16kb", "latency", "500ms"]
    subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", *tbf], check=True)


async def send_through_a_slow_loopback() -> dict[str, object]:
    """A handshake, then a client sending faster than the link drains."""
    from dtls_peer import DTLSPeerConnection, Identity

    sockets = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    sender_sock, receiver_sock = sockets
    sender_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    receiver_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 212_992)
    ids = Identity.generate(), Identity.generate()
    sender = DTLSPeerConnection(
        sender_sock, receiver_sock.getsockname(), ids[0], expected_node_id=ids[1].node_id, role="client"
    )
    receiver = DTLSPeerConnection(
        receiver_sock, sender_sock.getsockname(), ids[1], expected_node_id=ids[0].node_id, role="server"
    )
    await asyncio.wait_for(asyncio.gather(sender.handshake(), receiver.handshake()), 10)
    got: list[bytes] = []

    async def send_all() -> None:
        for i in range(MESSAGES):
            await sender.send(message(i))

    async def receive_all() -> None:
        while len(got) < MESSAGES:
            got.append(await receiver.recv())

    start = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(send_all(), receive_all()), CHILD_LIMIT)
        outcome = "delivered" if got == [message(i) for i in range(len(got))] else "out of order"
    except asyncio.TimeoutError:
        outcome = "stalled"
    seconds = time.monotonic() - start
    await sender.close()
    await receiver.close()
    return {"outcome": outcome, "received": len(got), "seconds": seconds}


if __name__ == "__main__":
    slow_down_loopback()
    print(json.dumps(asyncio.run(send_through_a_slow_loopback())))
