"""Data channels (channels=True): messages of any size, whole and in order, per channel;
text and binary; channels opened by either side; close on both sides; misuse."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

import pytest
from conftest import Pair, PairFactory, handshake_all
from dtls_peer import ChannelClosed, DTLSEndpoint, DTLSError, HandshakeError, Identity, MessageTooLarge

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


async def test_a_channels_client_and_a_plain_server_both_fail_in_handshake(make_pair: PairFactory) -> None:
    # The client offers ALPN "webrtc"; the plain server refuses it (no_application_protocol), so
    # no SCTP packet ever reaches it as a message.
    pair = make_pair(
        socket.AF_INET,
        options_a={"role": "client", "channels": True},
        options_b={"role": "server", "channels": False},
    )
    results = await asyncio.gather(pair.a.handshake(), pair.b.handshake(), return_exceptions=True)
    assert all(isinstance(r, HandshakeError) for r in results), results
    assert "channels=True" in str(results[0]) and "channels=True" in str(results[1])
    assert pair.a.state == pair.b.state == "failed"


async def test_a_plain_client_and_a_channels_server_fail_on_the_channels_side(make_pair: PairFactory) -> None:
    # A client that offers no ALPN may be another WebRTC stack, so the handshake completes;
    # the channels side then fails at once on the first message that is not SCTP.
    pair = make_pair(
        socket.AF_INET,
        options_a={"role": "client", "channels": False},
        options_b={"role": "server", "channels": True},
    )
    server = asyncio.ensure_future(pair.b.handshake())
    await asyncio.wait_for(pair.a.handshake(), STEP)
    await pair.a.send(b"a plain message")
    with pytest.raises(HandshakeError, match="not SCTP"):
        await asyncio.wait_for(server, STEP)


async def test_a_silent_plain_peer_times_out_the_channels_wait(make_pair: PairFactory) -> None:
    pair = make_pair(
        socket.AF_INET,
        handshake_timeout=2.0,
        options_a={"role": "client", "channels": False},
        options_b={"role": "server", "channels": True},
    )
    results = await asyncio.gather(pair.a.handshake(), pair.b.handshake(), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], HandshakeError) and "channels=True" in str(results[1])


async def test_an_endpoint_gives_every_peer_channels(identity_a: Identity, identity_b: Identity) -> None:
    # DPC's shape: one socket for every punched peer, ~90 KB messages reliably and in order.
    sa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sa.bind(("127.0.0.1", 0))
    sb.bind(("127.0.0.1", 0))
    server = DTLSEndpoint(sa, identity_a, allow={identity_b.node_id}, channels=True)
    client = DTLSEndpoint(sb, identity_b, allow=None, channels=True)
    try:
        dialled = asyncio.ensure_future(client.connect(sa.getsockname(), expected_node_id=identity_a.node_id))
        accepted = await asyncio.wait_for(server.accept(), STEP)
        conn = await asyncio.wait_for(dialled, STEP)
        assert conn.channels and accepted.channels
        opened = asyncio.ensure_future(accepted.create_channel("dpc"))
        theirs = await asyncio.wait_for(conn.accept_channel(), STEP)
        ours = await asyncio.wait_for(opened, STEP)
        frames = [pattern(90_000 + i, i) for i in range(20)]
        for frame in frames:
            await ours.send(frame)
        assert [await asyncio.wait_for(theirs.recv(), STEP) for _ in frames] == frames
    finally:
        await client.close()
        await server.close()
        sa.close()
        sb.close()
