"""aiortc's SCTP and data channels over dtls_peer datagram connections (tests/python/aiortc_link.py):
the plumbing the channel interop tests and the channel benchmark stand on."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc_link import (
    ChannelAcceptor,
    QueuedChannel,
    close_sctp,
    create_channel,
    link_of,
    open_sctp,
    wait_connected,
)
from conftest import STEP_TIMEOUT, Pair, PairFactory, handshake_all

Associated = tuple[Pair, RTCSctpTransport, RTCSctpTransport]


@pytest.fixture
async def associated(make_pair: PairFactory) -> AsyncIterator[Associated]:
    """A handshaken pair (a is the DTLS client) with an aiortc SCTP association over it."""
    pair = make_pair(socket.AF_INET, options_a={"role": "client"}, options_b={"role": "server"})
    await handshake_all(pair.a, pair.b)
    sctp_a, sctp_b = await open_sctp(pair.a), await open_sctp(pair.b)
    await asyncio.gather(wait_connected(sctp_a, STEP_TIMEOUT), wait_connected(sctp_b, STEP_TIMEOUT))
    yield pair, sctp_a, sctp_b
    await close_sctp(sctp_a)
    await close_sctp(sctp_b)


async def opened(
    opener: RTCSctpTransport, acceptor: RTCSctpTransport, label: str, **parameters: Any
) -> tuple[QueuedChannel, QueuedChannel]:
    """A channel ``opener`` opens and ``acceptor`` accepts: both ends, once open."""
    incoming = ChannelAcceptor(acceptor)
    channel = create_channel(opener, label, **parameters)
    await channel.wait_open(STEP_TIMEOUT)
    return channel, await incoming.accept(STEP_TIMEOUT)


async def test_aiortc_data_channel_both_ways(
    associated: Associated,
) -> None:
    _, sctp_a, sctp_b = associated
    chat, accepted = await opened(sctp_a, sctp_b, "chat", protocol="json")
    assert (accepted.channel.label, accepted.channel.protocol) == ("chat", "json")
    # RFC 8832: the DTLS client opens even stream IDs.
    assert chat.channel.id == accepted.channel.id and chat.channel.id is not None
    assert chat.channel.id % 2 == 0

    # 200 KiB crosses about 180 DTLS records each way; text arrives as str.
    big = os.urandom(200 * 1024)
    await chat.send(b"ping")
    await chat.send(big)
    assert await asyncio.wait_for(accepted.recv(), STEP_TIMEOUT) == b"ping"
    assert await asyncio.wait_for(accepted.recv(), STEP_TIMEOUT) == big
    await accepted.send("pong ✓")
    await accepted.send(big[::-1])
    assert await asyncio.wait_for(chat.recv(), STEP_TIMEOUT) == "pong ✓"
    assert await asyncio.wait_for(chat.recv(), STEP_TIMEOUT) == big[::-1]
    # Every SCTP packet fitted one record at mtu 1200 (none was dropped as too large).
    assert link_of(sctp_a).dropped_too_large == link_of(sctp_b).dropped_too_large == 0


async def test_aiortc_server_side_opens_odd_stream(
    associated: Associated,
) -> None:
    _, sctp_a, sctp_b = associated
    back, accepted = await opened(sctp_b, sctp_a, "back")
    assert back.channel.id is not None and back.channel.id % 2 == 1
    await back.send(b"from the DTLS server")
    assert await asyncio.wait_for(accepted.recv(), STEP_TIMEOUT) == b"from the DTLS server"


async def test_closed_dtls_session_closes_aiortc_channels(
    associated: Associated,
) -> None:
    pair, sctp_a, sctp_b = associated
    _, accepted = await opened(sctp_a, sctp_b, "chat")
    # The DTLS client closes its session (close_notify); the server side's channel ends
    # instead of waiting for a message that can no longer come.
    await pair.a.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(accepted.recv(), STEP_TIMEOUT)
    assert sctp_b.state == "closed"
