"""trio's ``DTLSEndpoint`` (pyOpenSSL underneath, stateless cookies of its own): the Python
anchor for many peers on one socket, in ``python -m bench.endpoint``.

The server and the clients speak the same control lines as dtls_peer's (bench/endpoint_common.py)
and use the same pyOpenSSL context as the other pyOpenSSL contenders: P-256 certificates, one AEAD
suite, the peer's node ID pinned in the verify callback, MTU 1,400. Every server peer has a task
that echoes what it receives, as trio's ``serve`` requires (the channel closes when it returns)."""

from __future__ import annotations

import json
import socket
import time

import trio
from OpenSSL import SSL

from ..endpoint_common import (
    ECHO_CHUNK,
    HANDSHAKE_LIMIT,
    TICK,
    ClientResult,
    ServerCounters,
    batches,
    read_line,
    say,
)
from . import MTU, Keys
from .pyopenssl_common import context

# trio's own default. With 0.25 s (dtls_peer's), a busy trio server sees retransmitted
# ClientHellos while it is still answering the first, makes a second channel for the address
# that replaces the first, and about one peer in five of a batch of 100 handshakes "completes"
# on a channel that no longer carries data (measured here: 20 of 100 echoes lost).
INITIAL_RETRANSMIT = 1.0


async def _bound_socket() -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock


async def _ticker(counters: ServerCounters) -> None:
    while counters.ticking:
        started = trio.current_time()
        await trio.sleep(TICK)
        counters.tick(trio.current_time() - started - TICK)


async def _serve_peer(channel: trio.DTLSChannel, counters: ServerCounters) -> None:
    channel.set_ciphertext_mtu(MTU)
    try:
        # trio has no handshake timeout of its own; a client that vanished mid-handshake
        # would hold this task for ever.
        with trio.fail_after(HANDSHAKE_LIMIT):
            await channel.do_handshake(initial_retransmit_timeout=INITIAL_RETRANSMIT)
    except (trio.TooSlowError, trio.BrokenResourceError, SSL.Error) as e:
        counters.fail(e)
        return
    counters.accept()
    try:
        while True:
            await channel.send(await channel.receive())
    except (trio.ClosedResourceError, trio.BrokenResourceError, SSL.Error):
        pass
    finally:
        counters.live -= 1


async def _server(keys: Keys) -> None:
    counters = ServerCounters()
    sock = await _bound_socket()
    endpoint = trio.DTLSEndpoint(sock)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve, context(keys), _serve_peer, counters)
        say({"port": sock.getsockname()[1]})
        while True:
            request = json.loads(await trio.to_thread.run_sync(read_line, abandon_on_cancel=True))
            if request["op"] == "quit":
                break
            reply = counters.answer(request)
            if request["op"] == "lag_start":
                nursery.start_soon(_ticker, counters)
            say(reply)
        nursery.cancel_scope.cancel()
    endpoint.close()


def run_server(keys: Keys) -> None:
    trio.run(_server, keys)


async def _client(
    port: int, keys: Keys, result: ClientResult, held: list[tuple[trio.DTLSEndpoint, trio.DTLSChannel]]
) -> None:
    # Each client peer is its own endpoint on its own socket, as a separate node would be.
    endpoint = trio.DTLSEndpoint(await _bound_socket())
    # A context per connection: trio's connect() sets options on the context it is given, and
    # pyOpenSSL (>= 25) refuses to change a context that a connection already uses.
    channel = endpoint.connect(("127.0.0.1", port), context.__wrapped__(keys))
    channel.set_ciphertext_mtu(MTU)
    held.append((endpoint, channel))
    started = time.perf_counter()
    try:
        with trio.fail_after(HANDSHAKE_LIMIT):
            await channel.do_handshake(initial_retransmit_timeout=INITIAL_RETRANSMIT)
    except (trio.TooSlowError, trio.BrokenResourceError, SSL.Error) as e:
        result.fail(e)
        return
    result.done(time.perf_counter() - started)


async def _echo(channel: trio.DTLSChannel) -> bool:
    """One message each way: the peer is really connected, not only counted."""
    with trio.move_on_after(30):
        await channel.send(b"ping")
        return await channel.receive() == b"ping"
    return False


async def _clients(port: int, keys: Keys, count: int, batch: int) -> None:
    held: list[tuple[trio.DTLSEndpoint, trio.DTLSChannel]] = []
    say({"ready": True})
    await trio.to_thread.run_sync(read_line, abandon_on_cancel=True)
    result = ClientResult()
    for size in batches(count, batch):
        async with trio.open_nursery() as nursery:
            for _ in range(size):
                nursery.start_soon(_client, port, keys, result, held)
    report = result.report()
    echoed = 0

    async def echo(channel: trio.DTLSChannel) -> None:
        nonlocal echoed
        ok = await _echo(channel)  # awaited first: `echoed += await ...` would read echoed early
        echoed += ok

    for start in range(0, len(held), ECHO_CHUNK):
        async with trio.open_nursery() as nursery:
            for _, channel in held[start : start + ECHO_CHUNK]:
                nursery.start_soon(echo, channel)
    say({**report, "echoed": echoed})
    await trio.to_thread.run_sync(read_line, abandon_on_cancel=True)
    for endpoint, channel in held:
        channel.close()
        endpoint.close()


def run_clients(port: int, keys: Keys, count: int, batch: int) -> None:
    trio.run(_clients, port, keys, count, batch)
