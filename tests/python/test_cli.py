"""The ``dtls-peer`` command line, run the way a user runs it: ``python -m dtls_peer`` in a
subprocess. Sessions talk over loopback through the programs' stdin and stdout; every error
must be one line on stderr with a non-zero exit status, never a traceback."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cli_peers import Peer, Spawn, assert_one_line_error, keygen, run_cli
from dtls_peer import Identity, node_id_from_certificate
from libp2p_vectors import TLS_SPEC_VECTORS

NODE_ID = re.compile(r"\b[0-9a-f]{64}\b")

# libp2p/specs tls/tls.md, test vector 1: a certificate whose extension carries an Ed25519 key.
ED25519_VECTOR = bytes.fromhex(TLS_SPEC_VECTORS["ed25519"][0])
ED25519_VECTOR_PEER_ID = TLS_SPEC_VECTORS["ed25519"][1]
PEER_ID = re.compile(r"\b(12D3KooW|16Uiu2HA|Qm)[1-9A-HJ-NP-Za-km-z]{40,50}\b")


async def listen_and_connect(
    spawn: Spawn,
    tmp_path: Path,
    *,
    host: str = "127.0.0.1",
    listen: Sequence[str] = (),
    connect: Sequence[str] = (),
    client_pins: str | None = None,
) -> tuple[Peer, Peer, str, str]:
    """A listener and a client with saved identities (the client pins the listener's node ID
    unless ``client_pins`` says otherwise); returns both and their node IDs."""
    server_cert, server_key, server_id = keygen(tmp_path, "server")
    client_cert, client_key, client_id = keygen(tmp_path, "client")
    server = await spawn(
        "listen", "--bind", host, "--port", "0", "--peer-id", client_id,
        "--cert", server_cert, "--key", server_key, *listen,
    )  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    port = (await server.status(rf"listening on UDP {re.escape(shown)}:(\d+)")).group(1)
    client = await spawn(
        "connect", f"{shown}:{port}", "--peer-id", client_pins or server_id,
        "--cert", client_cert, "--key", client_key, *connect,
    )  # fmt: skip
    return server, client, server_id, client_id


# -- keygen and id ------------------------------------------------------------------------


def test_keygen_writes_a_loadable_identity_with_a_private_key_file(tmp_path: Path) -> None:
    cert, key, printed = keygen(tmp_path, "node")
    assert NODE_ID.fullmatch(printed), printed
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert Identity.load(cert, key).node_id == printed
    shown = run_cli("id", cert, cwd=tmp_path)
    assert (shown.returncode, shown.stdout.strip(), shown.stderr) == (0, printed, "")


def test_id_reads_der_certificates(tmp_path: Path) -> None:
    identity = Identity.generate()
    der = tmp_path / "node.der"
    der.write_bytes(identity.certificate_der)
    shown = run_cli("id", der, cwd=tmp_path)
    assert (shown.returncode, shown.stdout.strip()) == (0, identity.node_id)


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    cert, key, first = keygen(tmp_path, "node")
    before = (cert.read_bytes(), key.read_bytes())
    again = run_cli("keygen", "--cert", cert, "--key", key, cwd=tmp_path)
    assert_one_line_error(again, 1, "refusing to overwrite", "--force")
    assert (cert.read_bytes(), key.read_bytes()) == before
    forced = run_cli("keygen", "--cert", cert, "--key", key, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() != first
    assert node_id_from_certificate(cert.read_bytes()) == forced.stdout.strip()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["id", "missing.crt"], 1, ["missing.crt"]),
        (["id", "garbage.crt"], 1, ["garbage.crt"]),
        (["keygen", "--cert", "no/such/dir/a.crt", "--key", "no/such/dir/a.key"], 1, ["no/such/dir"]),
        (["keygen", "--cert", "same", "--key", "same"], 1, ["different"]),
        (["keygen", "--cert", "a.crt"], 2, ["--key"]),
        (["frobnicate"], 2, ["frobnicate"]),
        ([], 2, ["COMMAND"]),
        (["connect", "127.0.0.1:9"], 2, ["--peer-id"]),
        (["connect", "127.0.0.1:9", "--peer-id", "abc"], 2, ["64 hex"]),
        (["connect", "127.0.0.1", "--peer-id", "a" * 64], 2, ["HOST:PORT"]),
        (["connect", "127.0.0.1:70000", "--peer-id", "a" * 64], 2, ["70000"]),
        (["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--handshake-timeout", "-1"], 2, ["positive"]),
        (["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--mtu", "100"], 2, ["256"]),
        (["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--cert", "a.crt"], 2, ["--cert and --key"]),
        (
            ["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--cert", "x.crt", "--key", "x.key"],
            1,
            ["x.crt"],
        ),
        (["connect", "no-such-host.invalid:9", "--peer-id", "a" * 64], 1, ["no-such-host.invalid"]),
        (["listen", "--port", "9", "--bind", "not-an-ip", "--peer-id", "a" * 64], 1, ["not-an-ip"]),
        (["keygen", "--cert", "a.crt", "--key", "a.key", "--type", "dsa"], 2, ["--type", "dsa"]),
        (["keygen", "--cert", "a.crt", "--key", "a.key", "--type", "rsa1024"], 2, ["--type"]),
        (["id", "garbage.crt", "--scheme", "md5"], 2, ["--scheme", "md5"]),
        (["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--scheme", "sha1"], 2, ["--scheme"]),
        # 0, O, I and l are not base58btc.
        (["connect", "127.0.0.1:9", "--scheme", "libp2p", "--peer-id", "12D3KooW0OIl"], 2, ["base58"]),
        # base58 text, but no peer ID: refused by the library's check of the pin.
        (["connect", "127.0.0.1:9", "--scheme", "libp2p", "--peer-id", "abc"], 2, ["--peer-id"]),
        # A pin cut short by one character: the listener says so before it waits for a peer.
        (
            [
                "listen",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--scheme",
                "libp2p",
                "--peer-id",
                ED25519_VECTOR_PEER_ID[:-1],
            ],
            2,
            ["--peer-id", "libp2p peer ID"],
        ),
        # A libp2p peer ID is not a sha256 node ID (and the other way round).
        (["connect", "127.0.0.1:9", "--peer-id", ED25519_VECTOR_PEER_ID], 2, ["64 hex"]),
        (["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--key", "missing.key"], 1, ["missing.key"]),
        (["connect", "127.0.0.1:9", "--peer-id", "a" * 64, "--key", "garbage.crt"], 1, ["garbage.crt"]),
    ],
)
def test_errors_are_one_line_and_a_non_zero_status(
    tmp_path: Path, args: list[str], status: int, words: list[str]
) -> None:
    (tmp_path / "garbage.crt").write_bytes(b"not a certificate")
    assert_one_line_error(run_cli(*args, cwd=tmp_path), status, *words)


@pytest.mark.parametrize(
    "command", [[], ["keygen"], ["id"], ["listen"], ["connect"], ["send"], ["receive"], ["demo"]]
)
def test_help_everywhere(tmp_path: Path, command: list[str]) -> None:
    done = run_cli(*command, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: dtls-peer"), done.stdout


def test_listening_on_a_port_in_use_is_an_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        done = run_cli("listen", "--bind", "127.0.0.1", "--port", port, "--peer-id", "a" * 64, cwd=tmp_path)
    assert_one_line_error(done, 1, "cannot bind", str(port))


# -- node key types and schemes ------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["p256", "ed25519", "rsa", "secp256k1"])
def test_keygen_writes_each_key_type(tmp_path: Path, key_type: str) -> None:
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    done = run_cli("keygen", "--cert", cert, "--key", key, "--type", key_type, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert NODE_ID.fullmatch(printed), printed
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    identity = Identity.load(cert, key)
    assert (identity.key_type, identity.node_id) == (key_type, printed)
    assert printed == hashlib.sha256(identity.public_key_der).hexdigest()
    # The same node under the libp2p scheme: keygen, id and the library agree.
    shown = run_cli("id", "--scheme", "libp2p", cert, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == Identity.load(None, key, node_id_scheme="libp2p").node_id
    assert PEER_ID.fullmatch(shown.stdout.strip()), shown.stdout


def test_keygen_prints_a_libp2p_peer_id_with_scheme_libp2p(tmp_path: Path) -> None:
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    done = run_cli(
        "keygen", "--type", "ed25519", "--scheme", "libp2p", "--cert", cert, "--key", key, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    peer_id = done.stdout.strip()
    assert peer_id.startswith("12D3KooW") and PEER_ID.fullmatch(peer_id), peer_id
    assert Identity.load(cert, key, node_id_scheme="libp2p").node_id == peer_id
    assert run_cli("id", cert, "--scheme", "libp2p", cwd=tmp_path).stdout.strip() == peer_id
    # The default scheme names the same key in hex.
    hex_id = run_cli("id", cert, cwd=tmp_path).stdout.strip()
    assert hex_id == Identity.load(cert, key).node_id and NODE_ID.fullmatch(hex_id)


def test_id_reads_the_libp2p_extension(tmp_path: Path) -> None:
    vector = tmp_path / "vector.der"
    vector.write_bytes(ED25519_VECTOR)
    shown = run_cli("id", "--scheme", "libp2p", vector, cwd=tmp_path)
    assert (shown.returncode, shown.stdout.strip(), shown.stderr) == (0, ED25519_VECTOR_PEER_ID, "")


def test_id_refuses_a_forged_libp2p_extension(tmp_path: Path) -> None:
    # Vector 1 with one byte of the extension's signature changed: the endorsement is invalid.
    forged = bytearray(ED25519_VECTOR)
    at = forged.index(bytes.fromhex("d90d2769db99"))
    forged[at] ^= 0x01
    (tmp_path / "forged.der").write_bytes(bytes(forged))
    for scheme in ("libp2p", "sha256"):
        done = run_cli("id", "--scheme", scheme, "forged.der", cwd=tmp_path)
        assert_one_line_error(done, 1, "forged.der")


async def test_sessions_with_ed25519_and_key_only_identities_and_libp2p_ids(
    spawn: Spawn, tmp_path: Path
) -> None:
    """An Ed25519 listener and a secp256k1 client that has only a key file, pinned by peer IDs."""
    listener_cert, listener_key = tmp_path / "l.crt", tmp_path / "l.key"
    made = run_cli(
        "keygen",
        "--type",
        "ed25519",
        "--scheme",
        "libp2p",
        "--cert",
        listener_cert,
        "--key",
        listener_key,
        cwd=tmp_path,
    )
    listener_id = made.stdout.strip()
    client_key = tmp_path / "c.key"
    made = run_cli(
        "keygen",
        "--type",
        "secp256k1",
        "--scheme",
        "libp2p",
        "--cert",
        tmp_path / "c.crt",
        "--key",
        client_key,
        cwd=tmp_path,
    )
    client_id = made.stdout.strip()
    (tmp_path / "c.crt").unlink()
    assert listener_id.startswith("12D3KooW") and client_id.startswith("16Uiu2HA"), (listener_id, client_id)

    server = await spawn(
        "listen", "--bind", "127.0.0.1", "--port", "0", "--scheme", "libp2p", "--peer-id", client_id,
        "--cert", listener_cert, "--key", listener_key,
    )  # fmt: skip
    assert (await server.status(r"this node's ID is (\S+)")).group(1) == listener_id
    port = (await server.status(r"listening on UDP 127\.0\.0\.1:(\d+)")).group(1)
    client = await spawn(
        "connect", f"127.0.0.1:{port}", "--scheme", "libp2p", "--peer-id", listener_id, "--key", client_key
    )
    assert (await client.status(r"this node's ID is (\S+)")).group(1) == client_id
    for peer, other in ((client, listener_id), (server, client_id)):
        found = await peer.status(r"connected to node (\S+) \(DTLSv1\.2 (\S+)\)")
        assert found.group(1) == other
        assert found.group(2).startswith("ECDHE-ECDSA-")
    await client.say(b"from a key file")
    assert await server.hear() == b"from a key file\n"
    await server.say(b"from an Ed25519 node")
    assert await client.hear() == b"from an Ed25519 node\n"
    client.stdin.close()
    assert await client.exit_status() == 0, client.transcript()
    assert await server.exit_status() == 0, server.transcript()


async def test_a_libp2p_pin_mismatch_exits_4(spawn: Spawn, tmp_path: Path) -> None:
    key = tmp_path / "l.key"
    run_cli("keygen", "--type", "ed25519", "--cert", tmp_path / "l.crt", "--key", key, cwd=tmp_path)
    someone_else = Identity.generate("ed25519", node_id_scheme="libp2p").node_id
    server = await spawn(
        "listen", "--bind", "127.0.0.1", "--port", "0", "--scheme", "libp2p", "--peer-id", someone_else
    )
    port = (await server.status(r"listening on UDP 127\.0\.0\.1:(\d+)")).group(1)
    client = await spawn(
        "connect", f"127.0.0.1:{port}", "--scheme", "libp2p", "--peer-id", someone_else, "--key", key
    )
    assert await client.exit_status() == 4, client.transcript()
    assert someone_else in client.status_lines[-1], client.transcript()
    # The client judges the server's certificate first and aborts, so the listener never sees
    # the client's: it reports the abort (exit 1), not a mismatch of its own.
    assert await server.exit_status() == 1, server.transcript()
    assert server.status_lines[-1].startswith("dtls-peer: error: the peer aborted the handshake"), (
        server.transcript()
    )


def test_demo_runs_and_shows_an_ed25519_node(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dtls_peer", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alice refused the peer: peer verification failed" in done.stdout, done.stdout
    assert re.search(r"carol \(ed25519\) peer ID 12D3KooW\S+", done.stdout), done.stdout
    assert re.search(r"dave verified carol as 12D3KooW\S+", done.stdout), done.stdout
    assert "dave got  b'hello from an Ed25519 node'" in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith("demo finished"), done.stdout


# -- sessions ------------------------------------------------------------------------------


async def test_listen_and_connect_chat_over_stdin_and_stdout(spawn: Spawn, tmp_path: Path) -> None:
    cert, key, client_id = keygen(tmp_path, "client")
    # The listener uses a fresh identity and prints its node ID for the other side to pin.
    server = await spawn("listen", "--bind", "127.0.0.1", "--port", "0", "--peer-id", client_id)
    server_id = (await server.status(r"this node's ID is ([0-9a-f]{64}) \(fresh")).group(1)
    port = (await server.status(r"listening on UDP 127\.0\.0\.1:(\d+)")).group(1)
    client = await spawn("connect", f"127.0.0.1:{port}", "--peer-id", server_id, "--cert", cert, "--key", key)
    for peer, other in ((client, server_id), (server, client_id)):
        found = await peer.status(
            r"connected to node ([0-9a-f]{64}) \((DTLSv1\.2) (\S+)\), handshake [\d.]+ ms"
        )
        assert found.group(1) == other
        assert found.group(3) == "ECDHE-ECDSA-AES128-GCM-SHA256"

    await client.say(b"hello from the client")
    assert await server.hear() == b"hello from the client\n"
    await server.say("grüße zurück".encode())
    assert await client.hear() == "grüße zurück\n".encode()

    # End of input on one side closes the session (close_notify); both exit cleanly.
    client.stdin.close()
    assert await client.exit_status() == 0, client.transcript()
    assert await server.exit_status() == 0, server.transcript()
    assert any("the peer closed the connection" in line for line in server.status_lines), server.transcript()


async def test_echo_mode_sends_each_message_back(spawn: Spawn, tmp_path: Path) -> None:
    server, client, _, _ = await listen_and_connect(spawn, tmp_path, host="::1", listen=["--echo"])
    await client.status("connected to node")
    for line in (b"one", b"two", b"three"):
        await client.say(line)
        assert await client.hear() == line + b"\n"
    client.stdin.close()
    assert await client.exit_status() == 0
    assert await server.exit_status() == 0


async def test_pin_mismatch_fails_on_both_sides(spawn: Spawn, tmp_path: Path) -> None:
    # The client expects someone else at the listener's address.
    impostor = Identity.generate().node_id
    server, client, server_id, _ = await listen_and_connect(
        spawn, tmp_path, client_pins=impostor, connect=["-v"]
    )
    assert await client.exit_status() == 4, client.transcript()
    # --verbose shows the library's log.
    assert any(line.startswith("dtls-peer: log: handshake with 127.0.0.1:") for line in client.status_lines)
    error = client.status_lines[-1]
    assert error.startswith("dtls-peer: error: peer verification failed: peer node ID mismatch"), error
    assert impostor in error and server_id in error
    assert await server.exit_status() == 1, server.transcript()
    assert server.status_lines[-1].startswith("dtls-peer: error: the peer aborted the handshake"), (
        server.transcript()
    )


async def test_an_unreachable_peer_is_a_handshake_timeout(spawn: Spawn, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        client = await spawn(
            "connect", f"127.0.0.1:{port}", "--peer-id", "a" * 64, "--handshake-timeout", "0.5"
        )
        assert await client.exit_status() == 3, client.transcript()
    error = client.status_lines[-1]
    assert error == "dtls-peer: error: handshake timed out (is the peer running and reachable?)", error


async def test_a_terminated_session_still_closes_cleanly(spawn: Spawn, tmp_path: Path) -> None:
    server, client, _, _ = await listen_and_connect(spawn, tmp_path, listen=["--echo"])
    await client.status("connected to node")
    client.proc.terminate()
    assert await client.exit_status() == 128 + signal.SIGTERM, client.transcript()
    # SIGTERM sent close_notify on the way out, so the listener ends at once, not by timeout.
    assert await server.exit_status() == 0, server.transcript()
    assert "the peer closed the connection" in server.status_lines[-1], server.transcript()


async def test_keepalives_and_idle_timeout_from_the_command_line(spawn: Spawn, tmp_path: Path) -> None:
    server, client, _, _ = await listen_and_connect(
        spawn, tmp_path, listen=["--idle-timeout", "1"], connect=["--keepalive", "0.2"]
    )
    await client.status("connected to node")
    # Two idle seconds: the client's keepalives keep the listener's session open.
    await asyncio.sleep(2)
    assert server.proc.returncode is None, server.transcript()
    # Once the client is gone without a word, the listener gives up after its idle timeout.
    client.proc.kill()
    await client.proc.wait()
    assert await server.exit_status() == 0, server.transcript()
    assert server.status_lines[-1] == (
        "dtls-peer: session ended: idle timeout: no authenticated datagram from the peer for 1 s"
    ), server.transcript()
