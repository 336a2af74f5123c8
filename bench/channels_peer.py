"""One end of a ``python -m bench.channels`` transfer, in its own process.

    python -m bench.channels_peer sender|receiver --stack aiortc|channels --keys DIR
        --count N --size BYTES [--mtu 1200]

Speaks JSON lines with bench.channels: prints ``{"port": P}`` once its UDP socket is bound,
reads ``{"peer": [host, port]}`` (the peer, or the loss relay's side for it), runs the
handshake and opens the channel, moves the messages, prints its figures, and exits when its
stdin closes. The sender is the DTLS client and opens the channel; each message starts with
its 8-byte sequence number, which the receiver checks (order and size), then it answers
``done`` on the channel; the sender's clock runs from its first send to that answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Protocol, Union

from dtls_peer import DTLSPeerConnection, Identity

from .server import rss_bytes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from aiortc_link import ChannelAcceptor, close_sctp, create_channel, open_sctp, wait_connected

# Handshake, association and channel opening on loopback: anything longer has failed.
SETUP_LIMIT = 30.0
# aiortc only sends messages up to what it believes its peer takes; its peer here (aiortc)
# reassembles any size, so it is told the same limit as dtls_peer channels' default.
AIORTC_PEER_MAX_MESSAGE = 16 << 20
DONE = b"done"

Message = Union[bytes, str]


class Channel(Protocol):
    async def send(self, data: Message) -> None: ...
    async def recv(self) -> Message: ...


def reply(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def read_request() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("bench.channels_peer: stdin closed before the peer's address came")
    request: dict[str, Any] = json.loads(line)
    return request


def load(keys: str, side: str) -> tuple[Identity, str]:
    other = "server" if side == "client" else "client"
    with open(f"{keys}/{other}.id") as f:
        peer_id = f.read().strip()
    return Identity.load(f"{keys}/{side}.crt", f"{keys}/{side}.key"), peer_id


async def open_aiortc(conn: DTLSPeerConnection, sender: bool) -> tuple[Channel, Any]:
    await conn.handshake()
    sctp = await open_sctp(conn, peer_max_message_size=AIORTC_PEER_MAX_MESSAGE)
    # Listening before the association is up: the sender may open its channel at once.
    incoming = ChannelAcceptor(sctp)
    await wait_connected(sctp, SETUP_LIMIT)
    if sender:
        channel = create_channel(sctp, "bench")
        await channel.wait_open(SETUP_LIMIT)
    else:
        channel = await incoming.accept(SETUP_LIMIT)
    return channel, sctp


async def open_channels(conn: DTLSPeerConnection, sender: bool) -> tuple[Channel, Any]:
    await conn.handshake()
    native: Any = conn  # the channel API (issue 12); bench.channels checks it exists first
    channel = await native.create_channel("bench") if sender else await native.accept_channel()
    return channel, None


async def send_all(channel: Channel, count: int, size: int) -> None:
    body = os.urandom(size)
    for i in range(count):
        await channel.send(i.to_bytes(8, "big") + body[8:])
    if await channel.recv() != DONE:
        raise RuntimeError("the receiver's answer was not 'done'")


async def receive_all(channel: Channel, count: int, size: int) -> int:
    received = 0
    for i in range(count):
        message = await channel.recv()
        if not isinstance(message, bytes) or len(message) != size or message[:8] != i.to_bytes(8, "big"):
            raise RuntimeError(f"message {i} arrived wrong (out of order, cut or not binary)")
        received += len(message)
    await channel.send(DONE)
    return received


class PeakRss:
    """Samples the process's RSS every 10 ms on a thread (it runs while the event loop is
    busy) and keeps the largest: the peak while transferring, not over the process's life."""

    def __init__(self) -> None:
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def growth(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak - self.start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["sender", "receiver"])
    parser.add_argument("--stack", choices=["aiortc", "channels"], required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--mtu", type=int, default=1200)
    args = parser.parse_args()
    sender = args.role == "sender"
    identity, peer_id = load(args.keys, "client" if sender else "server")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    reply(port=sock.getsockname()[1])
    host, port = (await read_request())["peer"]
    options: dict[str, Any] = {"channels": True} if args.stack == "channels" else {}
    conn = DTLSPeerConnection(
        sock,
        (host, port),
        identity,
        expected_node_id=peer_id,
        role="client" if sender else "server",
        mtu=args.mtu,
        **options,
    )
    opener = open_aiortc if args.stack == "aiortc" else open_channels
    channel, sctp = await asyncio.wait_for(opener(conn, sender), SETUP_LIMIT)
    rss, cpu_before, started = PeakRss(), time.process_time(), time.perf_counter()
    if sender:
        await send_all(channel, args.count, args.size)
        received = 0
    else:
        received = await receive_all(channel, args.count, args.size)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    reply(seconds=seconds, cpu=cpu, rss_growth=rss.growth(), received=received)
    # Stay up (the peer may still be waiting for acknowledgements) until bench.channels is done.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if sctp is not None:
        await close_sctp(sctp)
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
