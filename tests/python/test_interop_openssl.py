"""Guards DTLS 1.2 interoperability with the OpenSSL command-line tool (s_server and s_client), both roles.

Each test runs ``openssl s_server`` or ``openssl s_client`` on loopback against a
``DTLSPeerConnection`` and checks, on both sides, that the handshake uses
ECDHE-ECDSA-AES128-GCM-SHA256 over DTLS 1.2, that each side authenticated the other's
certificate (the tool trusts exactly our certificate via ``-CAfile`` and
``-verify_return_error``; we pin the tool's node ID), that data flows both ways and that
close_notify is honoured in both directions; also that a cookie exchange (``s_server
-listen``) works and that a renegotiation request ends the session cleanly. The negative
cases check that a refused peer makes ``handshake()`` raise ``PeerVerificationError`` or
``HandshakeError`` at once rather than waiting for the handshake timeout. At the end, an
Ed25519 identity (which OpenSSL cannot serve for these suites) is authenticated by the tools
through its ephemeral P-256 DTLS certificate: s_client pins that certificate's SPKI, s_server
trusts exactly that certificate.

Notes on the tool (OpenSSL 3.0):

* ``s_server`` prints ``ACCEPT`` (our readiness line) only without ``-quiet``/``-brief``, so
  the tools run in their chatty mode; its output also tells us what the tool negotiated and
  which certificate it saw. In that mode a stdin line starting with ``Q``/``q`` (or a
  one-letter line) is a command, so payloads never start that way; ``Q`` is used on purpose
  to make ``s_client`` send close_notify.
* ``s_server`` 3.0 prints ``ACCEPT`` just before binding its socket. A ClientHello that
  arrived first would be lost like any datagram and retransmitted by our side (250 ms).
* ``s_server -accept`` and ``s_client -bind`` need a port number up front (3.0 does not
  report the port it got for port 0, and our server only accepts datagrams from the
  ``remote_addr`` it was given), so a port is picked by binding to port 0 and released just
  before the tool binds it. Another process taking it in that instant is the only, remote,
  race; the tool would then fail visibly (its transcript is in the failure message).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from dtls_peer import (
    ConnectionClosed,
    DTLSPeerConnection,
    HandshakeError,
    HandshakeTimeout,
    Identity,
    PeerVerificationError,
    node_id_from_certificate,
)

T = TypeVar("T")
Role = Literal["client", "server"]

LOOPBACK = "127.0.0.1"
SUITE = "ECDHE-ECDSA-AES128-GCM-SHA256"
MTU = 1200
# The library's own limit; a refused handshake must fail long before it.
HANDSHAKE_TIMEOUT = 10.0
FAST_FAILURE = 5.0
# Bound on every single wait in these tests.
STEP_TIMEOUT = 15.0
# Largest message at MTU 1200 (1200 minus 37 bytes of AES-GCM record overhead).
MAX_MESSAGE = MTU - 37

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", re.DOTALL)


# -- the openssl binary -----------------------------------------------------------------


@pytest.fixture(scope="module")
def openssl() -> str:
    """Path of the ``openssl`` tool; missing or too old is a failure (CI installs it), not a skip."""
    path = shutil.which("openssl")
    if path is None:
        pytest.fail(
            "the `openssl` command-line tool was not found on PATH; the OpenSSL interop tests need "
            "OpenSSL 3.x's `openssl` (Debian/Ubuntu: apt-get install openssl)",
            pytrace=False,
        )
    version = subprocess.run(
        [path, "version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    if not re.match(r"OpenSSL [3-9]\.", version):
        pytest.fail(
            f"{path} reports {version!r}; the OpenSSL interop tests need OpenSSL 3.0 or newer "
            "(they use `s_client -bind`)",
            pytrace=False,
        )
    return path


# -- certificates -----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    cert: Path
    key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.pem)

    @property
    def node_id(self) -> str:
        return node_id_from_certificate(self.pem)


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"


def _openssl_req(openssl: str, cert: Path, key: Path, newkey: Sequence[str]) -> None:
    subject = ["-subj", "/CN=tool", "-days", "2"]
    _run([openssl, "req", "-x509", *newkey, "-nodes", *subject, "-keyout", str(key), "-out", str(cert)])


def make_tool_credentials(openssl: str, kind: str, directory: Path) -> Credentials:
    """The tool's certificate and key, made the way ``kind`` says."""
    directory.mkdir(parents=True, exist_ok=True)
    creds = Credentials(directory / f"{kind}.crt", directory / f"{kind}.key")
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    key_header = "-----BEGIN PRIVATE KEY-----"
    if kind == "req-pkcs8":
        _openssl_req(openssl, creds.cert, creds.key, p256)
    elif kind == "ecparam-sec1":
        _run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(creds.key)])
        subject = ["-subj", "/CN=tool", "-days", "2"]
        _run([openssl, "req", "-x509", "-new", "-key", str(creds.key), *subject, "-out", str(creds.cert)])
        key_header = "-----BEGIN EC PRIVATE KEY-----"
    elif kind == "identity-save":
        Identity.generate().save(creds.cert, creds.key)
    elif kind == "rsa":
        _openssl_req(openssl, creds.cert, creds.key, ["-newkey", "rsa:2048"])
    elif kind == "p384":
        _openssl_req(
            openssl, creds.cert, creds.key, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]
        )
    else:
        raise ValueError(kind)
    # The parametrisation is only worth something if the key formats really differ.
    assert creds.key.read_text().startswith(key_header), creds.key.read_text()[:40]
    return creds


@dataclass(frozen=True)
class Local:
    """Our side: the identity and the same certificate on disk for the tool to trust."""

    identity: Identity
    creds: Credentials


@pytest.fixture
def local(tmp_path: Path) -> Local:
    identity = Identity.generate()
    creds = Credentials(tmp_path / "local.crt", tmp_path / "local.key")
    identity.save(creds.cert, creds.key)
    assert creds.node_id == identity.node_id
    return Local(identity, creds)


@pytest.fixture
def stranger(tmp_path: Path) -> Credentials:
    """A valid certificate that is neither ours nor the tool's."""
    creds = Credentials(tmp_path / "stranger.crt", tmp_path / "stranger.key")
    Identity.generate().save(creds.cert, creds.key)
    return creds


# -- running the tool -------------------------------------------------------------------


class Tool:
    """A running ``openssl`` whose stdout and stderr are collected by background tasks."""

    def __init__(self, argv: Sequence[str], proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.argv = list(argv)
        self.proc = proc
        self.stdin = proc.stdin
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.ensure_future(self._pump(proc.stdout, self.stdout)),
            asyncio.ensure_future(self._pump(proc.stderr, self.stderr)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, sink: bytearray) -> None:
        while True:
            chunk = await stream.read(65536)
            sink += chunk
            self._changed.set()
            if not chunk:
                return

    @property
    def outputs_closed(self) -> bool:
        return all(reader.done() for reader in self._readers)

    def transcript(self) -> str:
        out = self.stdout.decode(errors="replace")
        err = self.stderr.decode(errors="replace")
        return (
            f"\n--- {' '.join(self.argv)} (exit status {self.proc.returncode})\n"
            f"--- stdout:\n{out}\n--- stderr:\n{err}"
        )

    async def expect(self, needle: bytes, *, stream: str = "stdout", timeout: float = STEP_TIMEOUT) -> None:
        """Waits until ``needle`` appears in the tool's output."""
        sink = self.stdout if stream == "stdout" else self.stderr

        async def poll() -> None:
            while needle not in sink:
                if self.outputs_closed:
                    pytest.fail(f"openssl exited without printing {needle!r}{self.transcript()}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"openssl did not print {needle!r} within {timeout} s{self.transcript()}")

    async def write(self, data: bytes) -> None:
        self.stdin.write(data)
        await asyncio.wait_for(self.stdin.drain(), STEP_TIMEOUT)

    async def wait_exit(self, timeout: float = STEP_TIMEOUT) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"openssl did not exit within {timeout} s{self.transcript()}")

    async def stop(self) -> None:
        """Kills the tool if it still runs and reaps it and its pipes."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        try:
            # SIGKILL cannot be ignored: this only fails if the kernel is wedged.
            await asyncio.wait_for(self.proc.wait(), STEP_TIMEOUT)
            self.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await asyncio.wait_for(self.stdin.wait_closed(), STEP_TIMEOUT)
            await asyncio.wait_for(asyncio.gather(*self._readers), STEP_TIMEOUT)
        finally:
            for reader in self._readers:
                reader.cancel()


@contextlib.asynccontextmanager
async def run_tool(argv: Sequence[str]) -> AsyncIterator[Tool]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tool = Tool(argv, proc)
    try:
        yield tool
    finally:
        await tool.stop()


def free_udp_port() -> int:
    """A loopback UDP port that was free a moment ago (see the module docstring for the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def s_server_argv(
    openssl: str,
    port: int,
    creds: Credentials,
    trusted: Credentials,
    *,
    cipher: str | None = SUITE,
    extra: Sequence[str] = (),
    protocol: str = "-dtls1_2",
) -> list[str]:
    argv = [openssl, "s_server", protocol, "-accept", f"{LOOPBACK}:{port}"]
    argv += ["-cert", str(creds.cert), "-key", str(creds.key)]
    # Require a client certificate and accept only `trusted` (self-signed, so it is its own CA).
    argv += ["-Verify", "1", "-verify_return_error", "-CAfile", str(trusted.cert)]
    argv += ["-mtu", str(MTU), "-no_ticket", "-naccept", "1"]
    if cipher is not None:
        argv += ["-cipher", cipher]
    return argv + list(extra)


def s_client_argv(
    openssl: str,
    port: int,
    bind_port: int,
    creds: Credentials,
    trusted: Credentials | None,
    *,
    cipher: str = SUITE,
    protocol: str = "-dtls1_2",
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [
        openssl,
        "s_client",
        protocol,
        "-connect",
        f"{LOOPBACK}:{port}",
        "-bind",
        f"{LOOPBACK}:{bind_port}",
    ]
    argv += ["-cert", str(creds.cert), "-key", str(creds.key), "-cipher", cipher, "-mtu", str(MTU)]
    argv += ["-verify_return_error"]
    if trusted is not None:
        argv += ["-CAfile", str(trusted.cert)]
    return argv + list(extra)


def open_connection(local: Local, remote_port: int, pin: str, role: Role) -> DTLSPeerConnection:
    """A connection on a fresh loopback socket; it keeps its own duplicate of the descriptor."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return DTLSPeerConnection(
            sock,
            (LOOPBACK, remote_port),
            local.identity,
            expected_node_id=pin,
            role=role,
            mtu=MTU,
            handshake_timeout=HANDSHAKE_TIMEOUT,
        )


@contextlib.asynccontextmanager
async def connection(
    local: Local, remote_port: int, pin: str, role: Role
) -> AsyncIterator[DTLSPeerConnection]:
    conn = open_connection(local, remote_port, pin, role)
    try:
        yield conn
    finally:
        await conn.close()


async def step(what: str, awaitable: Awaitable[T], tool: Tool) -> T:
    """Awaits one step of a test, bounded, reporting the tool's transcript if it fails."""
    try:
        return await asyncio.wait_for(awaitable, STEP_TIMEOUT)
    except asyncio.TimeoutError:
        pytest.fail(f"{what}: no result within {STEP_TIMEOUT} s{tool.transcript()}")
    except Exception as e:
        pytest.fail(f"{what}: {type(e).__name__}: {e}{tool.transcript()}")


async def recv_line(conn: DTLSPeerConnection, tool: Tool) -> bytes:
    """Messages up to a newline (the tool may in principle split what it read from stdin)."""
    data = b""
    while not data.endswith(b"\n"):
        data += await step("recv()", conn.recv(), tool)
    return data


async def refused_handshake(conn: DTLSPeerConnection) -> HandshakeError:
    """Runs a handshake that must be refused at once (not by timing out); returns the error."""
    started = time.monotonic()
    with pytest.raises(HandshakeError) as caught:
        await asyncio.wait_for(conn.handshake(), STEP_TIMEOUT)
    elapsed = time.monotonic() - started
    assert not isinstance(caught.value, HandshakeTimeout), (
        f"refusal surfaced only as a timeout: {caught.value}"
    )
    assert elapsed < FAST_FAILURE, (
        f"refusal took {elapsed:.2f} s (handshake_timeout is {HANDSHAKE_TIMEOUT} s)"
    )
    assert not conn.is_established
    return caught.value


def certificate_after(label: bytes, output: bytes) -> bytes:
    """The PEM certificate the tool printed after ``label``."""
    _, found, rest = output.partition(label)
    assert found, f"no {label!r} in the tool's output"
    match = PEM_CERT.search(rest)
    assert match is not None, f"no certificate after {label!r}"
    return match.group(0)


def check_session(conn: DTLSPeerConnection, tool_creds: Credentials) -> None:
    assert conn.is_established
    assert conn.cipher == SUITE
    assert conn.protocol_version == "DTLSv1.2"
    assert conn.peer_node_id == tool_creds.node_id
    assert conn.peer_certificate == tool_creds.der
    assert conn.max_message_size == MAX_MESSAGE


def payload(tag: str, size: int) -> bytes:
    """A printable message of ``size`` bytes ending in a newline; never starts with a command letter."""
    head = f"{tag}:".encode()
    body = bytes(ord("a") + i % 26 for i in range(size - len(head) - 1))
    return head + body + b"\n"


async def exchange_messages(conn: DTLSPeerConnection, tool: Tool) -> None:
    """A short and a largest message from us to the tool, then the same from the tool to us."""
    to_tool = b"lib->tool: hello over DTLS\n"
    await step("send()", conn.send(to_tool), tool)
    await tool.expect(to_tool)
    largest = payload("lib->tool max", conn.max_message_size)
    await step("send(largest)", conn.send(largest), tool)
    await tool.expect(largest)

    from_tool = b"tool->lib: hello back\n"
    await tool.write(from_tool)
    assert await recv_line(conn, tool) == from_tool
    largest_back = payload("tool->lib max", MAX_MESSAGE)
    await tool.write(largest_back)
    assert await recv_line(conn, tool) == largest_back


GOOD_TOOL_KEYS = ["req-pkcs8", "ecparam-sec1", "identity-save"]


# -- our library as the client, openssl s_server as the server --------------------------


@pytest.mark.parametrize(
    ("tool_kind", "s_server_flags"),
    [(kind, []) for kind in GOOD_TOOL_KEYS]
    # -listen: s_server answers the first ClientHello with a HelloVerifyRequest (cookie).
    + [("req-pkcs8", ["-listen"])],
    ids=[*GOOD_TOOL_KEYS, "req-pkcs8-cookie"],
)
async def test_client_handshake_and_echo_with_s_server(
    openssl: str, local: Local, tmp_path: Path, tool_kind: str, s_server_flags: list[str]
) -> None:
    tool_creds = make_tool_credentials(openssl, tool_kind, tmp_path / "tool")
    port = free_udp_port()
    argv = s_server_argv(openssl, port, tool_creds, local.creds, extra=s_server_flags)
    async with run_tool(argv) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(local, port, tool_creds.node_id, "client") as conn:
            await step("handshake()", conn.handshake(), tool)
            check_session(conn, tool_creds)
            assert conn.role == "client"
            assert conn.remote_address == (LOOPBACK, port)

            # What the tool saw: our certificate, verified against -CAfile, and the same suite.
            await tool.expect(b"CIPHER is " + SUITE.encode() + b"\n")
            seen = certificate_after(b"Client certificate\n", bytes(tool.stdout))
            assert node_id_from_certificate(seen) == local.identity.node_id
            await tool.expect(b"verify return:1", stream="stderr")

            await exchange_messages(conn, tool)

        # close() sent close_notify: s_server ends the session and, with -naccept 1, exits cleanly.
        assert await tool.wait_exit() == 0, tool.transcript()
        await tool.expect(b"DONE\n")
        assert b"error" not in tool.stderr.lower(), tool.transcript()


async def test_client_refuses_s_server_with_another_node_id(
    openssl: str, local: Local, stranger: Credentials, tmp_path: Path
) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    port = free_udp_port()
    async with run_tool(s_server_argv(openssl, port, tool_creds, local.creds)) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(local, port, stranger.node_id, "client") as conn:
            error = await refused_handshake(conn)
            assert isinstance(error, PeerVerificationError), f"{error!r}{tool.transcript()}"
            assert error.expected_node_id == stranger.node_id
            assert error.actual_node_id == tool_creds.node_id
        # Our alert (unknown_ca) reached the tool: it gives up instead of waiting.
        await tool.wait_exit()
        await tool.expect(b"SSL alert number 48", stream="stderr")


async def test_client_refuses_s_server_with_rsa_certificate(
    openssl: str, local: Local, tmp_path: Path
) -> None:
    tool_creds = make_tool_credentials(openssl, "rsa", tmp_path / "tool")
    port = free_udp_port()
    # No -cipher: even a tool willing to use any suite finds none it can share with an RSA key,
    # because we offer only ECDHE-ECDSA suites and ECDSA signatures.
    async with run_tool(s_server_argv(openssl, port, tool_creds, local.creds, cipher=None)) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(local, port, tool_creds.node_id, "client") as conn:
            error = await refused_handshake(conn)
            assert "alert 40" in str(error), f"{error!r}{tool.transcript()}"
        await tool.wait_exit()
        await tool.expect(b"no shared cipher", stream="stderr")


async def test_client_reports_s_server_refusing_our_certificate(
    openssl: str, local: Local, stranger: Credentials, tmp_path: Path
) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    port = free_udp_port()
    # The tool trusts only `stranger`, so it refuses our certificate.
    async with run_tool(s_server_argv(openssl, port, tool_creds, stranger)) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(local, port, tool_creds.node_id, "client") as conn:
            error = await refused_handshake(conn)
            assert not isinstance(error, PeerVerificationError), f"{error!r}{tool.transcript()}"
            assert "alert 48" in str(error), f"{error!r}{tool.transcript()}"
        await tool.wait_exit()
        await tool.expect(b"certificate verify failed", stream="stderr")


async def test_client_refuses_renegotiation_from_s_server(openssl: str, local: Local, tmp_path: Path) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    port = free_udp_port()
    async with run_tool(s_server_argv(openssl, port, tool_creds, local.creds)) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(local, port, tool_creds.node_id, "client") as conn:
            await step("handshake()", conn.handshake(), tool)
            # "r" makes s_server send a HelloRequest. We refuse renegotiation (no_renegotiation
            # warning); s_server 3.0 then aborts with a fatal alert, which recv() must report
            # promptly as the end of the session instead of hanging or renegotiating.
            await tool.write(b"r\n")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_recv_until_closed(conn), STEP_TIMEOUT)
            assert not conn.is_established
        await tool.wait_exit()
        await tool.expect(b"no renegotiation", stream="stderr")
        # Its exit statistics confirm that it really attempted a renegotiation.
        assert b"   1 server renegotiates" in tool.stdout, tool.transcript()


# -- our library as the server, openssl s_client as the client --------------------------


@pytest.mark.parametrize("tool_kind", GOOD_TOOL_KEYS)
async def test_server_handshake_and_echo_with_s_client(
    openssl: str, local: Local, tmp_path: Path, tool_kind: str
) -> None:
    tool_creds = make_tool_credentials(openssl, tool_kind, tmp_path / "tool")
    tool_port = free_udp_port()
    # Our socket is bound (and reading) before the tool starts, so no readiness wait is needed.
    async with connection(local, tool_port, tool_creds.node_id, "server") as conn:
        port = conn.local_address[1]
        async with run_tool(s_client_argv(openssl, port, tool_port, tool_creds, local.creds)) as tool:
            await step("handshake()", conn.handshake(), tool)
            check_session(conn, tool_creds)
            assert conn.role == "server"
            assert conn.remote_address == (LOOPBACK, tool_port)

            await tool.expect(b"Verify return code: 0 (ok)\n")
            out = bytes(tool.stdout)
            assert b"Protocol  : DTLSv1.2\n" in out, tool.transcript()
            assert b"Cipher    : " + SUITE.encode() + b"\n" in out, tool.transcript()
            seen = certificate_after(b"Server certificate\n", out)
            assert node_id_from_certificate(seen) == local.identity.node_id

            await exchange_messages(conn, tool)

            # "Q" makes s_client send close_notify and exit; recv() then reports the close.
            await tool.write(b"Q\n")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_recv_until_closed(conn), STEP_TIMEOUT)
            assert not conn.is_established
            assert await tool.wait_exit() == 0, tool.transcript()


async def _recv_until_closed(conn: DTLSPeerConnection) -> None:
    while True:
        message = await conn.recv()
        pytest.fail(f"unexpected message after the tool quit: {message!r}")


@pytest.mark.parametrize(
    ("tool_kind", "pin_tool", "expected", "alert"),
    [
        # Valid certificate, but not the node we pinned: unknown_ca, "not the key I trust".
        ("req-pkcs8", False, PeerVerificationError, 48),
        # A P-384 certificate does reach our check (ECDSA+SHA384 is an allowed signature), which
        # refuses the key type: unsupported_certificate.
        ("p384", True, PeerVerificationError, 43),
        # The tool cannot sign with RSA under our ECDSA-only CertificateRequest, so it sends no
        # certificate: a verification failure (OpenSSL: "peer did not return a certificate").
        ("rsa", True, PeerVerificationError, 40),
    ],
    ids=["other-node-id", "p384-key", "rsa-key"],
)
async def test_server_refuses_s_client(
    openssl: str,
    local: Local,
    stranger: Credentials,
    tmp_path: Path,
    tool_kind: str,
    pin_tool: bool,
    expected: type[HandshakeError],
    alert: int,
) -> None:
    tool_creds = make_tool_credentials(openssl, tool_kind, tmp_path / "tool")
    pin = tool_creds.node_id if pin_tool else stranger.node_id
    tool_port = free_udp_port()
    async with connection(local, tool_port, pin, "server") as conn:
        port = conn.local_address[1]
        async with run_tool(s_client_argv(openssl, port, tool_port, tool_creds, local.creds)) as tool:
            error = await refused_handshake(conn)
            assert type(error) is expected, f"{error!r}{tool.transcript()}"
            if isinstance(error, PeerVerificationError) and not pin_tool:
                assert (error.expected_node_id, error.actual_node_id) == (pin, tool_creds.node_id)
            if tool_kind == "p384":
                assert "secp384r1" in str(error)
            # The tool got our alert and gave up at once rather than retransmitting.
            assert await tool.wait_exit() != 0
            await tool.expect(f"SSL alert number {alert}".encode(), stream="stderr")


# -- downgrades: a tool offering less than our policy, in either role -------------------

# (protocol flag, cipher list): what a downgrading peer offers. DTLS 1.0 needs security
# level 0 in OpenSSL 3 (SHA-1 signatures), so that case allows everything else.
DOWNGRADES = {
    "dtls1.0-only": ("-dtls1", "ALL:@SECLEVEL=0"),
    "cbc-only": ("-dtls1_2", "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"),
    "rsa-suites-only": ("-dtls1_2", "ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256:AES256-SHA"),
}


@pytest.mark.parametrize("downgrade", list(DOWNGRADES))
async def test_server_refuses_a_downgrading_s_client(
    openssl: str, local: Local, tmp_path: Path, downgrade: str
) -> None:
    protocol, cipher = DOWNGRADES[downgrade]
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    tool_port = free_udp_port()
    async with connection(local, tool_port, tool_creds.node_id, "server") as conn:
        port = conn.local_address[1]
        argv = s_client_argv(
            openssl, port, tool_port, tool_creds, local.creds, cipher=cipher, protocol=protocol
        )
        async with run_tool(argv) as tool:
            error = await refused_handshake(conn)
            assert not isinstance(error, PeerVerificationError), f"{error!r}{tool.transcript()}"
            assert conn.stats()["messages_in"] == 0
            assert await tool.wait_exit() != 0, tool.transcript()
            assert b"Cipher is (NONE)" in tool.stdout or b"alert" in tool.stderr, tool.transcript()


@pytest.mark.parametrize("downgrade", list(DOWNGRADES))
async def test_client_refuses_a_downgrading_s_server(
    openssl: str, local: Local, tmp_path: Path, downgrade: str
) -> None:
    protocol, cipher = DOWNGRADES[downgrade]
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    port = free_udp_port()
    argv = s_server_argv(openssl, port, tool_creds, local.creds, cipher=cipher, protocol=protocol)
    async with run_tool(argv) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(local, port, tool_creds.node_id, "client") as conn:
            error = await refused_handshake(conn)
            assert not isinstance(error, PeerVerificationError), f"{error!r}{tool.transcript()}"
            assert conn.stats()["messages_in"] == 0
        await tool.wait_exit()
        # The tool saw why: no shared cipher, or no protocol both speak.
        assert re.search(rb"no shared cipher|unsupported protocol|version", bytes(tool.stderr)), (
            tool.transcript()
        )


# -- a node key OpenSSL cannot serve: an Ed25519 identity --------------------------------
#
# OpenSSL cannot use an Ed25519 key with the ECDHE-ECDSA suites, so such a node presents an
# ephemeral P-256 certificate that its Ed25519 key endorses (libp2p extension). A standard DTLS
# peer that does not read the extension authenticates the node by that certificate: it pins the
# certificate's public key (here s_client's DANE-EE "3 1 1" record: SHA-256 of the SPKI), or
# trusts exactly that certificate (s_server's -CAfile). The certificate is made once per
# Identity object, so the pin changes whenever the node makes a new Identity.


@pytest.fixture
def ed25519_local(tmp_path: Path) -> Local:
    """An Ed25519 node; ``creds.cert`` is what it presents (its DTLS certificate), for the tool."""
    identity = Identity.generate("ed25519")
    creds = Credentials(tmp_path / "local-dtls.crt", tmp_path / "no-key-for-the-tool")
    creds.cert.write_text(identity.dtls_certificate_pem)
    # The tool sees a P-256 certificate; its extension names the Ed25519 node.
    assert creds.node_id == identity.node_id
    return Local(identity, creds)


def spki_sha256(certificate_der: bytes) -> str:
    """The DANE "3 1 1" data of a certificate: SHA-256 of its DER SubjectPublicKeyInfo."""
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def dane_pin(spki_hash: str) -> list[str]:
    # DANE-EE(3) SPKI(1) SHA-256(1); the certificate's names are not what is pinned.
    return [
        "-dane_tlsa_domain", "node.invalid", "-dane_ee_no_namechecks",
        "-dane_tlsa_rrdata", f"3 1 1 {spki_hash}",
    ]  # fmt: skip


async def test_s_client_pins_the_spki_of_an_ed25519_nodes_dtls_certificate(
    openssl: str, ed25519_local: Local, tmp_path: Path
) -> None:
    identity = ed25519_local.identity
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    tool_port = free_udp_port()
    pin = dane_pin(spki_sha256(identity.dtls_certificate_der))
    async with connection(ed25519_local, tool_port, tool_creds.node_id, "server") as conn:
        port = conn.local_address[1]
        argv = s_client_argv(openssl, port, tool_port, tool_creds, None, extra=pin)
        async with run_tool(argv) as tool:
            await step("handshake()", conn.handshake(), tool)
            check_session(conn, tool_creds)

            await tool.expect(b"Verify return code: 0 (ok)\n")
            out = bytes(tool.stdout)
            assert b"matched EE certificate at depth 0" in out, tool.transcript()
            assert b"Cipher    : " + SUITE.encode() + b"\n" in out, tool.transcript()
            seen = ssl.PEM_cert_to_DER_cert(certificate_after(b"Server certificate\n", out).decode())
            assert seen == identity.dtls_certificate_der
            assert node_id_from_certificate(seen) == identity.node_id

            await exchange_messages(conn, tool)
            await tool.write(b"Q\n")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_recv_until_closed(conn), STEP_TIMEOUT)
            assert await tool.wait_exit() == 0, tool.transcript()


async def test_s_client_pinning_the_node_key_instead_refuses_an_ed25519_node(
    openssl: str, ed25519_local: Local, tmp_path: Path
) -> None:
    """The Ed25519 node key is not in the DTLS certificate's key: a standard peer that pins it
    fails verification (the handshake fails on both sides, quickly)."""
    identity = ed25519_local.identity
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    tool_port = free_udp_port()
    node_key_hash = hashlib.sha256(identity.public_key_der).hexdigest()
    assert node_key_hash != spki_sha256(identity.dtls_certificate_der)
    async with connection(ed25519_local, tool_port, tool_creds.node_id, "server") as conn:
        port = conn.local_address[1]
        argv = s_client_argv(openssl, port, tool_port, tool_creds, None, extra=dane_pin(node_key_hash))
        async with run_tool(argv) as tool:
            error = await refused_handshake(conn)
            assert not isinstance(error, PeerVerificationError), f"{error!r}{tool.transcript()}"
            assert await tool.wait_exit() != 0
            await tool.expect(b"certificate verify failed", stream="stderr")


async def test_s_server_trusting_the_dtls_certificate_of_an_ed25519_node(
    openssl: str, ed25519_local: Local, tmp_path: Path
) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    port = free_udp_port()
    async with run_tool(s_server_argv(openssl, port, tool_creds, ed25519_local.creds)) as tool:
        await tool.expect(b"ACCEPT\n")
        async with connection(ed25519_local, port, tool_creds.node_id, "client") as conn:
            await step("handshake()", conn.handshake(), tool)
            check_session(conn, tool_creds)
            await tool.expect(b"CIPHER is " + SUITE.encode() + b"\n")
            await tool.expect(b"verify return:1", stream="stderr")
            seen = certificate_after(b"Client certificate\n", bytes(tool.stdout))
            assert node_id_from_certificate(seen) == ed25519_local.identity.node_id
            await exchange_messages(conn, tool)
        assert await tool.wait_exit() == 0, tool.transcript()
