"""``listen`` and ``connect``: one pinned session that chats over stdin/stdout or echoes.

Status lines (addresses, node IDs, cipher, handshake time, why the session ended) go to
stderr; stdout carries only the peer's messages, one per line, so it can be piped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from typing import Any

from ..connection import DTLSPeerConnection
from ..exceptions import ConnectionClosed, MessageTooLarge
from . import pinned

_STDIN_CHUNK = 65_536


def _session_options(parser: argparse.ArgumentParser) -> None:
    pinned.connection_options(parser)
    parser.add_argument(
        "--echo", action="store_true", help="send every received message back instead of reading stdin"
    )


def add_commands(commands: Any) -> None:
    listen = commands.add_parser(
        "listen",
        help="wait for a peer on a UDP port, then chat (stdin/stdout) or echo",
        description="Wait on a UDP port for the first DTLS datagram, then run a pinned DTLS "
        "session (as the DTLS server) with its sender. Stdin lines are sent as messages; "
        "received messages are printed one per line. EOF on stdin closes the session.",
    )
    listen.add_argument("--port", type=pinned.port_number, required=True, help="UDP port to listen on")
    listen.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDR", help="local address (default 0.0.0.0; :: for IPv6)"
    )
    _session_options(listen)
    listen.set_defaults(run=_run, mode="listen")

    connect = commands.add_parser(
        "connect",
        help="open a pinned session to HOST:PORT, then chat (stdin/stdout) or echo",
        description="Run a pinned DTLS session (as the DTLS client) with the peer at HOST:PORT. "
        "Stdin lines are sent as messages; received messages are printed one per line. EOF on "
        "stdin closes the session.",
    )
    connect.add_argument("peer", type=pinned.host_port, metavar="HOST:PORT", help="the peer's address")
    connect.add_argument("--bind", metavar="ADDR", help="local address (default: any)")
    connect.add_argument(
        "--local-port", type=pinned.port_number, default=0, metavar="P", help="local UDP port (default: any)"
    )
    _session_options(connect)
    connect.set_defaults(run=_run, mode="connect")


# -- the session ---------------------------------------------------------------------------


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes | None]) -> None:
    """Feeds stdin lines to the loop; a thread, because a regular file cannot be polled.

    It reads the raw descriptor: a daemon thread blocked inside ``sys.stdin`` would hold its
    buffer lock while the interpreter shuts down."""

    def put(item: bytes | None) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop has ended
            return False
        return True

    def pump() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(0, _STDIN_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    put(pending)
                put(None)
                return
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                if not put(line):
                    return

    threading.Thread(target=pump, name="dtls-peer-stdin", daemon=True).start()


def _print_message(message: bytes) -> None:
    sys.stdout.buffer.write(message + b"\n")
    sys.stdout.buffer.flush()


async def _receive(conn: DTLSPeerConnection, echo: bool) -> str:
    while True:
        try:
            message = await conn.recv()
        except ConnectionClosed as e:
            return str(e)
        _print_message(message)
        if echo:
            try:
                await conn.send(message)
            except ConnectionClosed as e:
                return str(e)


async def _send_stdin(conn: DTLSPeerConnection) -> bool:
    """Sends stdin lines until end of input (True) or until the session ends (False)."""
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()
    _read_stdin(asyncio.get_running_loop(), lines)
    while True:
        line = await lines.get()
        if line is None:
            return True
        line = line.rstrip(b"\r")
        if not line:
            continue  # DTLS carries no empty message
        try:
            await conn.send(line)
        except MessageTooLarge as e:
            pinned.status(f"line not sent: {e}")
        except ConnectionClosed:
            return False


async def _converse(conn: DTLSPeerConnection, echo: bool) -> int:
    loop = asyncio.get_running_loop()
    stopped = pinned.watch_signals(loop)
    tasks: list[asyncio.Future[Any]] = [stopped]
    try:
        if not await pinned.handshake(conn, stopped):
            return 128 + stopped.result()
        receiving = asyncio.ensure_future(_receive(conn, echo))
        tasks = [receiving, stopped]
        if not echo:
            sending = asyncio.ensure_future(_send_stdin(conn))
            tasks.append(sending)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if sending.done() and sending.result():
                pinned.status("end of input; closing the session")
                return 0
        # The session ends when the peer closes it (sending stops then too) or on a signal.
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            pinned.status("interrupted; closing the session")
            return 128 + stopped.result()
        pinned.status(f"session ended: {receiving.result()}")
        return 0
    finally:
        for task in tasks:
            task.cancel()
        pinned.unwatch_signals(loop)
        await conn.close()


async def _session(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="dtls-peer: log: %(message)s")
    conn = await pinned.open_connection(args)
    return await _converse(conn, args.echo)


def _run(args: argparse.Namespace) -> Any:
    return _session(args)


__all__ = ["add_commands"]
