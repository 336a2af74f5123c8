"""Data channels (channels=True): messages of any size, whole and in order, per channel;
text and binary; channels opened by either side; close on both sides; misuse."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

import pytest
from conftest import Pair, PairFactory, handshake_all
from dtls_peer import ChannelClosed, ConnectionClosed, DTLSError, HandshakeError, MessageTooLarge

STEP = 20.0


def pattern(size: int, seed: int) -> bytes:
    """``size`` bytes that differ per message, so a swap, a loss or a duplicate shows."""
    block = hashlib.sha256(f"{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


async def channel_pair(make_pair: PairFactory, **options: Any) -> Pair:
    pair = make_pair(socket.AF_INET, channels=True, **options)
    await handshake_all(pair.a, pair.b, timeout=STEP)
    return pair


async def test_mixed_sizes_from_1_byte_to_16_mib_arrive_exact_and_in_order(make_pair: PairFactory) -> None:
    pair = await channel_pair(make_pair)
    opened = asyncio.ensure_future(pair.a.create_channel("files"))
    theirs = await asyncio.wait_for(pair.b.accept_channel(), STEP)
    ours = await asyncio.wait_for(opened, STEP)
    assert (ours.label, theirs.label, ours.id, theirs.id) == ("files", "files", theirs.id, ours.id)
    sizes = [1, 1163, 1164, 65_536, 90_000, 1 << 20, 3 << 20, 16 << 20, 7, 0]
    messages = [pattern(n, i) for i, n in enumerate(sizes)]

    async def send_all() -> None:
        for m in messages:
            await ours.send(m)

    sender = asyncio.ensure_future(send_all())
    got = [await asyncio.wait_for(theirs.recv(), 60) for _ in messages]
    await asyncio.wait_for(sender, STEP)
    assert [len(m) for m in got] == sizes
    assert got == messages
    await pair.a.close()
    await pair.b.close()


async def test_text_and_binary_keep_their_kind_both_ways(make_pair: PairFactory) -> None:
    pair = await channel_pair(make_pair)
    opened = asyncio.ensure_future(pair.b.create_channel("chat", protocol="json"))
    theirs = await asyncio.wait_for(pair.a.accept_channel(), STEP)
    ours = await asyncio.wait_for(opened, STEP)
    assert theirs.protocol == "json" and theirs.ordered and theirs.max_retransmits is None
    await ours.send('{"hello": "wörld"}')
    await ours.send(b"\x00\x01")
    await ours.send("")
    assert await asyncio.wait_for(theirs.recv(), STEP) == '{"hello": "wörld"}'
    assert await asyncio.wait_for(theirs.recv(), STEP) == b"\x00\x01"
    assert await asyncio.wait_for(theirs.recv(), STEP) == ""
    await theirs.send(bytearray(b"back"))
    assert await asyncio.wait_for(ours.recv(), STEP) == b"back"


async def test_closing_a_channel_ends_it_on_both_sides_after_its_messages(make_pair: PairFactory) -> None:
    pair = await channel_pair(make_pair)
    opened = asyncio.ensure_future(pair.a.create_channel("c"))
    theirs = await asyncio.wait_for(pair.b.accept_channel(), STEP)
    ours = await asyncio.wait_for(opened, STEP)
    await ours.send(b"last")
    await ours.close()
    with pytest.raises(ChannelClosed):
        await ours.send(b"more")
    assert [m async for m in theirs] == [b"last"]
    with pytest.raises(ChannelClosed):
        await theirs.send(b"reply")


async def test_oversize_and_misuse_raise_before_anything_is_sent(make_pair: PairFactory) -> None:
    pair = await channel_pair(make_pair, max_channel_message_size=1000)
    opened = asyncio.ensure_future(pair.a.create_channel("c"))
    theirs = await asyncio.wait_for(pair.b.accept_channel(), STEP)
    ours = await asyncio.wait_for(opened, STEP)
    with pytest.raises(MessageTooLarge):
        await ours.send(b"x" * 1001)
    with pytest.raises(TypeError):
        await ours.send(12)  # type: ignore[arg-type]  # a wrong type on purpose
    with pytest.raises(DTLSError, match="create_channel"):
        await pair.a.send(b"plain")
    with pytest.raises(DTLSError, match="create_channel"):
        await pair.b.recv()
    with pytest.raises(ValueError, match="mutually exclusive"):
        await pair.a.create_channel("x", max_retransmits=1, max_lifetime=1.0)
    await ours.send(b"x" * 1000)
    assert await asyncio.wait_for(theirs.recv(), STEP) == b"x" * 1000


async def test_channels_on_a_plain_connection_say_so(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET)
    await handshake_all(pair.a, pair.b)
    with pytest.raises(DTLSError, match="channels=True"):
        await pair.a.create_channel("x")
    with pytest.raises(DTLSError, match="channels=True"):
        await pair.b.accept_channel()


@pytest.mark.parametrize("channels_side", ["client", "server"])
async def test_only_one_side_with_channels_fails_clearly(make_pair: PairFactory, channels_side: str) -> None:
    a_channels = channels_side == "client"
    pair = make_pair(
        socket.AF_INET,
        handshake_timeout=3.0,
        options_a={"role": "client", "channels": a_channels},
        options_b={"role": "server", "channels": not a_channels},
    )
    results = await asyncio.gather(pair.a.handshake(), pair.b.handshake(), return_exceptions=True)
    with_channels = results[0] if a_channels else results[1]
    assert isinstance(with_channels, HandshakeError), results
    assert "channels" in str(with_channels)
    plain = pair.b if a_channels else pair.a
    # The plain side never sees an SCTP packet as a message.
    if plain.is_established:
        with pytest.raises((ConnectionClosed, asyncio.TimeoutError)):
            await asyncio.wait_for(plain.recv(), 1.0)
