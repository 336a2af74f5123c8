"""Guards resources and accounting over many connections: descriptors, threads, tasks and
memory stay flat across 1000 connect/exchange/close cycles; abandoned connections release
everything; and every decrypted message is either received once or counted as dropped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import (
    STEP_TIMEOUT,
    ConnectionFactory,
    PairFactory,
    UdpPairFactory,
    address,
    handshake_all,
    recv_within,
    wait_until,
)
from dtls_peer import ConnectionClosed, DTLSPeerConnection, HandshakeError, Identity


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def resources() -> tuple[int, int, int, int]:
    return open_fds(), os_threads(), threading.active_count(), len(asyncio.all_tasks())


@contextlib.contextmanager
def fresh_pair(
    identity_a: Identity, identity_b: Identity
) -> Iterator[tuple[DTLSPeerConnection, DTLSPeerConnection]]:
    """Two new connections pinned to each other over two new sockets, which are closed on exit
    (the connections hold their own duplicates)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sa,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sb,
    ):
        sa.bind(("127.0.0.1", 0))
        sb.bind(("127.0.0.1", 0))
        yield (
            DTLSPeerConnection(sa, address(sb), identity_a, expected_node_id=identity_b.node_id),
            DTLSPeerConnection(sb, address(sa), identity_b, expected_node_id=identity_a.node_id),
        )


async def one_cycle(identity_a: Identity, identity_b: Identity, i: int) -> None:
    """Create, handshake, exchange and close one pair; the sockets are closed here too."""
    with fresh_pair(identity_a, identity_b) as (a, b):
        try:
            await handshake_all(a, b)
            await a.send(b"ping %d" % i)
            assert await recv_within(b) == b"ping %d" % i
            await b.send(b"pong %d" % i)
            assert await recv_within(a) == b"pong %d" % i
        finally:
            await a.close()
            await b.close()


def no_growth(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    return all(a <= b for a, b in zip(after, before))


async def settle(baseline: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The resources once released ones are gone (the I/O thread lets go of sockets shortly
    after close), or what is still held after a generous wait."""
    now = resources()
    for _ in range(500):
        gc.collect()
        now = resources()
        if no_growth(baseline, now):
            break
        await asyncio.sleep(0.01)
    return now


async def test_a_thousand_cycles_leave_no_descriptor_thread_task_or_memory_growth(
    identity_a: Identity, identity_b: Identity
) -> None:
    cycles = 1000
    # Warm up: the first connection starts the I/O thread and the loop's waker.
    await one_cycle(identity_a, identity_b, -1)
    baseline = await settle(resources())
    rss = [rss_kib()]
    started = time.monotonic()
    for i in range(cycles):
        await one_cycle(identity_a, identity_b, i)
        if i % 100 == 99:
            rss.append(rss_kib())
    took = time.monotonic() - started
    after = await settle(baseline)
    print(
        f"\n{cycles} cycles in {took:.1f} s; (fds, OS threads, Python threads, tasks) "
        f"{baseline} -> {after}; RSS KiB every 100 cycles: {rss}"
    )
    assert no_growth(baseline, after), f"(fds, OS threads, Python threads, tasks) {baseline} -> {after}"
    # Memory may grow while allocators warm up, but must level off: the second half of the
    # run adds little compared with a connection's worth of buffers times the cycles.
    second_half = rss[-1] - rss[5]
    assert second_half < 8 * 1024, f"RSS still growing: {rss}"
    assert rss[-1] - rss[0] < 32 * 1024, f"RSS grew too much: {rss}"


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_abandoned_handshakes_release_everything(
    udp_pair: UdpPairFactory, identity_a: Identity, identity_b: Identity, how: str
) -> None:
    await one_cycle(identity_a, identity_b, -1)
    baseline = await settle(resources())
    for i in range(100):
        sock, silent = udp_pair(socket.AF_INET)
        conn = DTLSPeerConnection(sock, address(silent), identity_a, expected_node_id=identity_b.node_id)
        sock.close()
        handshake = asyncio.ensure_future(conn.handshake())
        # Let the ClientHello go out (the peer never answers).
        await asyncio.sleep(0.001 * (i % 3))
        if how == "close":
            await conn.close()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(handshake, STEP_TIMEOUT)
        else:
            # Dropped without close(): the pending handshake() is abandoned with it.
            handshake.cancel()
            with pytest.raises(asyncio.CancelledError):
                await handshake
            del conn, handshake
        silent.close()
    after = await settle(baseline)
    assert no_growth(baseline, after), f"(fds, OS threads, Python threads, tasks) {baseline} -> {after}"


@pytest.mark.parametrize("seed", [11, 12])
async def test_every_decrypted_message_is_received_once_or_counted_as_dropped(
    make_pair: PairFactory, seed: int
) -> None:
    # A tiny receive queue and a receiver that cancels recv() at random while the sender
    # floods: some messages must be dropped, and every one is accounted for.
    pair = make_pair(socket.AF_INET, receive_queue_size=8)
    await handshake_all(pair.a, pair.b)
    rng = random.Random(seed)
    count = 2000
    sent = [b"m%05d" % i for i in range(count)]
    received: list[bytes] = []
    done_sending = asyncio.Event()

    async def sender() -> None:
        for i, message in enumerate(sent):
            await pair.a.send(message)
            if i % 50 == 49:
                await asyncio.sleep(0)
        done_sending.set()

    async def receiver() -> int:
        cancellations = 0
        for _ in range(50 * count):
            if done_sending.is_set() and pair.b.stats()["messages_in"] == len(received) + dropped():
                return cancellations
            task = asyncio.ensure_future(pair.b.recv())
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            if rng.random() < 0.5:
                task.cancel()
            try:
                received.append(await task)
            except asyncio.CancelledError:
                cancellations += 1
            if rng.random() < 0.1:
                # A slow consumer now and then, so the queue overflows.
                await asyncio.sleep(0.002)
        raise AssertionError("the receiver never caught up")

    def dropped() -> int:
        return int(pair.b.stats()["dropped"]["queue_full"])

    _, cancellations = await asyncio.wait_for(asyncio.gather(sender(), receiver()), 60)
    # Late datagrams still in flight are decrypted after the sender finished; wait for quiet.
    await asyncio.sleep(0.2)
    while True:
        try:
            received.append(await asyncio.wait_for(pair.b.recv(), 0.2))
        except asyncio.TimeoutError:
            break
    stats = pair.b.stats()
    print(
        f"\nseed {seed}: sent {count}, decrypted {stats['messages_in']}, received {len(received)}, "
        f"dropped queue_full {stats['dropped']['queue_full']}, {cancellations} cancelled recv()s"
    )
    assert cancellations > 0 and stats["dropped"]["queue_full"] > 0, "nothing was cancelled or dropped"
    assert len(received) == len(set(received)), "a message was received twice"
    assert set(received) <= set(sent)
    assert received == sorted(received), "messages were reordered inside the library"
    assert len(received) + stats["dropped"]["queue_full"] == stats["messages_in"]
    await wait_until(lambda: pair.b.is_established, "the session to stay up")


@pytest.mark.parametrize("ending", ["handshake failed", "peer closed"])
async def test_an_ended_connection_lets_a_new_one_use_the_same_socket(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    identity_c: Identity,
    ending: str,
) -> None:
    # The application keeps the ended connection object around and starts over on the same
    # socket: the old one must not take datagrams meant for the new one.
    sock_a, sock_b = udp_pair(socket.AF_INET)
    a = connection(sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, role="client")
    pin = identity_c.node_id if ending == "handshake failed" else identity_a.node_id
    b = connection(sock_b, address(sock_a), identity_b, expected_node_id=pin, role="server")
    if ending == "handshake failed":
        results = await asyncio.wait_for(
            asyncio.gather(a.handshake(), b.handshake(), return_exceptions=True), STEP_TIMEOUT
        )
        assert all(isinstance(r, HandshakeError) for r in results), results
    else:
        await handshake_all(a, b)
        await a.close()
        with pytest.raises(ConnectionClosed):
            await recv_within(b)
    a2 = connection(sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, role="client")
    b2 = connection(sock_b, address(sock_a), identity_b, expected_node_id=identity_a.node_id, role="server")
    await handshake_all(a2, b2)
    for i in range(20):
        await a2.send(b"new %d" % i)
        assert await recv_within(b2) == b"new %d" % i


async def test_established_connections_dropped_without_close_release_everything(
    identity_a: Identity, identity_b: Identity
) -> None:
    await one_cycle(identity_a, identity_b, -1)
    baseline = await settle(resources())
    for i in range(100):
        with fresh_pair(identity_a, identity_b) as (a, b):
            await handshake_all(a, b)
            await a.send(b"last words %d" % i)
            assert await recv_within(b) == b"last words %d" % i
            # A pending recv() is abandoned along with the connection.
            pending = asyncio.ensure_future(a.recv())
            await asyncio.sleep(0)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            del a, b, pending
    after = await settle(baseline)
    assert no_growth(baseline, after), f"(fds, OS threads, Python threads, tasks) {baseline} -> {after}"
