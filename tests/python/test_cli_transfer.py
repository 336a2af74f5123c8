"""``dtls-peer send`` / ``dtls-peer receive``: a file over a pinned session with data channels,
run as a user runs them (subprocesses on loopback). A file arrives whole with its SHA-256, or
both ends fail with one clear line and nothing is left under the file's name."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

from cli_peers import STEP, Peer, Spawn, assert_one_line_error, keygen, run_cli
from dtls_peer import DTLSPeerConnection, Identity

MIB = 1 << 20
# Big enough that the transfer is still running when the test stops the sender (just after
# reading the receiver's "receiving" line), even on a fast machine.
CUT_FILE_SIZE = 64 * MIB


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MIB))
            f.write(block)
            left -= len(block)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def receiver_and_sender(
    spawn: Spawn, tmp_path: Path, file: Path, inbox: Path, *receive_options: str
) -> tuple[Peer, Peer]:
    """A receiver listening on loopback and a sender dialing it, with saved identities."""
    receiver_cert, receiver_key, receiver_id = keygen(tmp_path, "receiver")
    sender_cert, sender_key, sender_id = keygen(tmp_path, "sender")
    receiver = await spawn(
        "receive", inbox, "--bind", "127.0.0.1", "--port", "0", "--peer-id", sender_id,
        "--cert", receiver_cert, "--key", receiver_key, *receive_options,
    )  # fmt: skip
    port = (await receiver.status(r"listening on UDP 127\.0\.0\.1:(\d+)")).group(1)
    sender = await spawn(
        "send", file, f"127.0.0.1:{port}", "--peer-id", receiver_id,
        "--cert", sender_cert, "--key", sender_key,
    )  # fmt: skip
    return receiver, sender


async def test_a_file_arrives_whole_with_its_sha256(spawn: Spawn, tmp_path: Path) -> None:
    file = random_file(tmp_path / "photos.tar", 3 * MIB + 17)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receiver, sender = await receiver_and_sender(spawn, tmp_path, file, inbox)
    assert await sender.exit_status() == 0, sender.transcript()
    assert await receiver.exit_status() == 0, receiver.transcript()
    assert (await receiver.stdout.read()).decode().strip() == str(inbox / "photos.tar")
    assert sha256(inbox / "photos.tar") == sha256(file)
    assert leftovers(inbox) == ["photos.tar"]
    assert any("SHA-256 matches" in line for line in receiver.status_lines), receiver.transcript()
    assert any("checked its SHA-256" in line for line in sender.status_lines), sender.transcript()


async def test_a_listening_sender_and_a_dialing_receiver(spawn: Spawn, tmp_path: Path) -> None:
    file = random_file(tmp_path / "notes.txt", 100_000)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    sender_cert, sender_key, sender_id = keygen(tmp_path, "sender")
    receiver_cert, receiver_key, receiver_id = keygen(tmp_path, "receiver")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for sent in (file, empty):
        sender = await spawn(
            "send", sent, "--bind", "127.0.0.1", "--port", "0", "--peer-id", receiver_id,
            "--cert", sender_cert, "--key", sender_key,
        )  # fmt: skip
        port = (await sender.status(r"listening on UDP 127\.0\.0\.1:(\d+)")).group(1)
        receiver = await spawn(
            "receive", inbox, "--from", f"127.0.0.1:{port}", "--peer-id", sender_id,
            "--cert", receiver_cert, "--key", receiver_key,
        )  # fmt: skip
        assert await receiver.exit_status() == 0, receiver.transcript()
        assert await sender.exit_status() == 0, sender.transcript()
        assert (inbox / sent.name).read_bytes() == sent.read_bytes()
    assert leftovers(inbox) == ["empty", "notes.txt"]


async def test_a_killed_sender_fails_the_receiver_and_leaves_no_file(spawn: Spawn, tmp_path: Path) -> None:
    file = random_file(tmp_path / "big.bin", CUT_FILE_SIZE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receiver, sender = await receiver_and_sender(spawn, tmp_path, file, inbox, "--idle-timeout", "2")
    await receiver.status(r"receiving big\.bin")
    # Kill the sender outright mid-transfer (no close_notify, no SCTP shutdown): the receiver
    # finds out when nothing has come for its idle timeout.
    sender.proc.kill()
    await sender.proc.wait()
    assert await receiver.exit_status() == 1, receiver.transcript()
    last = receiver.status_lines[-1]
    cut = re.search(
        r"error: transfer cut after ([\d.]+) of 64\.0 MiB \(\d+%\) received: .*idle timeout", last
    )
    assert cut is not None, receiver.transcript()
    assert float(cut.group(1)) < 64.0
    assert leftovers(inbox) == [], "the partial file must be removed"


async def test_an_interrupted_sender_closes_and_the_receiver_fails_at_once(
    spawn: Spawn, tmp_path: Path
) -> None:
    file = random_file(tmp_path / "big.bin", CUT_FILE_SIZE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # An idle timeout far beyond the test's step bound: the end must come from the close.
    receiver, sender = await receiver_and_sender(spawn, tmp_path, file, inbox, "--idle-timeout", "600")
    await receiver.status(r"receiving big\.bin")
    sender.proc.send_signal(signal.SIGINT)
    assert await sender.exit_status() == 128 + signal.SIGINT, sender.transcript()
    assert "interrupted; the transfer is incomplete" in sender.status_lines[-1], sender.transcript()
    assert await receiver.exit_status() == 1, receiver.transcript()
    assert "error: transfer cut after" in receiver.status_lines[-1], receiver.transcript()
    assert leftovers(inbox) == []


async def test_the_receiver_refuses_to_replace_a_file(spawn: Spawn, tmp_path: Path) -> None:
    file = random_file(tmp_path / "report.pdf", 200_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "report.pdf").write_bytes(b"the one already here")
    receiver, sender = await receiver_and_sender(spawn, tmp_path, file, inbox)
    assert await receiver.exit_status() == 1, receiver.transcript()
    assert await sender.exit_status() == 1, sender.transcript()
    assert "already exists" in receiver.status_lines[-1], receiver.transcript()
    assert "the receiver did not keep report.pdf" in sender.status_lines[-1], sender.transcript()
    assert "already exists" in sender.status_lines[-1], sender.transcript()
    assert (inbox / "report.pdf").read_bytes() == b"the one already here"
    assert leftovers(inbox) == ["report.pdf"]


def test_bad_arguments_fail_before_any_network(tmp_path: Path) -> None:
    pin = "0" * 64
    (tmp_path / "a-file").write_bytes(b"x")
    assert_one_line_error(
        run_cli("send", "a-file", "--peer-id", pin, cwd=tmp_path), 2, "either HOST:PORT", "--port"
    )
    assert_one_line_error(
        run_cli("send", "a-file", "127.0.0.1:9", "--port", "0", "--peer-id", pin, cwd=tmp_path), 2
    )
    assert_one_line_error(
        run_cli("send", "missing.bin", "127.0.0.1:9", "--peer-id", pin, cwd=tmp_path), 1, "missing.bin"
    )
    assert_one_line_error(
        run_cli("receive", "a-file", "--port", "0", "--peer-id", pin, cwd=tmp_path), 1, "not a directory"
    )


async def forged_transfer(
    spawn: Spawn, tmp_path: Path, inbox: Path, header: dict[str, Any], body: bytes
) -> tuple[Peer, Any]:
    """A receiver, and a sender written here that says what it likes in its header; returns
    the receiver and the verdict it sent back."""
    receiver_cert, receiver_key, receiver_id = keygen(tmp_path, "receiver")
    sender_cert, sender_key, sender_id = keygen(tmp_path, "sender")
    receiver = await spawn(
        "receive", inbox, "--bind", "127.0.0.1", "--port", "0", "--peer-id", sender_id,
        "--cert", receiver_cert, "--key", receiver_key,
    )  # fmt: skip
    port = int((await receiver.status(r"listening on UDP 127\.0\.0\.1:(\d+)")).group(1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    identity = Identity.load(sender_cert, sender_key)
    conn = DTLSPeerConnection(
        sock, ("127.0.0.1", port), identity, expected_node_id=receiver_id, role="client", channels=True
    )
    try:
        await asyncio.wait_for(conn.handshake(), STEP)
        channel = await asyncio.wait_for(
            conn.create_channel("dtls-peer-file", protocol="dtls-peer-file/1"), STEP
        )
        await channel.send(json.dumps(header))
        if body:
            await channel.send(body)
        verdict = json.loads(await asyncio.wait_for(channel.recv(), STEP))
    finally:
        await conn.close()
        sock.close()
    return receiver, verdict


async def test_a_file_whose_sha256_differs_is_not_kept(spawn: Spawn, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    body = os.urandom(300_000)
    header = {"name": "data.bin", "size": len(body), "sha256": hashlib.sha256(body[1:] + b"x").hexdigest()}
    receiver, verdict = await forged_transfer(spawn, tmp_path, inbox, header, body)
    assert verdict["ok"] is False and "SHA-256 mismatch" in verdict["error"], verdict
    assert await receiver.exit_status() == 1, receiver.transcript()
    assert "SHA-256 mismatch" in receiver.status_lines[-1], receiver.transcript()
    assert leftovers(inbox) == []


async def test_a_file_name_that_leaves_the_directory_is_refused(spawn: Spawn, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    body = b"#!/bin/sh\n"
    header = {"name": "../outside.sh", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    receiver, verdict = await forged_transfer(spawn, tmp_path, inbox, header, body)
    assert verdict["ok"] is False and "../outside.sh" in verdict["error"], verdict
    assert await receiver.exit_status() == 1, receiver.transcript()
    assert "refused the file" in receiver.status_lines[-1], receiver.transcript()
    assert leftovers(inbox) == [] and not (tmp_path / "outside.sh").exists()
