"""``send`` and ``receive``: one file over a pinned session with data channels.

Either side may listen (``--port``) or dial (``send FILE HOST:PORT``, ``receive --from
HOST:PORT``). The sender opens one channel and sends, as text, a header (JSON: name, size and
SHA-256 of the file), then the file in binary messages; the receiver writes them to a hidden
temporary file beside the final one, checks size and SHA-256, and only then renames it into
place. Its verdict (JSON ``{"ok": true}`` or ``{"ok": false, "error": ...}``) travels back, so
both ends exit 0 only for a file that arrived whole. A transfer cut short (the peer closed,
died, or fell silent past ``--idle-timeout``) is an error on both ends, and the receiver
removes what it had written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..channel import DataChannel
from ..connection import DTLSPeerConnection
from ..exceptions import ChannelClosed, ConnectionClosed
from . import pinned
from .errors import CliError
from .progress import Progress

LABEL = "dtls-peer-file"
PROTOCOL = "dtls-peer-file/1"
# Binary messages of the file: large enough that per-message costs vanish, small enough that
# the progress moves and a slow disk never holds much in memory.
CHUNK = 256 * 1024
# Unless given: a dead peer is noticed within this many seconds (a keepalive goes out after
# KEEPALIVE quiet seconds, so a live but idle peer is never taken for dead).
IDLE_TIMEOUT = 15.0
KEEPALIVE = 2.0
_HEX = frozenset("0123456789abcdef")
_NAME_MAX = 255


def add_commands(commands: Any) -> None:
    send = commands.add_parser(
        "send",
        help="send one file over a pinned session (to HOST:PORT, or to the peer that dials --port)",
        description="Send FILE over a pinned DTLS session with data channels, to a peer running "
        "'dtls-peer receive'. Dials HOST:PORT, or with --port waits for the receiver to dial. "
        "Exits 0 once the receiver has checked the file's size and SHA-256.",
    )
    send.add_argument("file", type=Path, metavar="FILE", help="the file to send")
    send.add_argument("peer", nargs="?", type=pinned.host_port, metavar="HOST:PORT", help="the receiver")
    _where(send)
    send.set_defaults(run=_run, check=_check_file, before=_hash_file, job=_send)

    receive = commands.add_parser(
        "receive",
        help="receive one file over a pinned session into DIR (on --port, or from HOST:PORT)",
        description="Receive one file from a peer running 'dtls-peer send' into DIR (default: the "
        "current directory). Waits on --port for the sender to dial, or dials --from HOST:PORT. "
        "The file appears under its name only once its size and SHA-256 match; its path is "
        "printed on stdout.",
    )
    receive.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR")
    receive.add_argument(
        "--from", dest="peer", type=pinned.host_port, metavar="HOST:PORT", help="dial the sender here"
    )
    receive.add_argument("--force", action="store_true", help="replace a file of the same name in DIR")
    _where(receive)
    receive.set_defaults(run=_run, check=_check_dir, before=None, job=_receive)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=pinned.port_number, metavar="P", help="listen on this UDP port")
    parser.add_argument("--bind", metavar="ADDR", help="local address (default: any)")
    parser.add_argument(
        "--local-port", type=pinned.port_number, default=0, metavar="P", help="local UDP port when dialing"
    )
    pinned.connection_options(parser)
    parser.set_defaults(keepalive=KEEPALIVE, idle_timeout=IDLE_TIMEOUT)
    parser.epilog = (
        f"A transfer uses --keepalive {KEEPALIVE:g} and --idle-timeout {IDLE_TIMEOUT:g} unless given."
    )


def _run(args: argparse.Namespace) -> Awaitable[int]:
    if (args.peer is None) == (args.port is None):
        dial = "HOST:PORT" if args.command == "send" else "--from HOST:PORT"
        raise CliError(f"{args.command}: give either {dial} (dial the peer) or --port (wait for it)", 2)
    args.mode = "listen" if args.port is not None else "connect"
    args.check(args)  # the file or directory, before any identity or socket is made
    job: Callable[[argparse.Namespace, DTLSPeerConnection], Awaitable[int]] = args.job
    return _session(args, job)


async def _session(
    args: argparse.Namespace, job: Callable[[argparse.Namespace, DTLSPeerConnection], Awaitable[int]]
) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="dtls-peer: log: %(message)s")
    if args.before is not None:
        await args.before(args)
    conn = await pinned.open_connection(args, channels=True)
    loop = asyncio.get_running_loop()
    stopped = pinned.watch_signals(loop)
    try:
        if not await pinned.handshake(conn, stopped):
            return 128 + stopped.result()
        work = asyncio.ensure_future(job(args, conn))
        await asyncio.wait([work, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.cancel()
            # The job's own cleanup (the receiver's partial file) runs before the exit.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            pinned.status("interrupted; the transfer is incomplete")
            return 128 + stopped.result()
        return work.result()
    finally:
        pinned.unwatch_signals(loop)
        await conn.close()


# -- sending ----------------------------------------------------------------------------------


def _check_file(args: argparse.Namespace) -> None:
    try:
        if not args.file.is_file():
            raise CliError(f"{args.file} is not a regular file")
        with args.file.open("rb"):
            pass
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror or e}") from None


def _digest_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def _hash_file(args: argparse.Namespace) -> None:
    """The file's size and SHA-256, before any network: the header carries them."""
    args.size, args.sha256 = await asyncio.get_running_loop().run_in_executor(None, _digest_of, args.file)


async def _send(args: argparse.Namespace, conn: DTLSPeerConnection) -> int:
    path: Path = args.file
    size, digest = args.size, args.sha256
    channel = await conn.create_channel(LABEL, protocol=PROTOCOL)
    pinned.status(f"sending {path.name} ({size} bytes, sha256 {digest})")
    progress = Progress(path.name, size)
    # The receiver's verdict may come early (it refused the file): read it all along.
    verdict: asyncio.Future[bytes | str] = asyncio.ensure_future(channel.recv())
    try:
        await channel.send(json.dumps({"name": path.name, "size": size, "sha256": digest}))
        with path.open("rb") as f:
            await _send_body(channel, f, size, progress, verdict)
        answer: bytes | str | None = await verdict
    except (ChannelClosed, ConnectionClosed) as e:
        answer = _early_verdict(verdict)
        if answer is None:
            raise CliError(f"transfer cut after {progress.amount()} sent: {e}") from None
    finally:
        progress.close()
        verdict.cancel()
    assert answer is not None
    refusal = _refusal(answer)
    if refusal is not None:
        raise CliError(f"the receiver did not keep {path.name}: {refusal}")
    pinned.status(f"sent {path.name} ({size} bytes); the receiver checked its SHA-256")
    return 0


async def _send_body(
    channel: DataChannel, f: BinaryIO, size: int, progress: Progress, verdict: asyncio.Future[Any]
) -> None:
    left = size
    while left > 0 and not verdict.done():
        block = f.read(min(CHUNK, left))
        if not block:
            raise CliError(f"{f.name} shrank while it was being sent")
        await channel.send(block)
        left -= len(block)
        progress.advance(len(block))


def _early_verdict(verdict: asyncio.Future[bytes | str]) -> bytes | str | None:
    if verdict.done() and not verdict.cancelled() and verdict.exception() is None:
        return verdict.result()
    return None


def _refusal(answer: bytes | str) -> str | None:
    """None when the receiver kept the file, else its reason."""
    try:
        fields = json.loads(answer)
    except ValueError:
        return f"unreadable answer {answer[:80]!r}"
    if isinstance(fields, dict) and fields.get("ok") is True:
        return None
    reason = fields.get("error") if isinstance(fields, dict) else None
    return str(reason) if reason else f"unreadable answer {answer[:80]!r}"


# -- receiving --------------------------------------------------------------------------------


def _check_dir(args: argparse.Namespace) -> None:
    if not args.dir.is_dir():
        raise CliError(f"{args.dir} is not a directory")
    if not os.access(args.dir, os.W_OK | os.X_OK):
        raise CliError(f"cannot write into {args.dir}")


class Refused(Exception):
    """The receiver will not keep the file; the message goes to both ends."""


def _header(message: bytes | str, directory: Path, force: bool) -> tuple[str, int, str]:
    """The announced name, size and digest, each checked: a name is one path component (never
    a way out of DIR), and the file must fit on the disk."""
    if not isinstance(message, str):
        raise Refused("the first message is not a file header (is the peer 'dtls-peer send'?)")
    try:
        fields = json.loads(message)
    except ValueError:
        raise Refused("the file header is not JSON") from None
    if not isinstance(fields, dict):
        raise Refused("the file header is not a JSON object")
    name, size, digest = fields.get("name"), fields.get("size"), fields.get("sha256")
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or Path(name).name != name
        or "\x00" in name
        or len(name.encode("utf-8", "surrogatepass")) > _NAME_MAX
    ):
        raise Refused(f"refusing the file name {name!r} (one plain file name expected)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Refused(f"bad size {size!r} in the file header")
    if not isinstance(digest, str) or len(digest) != 64 or not _HEX.issuperset(digest):
        raise Refused("bad sha256 in the file header")
    if (directory / name).exists() and not force:
        raise Refused(f"{name} already exists in {directory} (the receiver's --force replaces it)")
    free = shutil.disk_usage(directory).free
    if size > free:
        raise Refused(f"{name} is {size} bytes; {directory} has {free} bytes free")
    return name, size, digest


async def _receive(args: argparse.Namespace, conn: DTLSPeerConnection) -> int:
    directory: Path = args.dir
    try:
        channel = await conn.accept_channel()
        if channel.label != LABEL:
            raise CliError(f"the peer opened channel {channel.label!r}, not a file transfer")
        header = await channel.recv()
    except (ChannelClosed, ConnectionClosed) as e:
        raise CliError(f"no file came: {e}") from None
    try:
        name, size, digest = _header(header, directory, args.force)
    except Refused as e:
        await _answer(channel, {"ok": False, "error": str(e)})
        raise CliError(f"refused the file: {e}") from None
    pinned.status(f"receiving {name} ({size} bytes, sha256 {digest}) into {directory}")
    final = directory / name
    fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{name[:200]}.", suffix=".part")
    kept = False
    try:
        with os.fdopen(fd, "wb") as out:
            got = await _receive_body(channel, out, name, size)
        if got != digest:
            await _answer(channel, {"ok": False, "error": f"SHA-256 mismatch: got {got}"})
            raise CliError(f"{name}: SHA-256 mismatch (announced {digest}, received {got}); nothing kept")
        os.chmod(partial, 0o666 & ~_umask())
        if final.exists() and not args.force:
            await _answer(channel, {"ok": False, "error": f"{name} appeared in {directory} meanwhile"})
            raise CliError(f"{final} appeared while receiving; nothing replaced")
        os.replace(partial, final)
        kept = True
    finally:
        if not kept:
            with contextlib.suppress(OSError):
                os.unlink(partial)
    await _answer(channel, {"ok": True})
    pinned.status(f"received {name} ({size} bytes); SHA-256 matches")
    print(final, flush=True)
    return 0


async def _receive_body(channel: DataChannel, out: BinaryIO, name: str, size: int) -> str:
    """Writes the file's ``size`` bytes to ``out``; returns their SHA-256 (hex)."""
    digest = hashlib.sha256()
    progress = Progress(name, size)
    try:
        while progress.done < size:
            try:
                block = await channel.recv()
            except (ChannelClosed, ConnectionClosed) as e:
                raise CliError(f"transfer cut after {progress.amount()} received: {e}") from None
            if not isinstance(block, bytes) or progress.done + len(block) > size:
                await _answer(channel, {"ok": False, "error": "more or other data than announced"})
                raise CliError(f"{name}: the sender sent more or other data than it announced")
            out.write(block)
            digest.update(block)
            progress.advance(len(block))
    finally:
        progress.close()
    return digest.hexdigest()


async def _answer(channel: DataChannel, verdict: dict[str, Any]) -> None:
    # A verdict the sender can no longer get changes nothing here.
    with contextlib.suppress(ChannelClosed, ConnectionClosed):
        await channel.send(json.dumps(verdict))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["add_commands"]
