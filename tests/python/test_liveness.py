"""Liveness on NAT-ed paths: ``keepalive_interval`` keeps the path warm with datagrams the
peer's DTLS stack ignores (our own engine and OpenSSL's tools), and ``idle_timeout`` ends a
session whose peer went silent with ``ConnectionClosed``, on pending and later ``recv()`` calls.
Intervals are short so the tests stay fast; bounds on time are generous."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import socket
import time
from pathlib import Path
from typing import Literal

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
from dtls_peer import ConnectionClosed, DTLSPeerConnection, Identity
from test_interop_openssl import (
    LOOPBACK,
    Credentials,
    exchange_messages,
    free_udp_port,
    make_tool_credentials,
    run_tool,
    s_client_argv,
    s_server_argv,
    step,
)

KEEPALIVE = 0.05


async def test_an_idle_session_sends_keepalives_that_the_peer_counts_and_ignores(
    make_pair: PairFactory, family: socket.AddressFamily
) -> None:
    pair = make_pair(family, options_a={"keepalive_interval": KEEPALIVE})
    await handshake_all(pair.a, pair.b)
    await wait_until(lambda: pair.b.stats()["keepalives_in"] >= 3, "three keepalives to arrive")
    a, b = pair.a.stats(), pair.b.stats()
    assert b["keepalives_in"] >= 3, b
    assert a["keepalives_out"] >= b["keepalives_in"]
    assert a["keepalives_in"] == b["keepalives_out"] == 0
    assert b["dropped"]["invalid"] == b["dropped"]["not_dtls"] == 0, b
    assert b["messages_in"] == 0, "a keepalive must never surface as a message"
    # The session carries on as before, both ways.
    await pair.a.send(b"after the keepalives")
    assert await recv_within(pair.b) == b"after the keepalives"
    await pair.b.send(b"reply")
    assert await recv_within(pair.a) == b"reply"


async def test_idle_timeout_ends_pending_and_later_receives_with_a_reason(
    make_pair: PairFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dtls_peer")
    pair = make_pair(socket.AF_INET, options_a={"idle_timeout": 0.3})
    started = time.monotonic()  # the idle clock starts later, when a's handshake completes
    await handshake_all(pair.a, pair.b)
    pending = asyncio.ensure_future(pair.a.recv())
    with pytest.raises(
        ConnectionClosed, match=r"^idle timeout: no authenticated datagram from the peer for 0.3 s$"
    ):
        await asyncio.wait_for(pending, STEP_TIMEOUT)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ConnectionClosed, match="idle timeout"):
        await pair.a.recv()
    assert pair.a.state == "closed"
    # The peer learns of it through close_notify.
    with pytest.raises(ConnectionClosed, match="the peer closed the connection"):
        await recv_within(pair.b)
    peer = "{}:{}".format(*address(pair.sock_b))
    assert (
        f"connection to {peer} closed: idle timeout: no authenticated datagram from the peer for 0.3 s"
        in [r.getMessage() for r in caplog.records]
    )


async def test_messages_hold_off_the_idle_timeout(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET, options_a={"idle_timeout": 1.0})
    await handshake_all(pair.a, pair.b)
    started = time.monotonic()
    for i in range(15):
        await asyncio.sleep(0.1)
        await pair.b.send(b"%d" % i)
        assert await recv_within(pair.a) == b"%d" % i
    assert time.monotonic() - started > 1.0
    assert pair.a.state == "established"


async def test_keepalives_hold_off_the_idle_timeout_until_the_peer_vanishes(
    udp_pair: UdpPairFactory, connection: ConnectionFactory, identity_a: Identity, identity_b: Identity
) -> None:
    liveness = {"keepalive_interval": KEEPALIVE, "idle_timeout": 0.6}
    sock_a, sock_b = udp_pair(socket.AF_INET)
    a = connection(sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, **liveness)
    # Not through the fixture: this peer is dropped below without close().
    b = DTLSPeerConnection(
        sock_b,
        address(sock_a),
        identity_b,
        expected_node_id=identity_a.node_id,
        keepalive_interval=KEEPALIVE,
        idle_timeout=0.6,
    )
    await handshake_all(a, b)
    await asyncio.sleep(1.8)  # three idle timeouts, with nothing but keepalives
    assert (a.state, b.state) == ("established", "established")
    assert a.stats()["keepalives_in"] >= 5 and b.stats()["keepalives_in"] >= 5
    # The peer's process dies: no close_notify, no more keepalives.
    del b
    gc.collect()
    started = time.monotonic()
    with pytest.raises(ConnectionClosed, match="idle timeout"):
        await asyncio.wait_for(a.recv(), STEP_TIMEOUT)
    assert time.monotonic() - started < 0.6 + 2.0


@pytest.mark.parametrize(
    "options", [{"keepalive_interval": 0}, {"idle_timeout": -1.0}, {"idle_timeout": float("nan")}]
)
async def test_bad_liveness_values_are_refused(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    options: dict[str, float],
) -> None:
    sock_a, sock_b = udp_pair(socket.AF_INET)
    with pytest.raises(ValueError, match="positive"):
        connection(sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, **options)
    with pytest.raises(TypeError):
        connection(sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, idle_timeout="1")


# -- OpenSSL's tools ignore keepalives --------------------------------------------------------


@pytest.fixture(scope="module")
def openssl() -> str:
    """The ``openssl`` tool; test_interop_openssl.py checks its version, CI installs it."""
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("the `openssl` command-line tool is not on PATH (apt-get install openssl)", pytrace=False)
    return path


@pytest.mark.parametrize("tool_role", ["s_server", "s_client"])
async def test_openssl_ignores_keepalives(openssl: str, tmp_path: Path, tool_role: str) -> None:
    tool_creds = make_tool_credentials(openssl, "req-pkcs8", tmp_path / "tool")
    ours = Identity.generate()
    our_creds = Credentials(tmp_path / "ours.crt", tmp_path / "ours.key")
    ours.save(our_creds.cert, our_creds.key)
    tool_port, our_port = free_udp_port(), free_udp_port()
    if tool_role == "s_server":
        argv = s_server_argv(openssl, tool_port, tool_creds, our_creds)
        role: Literal["client", "server"] = "client"
    else:
        argv = s_client_argv(openssl, our_port, tool_port, tool_creds, our_creds)
        role = "server"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, our_port))
        conn = DTLSPeerConnection(
            sock,
            (LOOPBACK, tool_port),
            ours,
            expected_node_id=tool_creds.node_id,
            role=role,
            keepalive_interval=KEEPALIVE,
        )
    try:
        async with run_tool(argv) as tool:
            if tool_role == "s_server":
                await tool.expect(b"ACCEPT")
            await step("handshake()", conn.handshake(), tool)
            # Idle long enough for several keepalives to reach the tool.
            await wait_until(lambda: conn.stats()["keepalives_out"] >= 5, "five keepalives to go out")
            await exchange_messages(conn, tool)
            assert conn.is_established, tool.transcript()
            assert b"error" not in tool.stderr.lower(), tool.transcript()
    finally:
        await conn.close()
