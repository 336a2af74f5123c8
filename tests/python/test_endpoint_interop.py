"""DTLSEndpoint against other DTLS 1.2 implementations (issue 11, "Interop"): ``openssl s_client``
and ``gnutls-cli`` dial an endpoint, go through its cookie exchange (HelloVerifyRequest) and are
pinned (``accept()`` returns a connection whose ``peer_node_id`` is the tool's; messages both
ways; the tool's close_notify ends it); an endpoint dials ``openssl s_server``; a tool outside
the allow list is refused inside the handshake; and all of it at once on one endpoint socket.

Each tool authenticates us too: s_client and s_server trust exactly our certificate
(``-CAfile``, ``-verify_return_error``); gnutls-cli trusts exactly our certificate
(``--x509cafile``) under the name it carries (its CN is our node ID). The openssl helpers
(running a tool, its arguments, the session checks, the message exchange) are
test_interop_openssl.py's, whose docstring explains how the tool is driven.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest
from dtls_peer import ConnectionClosed, DTLSEndpoint, DTLSPeerConnection
from test_interop_openssl import (
    LOOPBACK,
    MTU,
    STEP_TIMEOUT,
    Credentials,
    Local,
    Tool,
    check_session,
    exchange_messages,
    free_udp_port,
    make_tool_credentials,
    run_tool,
    s_client_argv,
    s_server_argv,
    step,
)

# The fixtures, shared (re-exported so pytest finds them here).
from test_interop_openssl import local as local
from test_interop_openssl import openssl as openssl

HANDSHAKE_TIMEOUT = 10.0
# DTLS 1.2 only, our one suite's parts only: what the endpoint accepts.
GNUTLS_PRIORITY = (
    "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA:-GROUP-ALL:+GROUP-SECP256R1"
)


@pytest.fixture(scope="module")
def gnutls_cli() -> str:
    """Path of ``gnutls-cli``; missing is a failure (CI installs it), not a skip."""
    path = shutil.which("gnutls-cli")
    if path is None:
        pytest.fail(
            "`gnutls-cli` was not found on PATH; the endpoint interop tests need it "
            "(Debian/Ubuntu: apt-get install gnutls-bin; .ci/run installs it)",
            pytrace=False,
        )
    return path


@contextlib.asynccontextmanager
async def endpoint(local: Local, allow: Collection[str]) -> AsyncIterator[DTLSEndpoint]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        ep = DTLSEndpoint(
            sock, local.identity, allow=set(allow), mtu=MTU, handshake_timeout=HANDSHAKE_TIMEOUT
        )
    try:
        yield ep
    finally:
        await ep.close()


def gnutls_cli_argv(gnutls: str, port: int, creds: Credentials, trusted: Credentials) -> list[str]:
    argv = [gnutls, "--udp", "--port", str(port), LOOPBACK, "--mtu", str(MTU), "--priority", GNUTLS_PRIORITY]
    argv += ["--x509certfile", str(creds.cert), "--x509keyfile", str(creds.key)]
    # Trust exactly our certificate, under the name in it (the CN, our node ID).
    return [*argv, "--x509cafile", str(trusted.cert), "--verify-hostname", trusted.node_id]


async def closed_by_tool(conn: DTLSPeerConnection, tool: Tool) -> None:
    """The tool's close_notify ends our connection: recv() raises ConnectionClosed promptly."""
    with pytest.raises(ConnectionClosed):
        message = await asyncio.wait_for(conn.recv(), STEP_TIMEOUT)
        pytest.fail(f"unexpected message after the tool quit: {message!r}{tool.transcript()}")
    assert not conn.is_established


async def accept_from_s_client(ep: DTLSEndpoint, tool: Tool, tool_creds: Credentials, tool_port: int) -> None:
    """Accepts s_client's connection, checks the session both sides saw, exchanges messages
    and has s_client close it."""
    conn = await step("accept()", ep.accept(), tool)
    check_session(conn, tool_creds)
    assert conn.remote_address == (LOOPBACK, tool_port)
    await tool.expect(b"Verify return code: 0 (ok)\n")
    assert b"Protocol  : DTLSv1.2\n" in tool.stdout, tool.transcript()
    await exchange_messages(conn, tool)
    # "Q" makes s_client send close_notify and exit.
    await tool.write(b"Q\n")
    await closed_by_tool(conn, tool)
    assert await tool.wait_exit() == 0, tool.transcript()


async def accept_from_gnutls_cli(ep: DTLSEndpoint, tool: Tool, tool_creds: Credentials) -> None:
    conn = await step("accept()", ep.accept(), tool)
    check_session(conn, tool_creds)
    await tool.expect(b"- Status: The certificate is trusted.")
    await tool.expect(b"- Description: (DTLS1.2-X.509)-(ECDHE-SECP256R1)-(ECDSA-SHA256)-(AES-128-GCM)")
    await exchange_messages(conn, tool)
    # End of input makes gnutls-cli send close_notify and exit.
    tool.stdin.close()
    await closed_by_tool(conn, tool)
    assert await tool.wait_exit() == 0, tool.transcript()


async def dial_s_server(ep: DTLSEndpoint, tool: Tool, tool_creds: Credentials, port: int) -> None:
    await tool.expect(b"ACCEPT\n")
    conn = await step(
        "connect()", ep.connect((LOOPBACK, port), expected_node_id=tool_creds.node_id, role="client"), tool
    )
    check_session(conn, tool_creds)
    assert conn.role == "client"
    await tool.expect(b"CIPHER is ECDHE-ECDSA-AES128-GCM-SHA256\n")
    await tool.expect(b"verify return:1", stream="stderr")
    await exchange_messages(conn, tool)
    await conn.close()
    # -naccept 1: s_server exits once our close_notify ends its one session.
    assert await tool.wait_exit() == 0, tool.transcript()


@pytest.mark.parametrize("tool_kind", ["req-pkcs8", "identity-save"])
async def test_s_client_is_accepted_through_the_cookie_exchange_and_pinned(
    openssl: str, local: Local, tmp_path: Path, tool_kind: str
) -> None:
    tool_creds = make_tool_credentials(openssl, tool_kind, tmp_path / "tool")
    tool_port = free_udp_port()
    async with endpoint(local, {tool_creds.node_id}) as ep:
        port = ep.local_address[1]
        async with run_tool(s_client_argv(openssl, port, tool_port, tool_creds, local.creds)) as tool:
            await accept_from_s_client(ep, tool, tool_creds, tool_port)
        stats = ep.stats()
    # s_client answered a HelloVerifyRequest: the handshake started only after the cookie.
    assert stats["hello_verify_requests"] >= 1, stats
    assert (stats["handshakes_started"], stats["handshakes_accepted"]) == (1, 1), stats


async def test_gnutls_cli_is_accepted_through_the_cookie_exchange_and_pinned(
    gnutls_cli: str, openssl: str, local: Local, tmp_path: Path
) -> None:
    # gnutls-cli's client certificate: a P-256 key and certificate made by our Identity.
    tool_creds = make_tool_credentials(openssl, "identity-save", tmp_path / "tool")
    async with endpoint(local, {tool_creds.node_id}) as ep:
        port = ep.local_address[1]
        async with run_tool(gnutls_cli_argv(gnutls_cli, port, tool_creds, local.creds)) as tool:
            await accept_from_gnutls_cli(ep, tool, tool_creds)
        stats = ep.stats()
    assert stats["hello_verify_requests"] >= 1, stats
    assert (stats["handshakes_started"], stats["handshakes_accepted"]) == (1, 1), stats


async def test_an_endpoint_dials_s_server(openssl: str, local: Local, tmp_path: Path) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    port = free_udp_port()
    async with endpoint(local, set()) as ep:
        async with run_tool(s_server_argv(openssl, port, tool_creds, local.creds)) as tool:
            await dial_s_server(ep, tool, tool_creds, port)
        stats = ep.stats()
    # Our own dial needs no cookie from us, and is not an incoming handshake.
    assert (stats["hello_verify_requests"], stats["handshakes_started"]) == (0, 0), stats


async def test_s_client_outside_the_allow_list_is_refused_in_the_handshake(
    openssl: str, local: Local, tmp_path: Path
) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    someone_else = make_tool_credentials(openssl, "identity-save", tmp_path / "other")
    async with endpoint(local, {someone_else.node_id}) as ep:
        port = ep.local_address[1]
        async with run_tool(s_client_argv(openssl, port, free_udp_port(), tool_creds, local.creds)) as tool:
            # The tool gets our unknown_ca alert and gives up; accept() sees nothing.
            assert await tool.wait_exit() != 0, tool.transcript()
            await tool.expect(b"SSL alert number 48", stream="stderr")
            accepting = asyncio.ensure_future(ep.accept())
            await asyncio.sleep(0.2)
            assert not accepting.done()
            accepting.cancel()
        stats = ep.stats()
    assert (stats["handshakes_refused"], stats["handshakes_accepted"], stats["connections"]) == (1, 0, 0), (
        stats
    )


async def test_one_endpoint_socket_serves_s_client_and_gnutls_cli_while_dialling_s_server(
    openssl: str, gnutls_cli: str, local: Local, tmp_path: Path
) -> None:
    s_client_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "s_client")
    gnutls_creds = make_tool_credentials(openssl, "identity-save", tmp_path / "gnutls")
    s_server_creds = make_tool_credentials(openssl, "ecparam-sec1", tmp_path / "s_server")
    s_client_port, s_server_port = free_udp_port(), free_udp_port()
    async with endpoint(local, {s_client_creds.node_id, gnutls_creds.node_id}) as ep:
        port = ep.local_address[1]
        async with (
            run_tool(s_server_argv(openssl, s_server_port, s_server_creds, local.creds)) as server,
            run_tool(s_client_argv(openssl, port, s_client_port, s_client_creds, local.creds)) as client,
        ):
            # The endpoint dials while s_client's handshake runs on the same socket; the two
            # incoming peers are told apart by address (the accepted one is checked by pin).
            await asyncio.gather(
                accept_from_s_client(ep, client, s_client_creds, s_client_port),
                dial_s_server(ep, server, s_server_creds, s_server_port),
            )
        async with run_tool(gnutls_cli_argv(gnutls_cli, port, gnutls_creds, local.creds)) as tool:
            await accept_from_gnutls_cli(ep, tool, gnutls_creds)
        stats = ep.stats()
    assert (stats["handshakes_started"], stats["handshakes_accepted"]) == (2, 2), stats


def test_gnutls_cli_is_a_dtls_1_2_client(gnutls_cli: str) -> None:
    """The priority string above names only things this gnutls-cli knows (a typo would make
    every gnutls test fail with an unhelpful handshake error instead)."""
    done = subprocess.run(
        [gnutls_cli, "--priority", GNUTLS_PRIORITY, "--list"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "ECDHE_ECDSA_AES_128_GCM_SHA256" in done.stdout, done.stdout
    assert "DTLS1.2" in done.stdout, done.stdout
