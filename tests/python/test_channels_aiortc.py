"""dtls_peer's channels against aiortc's data channels (another RFC 8831/8832 stack): aiortc's
SCTP runs over a plain dtls_peer datagram connection (tests/python/aiortc_link.py) whose peer
is a ``channels=True`` connection. Channels opened from either side, binary and text messages
up to 256 KiB (aiortc's limit) both ways, exact content and order; with dtls_peer as the DTLS
client and as the server, since the stream-ID parity follows the DTLS role."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

import pytest
from aiortc.rtcsctptransport import InitChunk, RTCSctpTransport, serialize_packet
from aiortc_link import (
    AiortcDtls,
    ChannelAcceptor,
    QueuedChannel,
    close_sctp,
    create_channel,
    open_aiortc_dtls,
    open_sctp,
    start_sctp,
    wait_connected,
)
from conftest import STEP_TIMEOUT, ConnectionFactory, UdpPairFactory, address
from dtls_peer import ChannelClosed, DTLSError, Identity, node_id_from_certificate

Message = Union[bytes, str]
KIB = 1024
# aiortc reassembles any size but refuses to send more than 256 KiB to a peer that announced
# nothing (RFC 8841's SDP max-message-size; there is no SDP here).
AIORTC_LIMIT = 256 * KIB


def mixed_messages(seed: int) -> list[Message]:
    """Binary and text, from 1 byte to 256 KiB: within one record, just over one record at
    mtu 1200 (so one SCTP chunk and two), many chunks; non-ASCII text."""
    rng = os.urandom
    sizes = [1, 7, 1100, 1163, 1164, 4 * KIB, 65 * KIB, 200 * KIB, AIORTC_LIMIT]
    messages: list[Message] = [rng(size) for size in sizes]
    messages += ["h", "héllo ✓ " * 3, "δ" * (60 * KIB), "x" * AIORTC_LIMIT]
    # Interleave so text and binary alternate on the stream (the PPID changes per message).
    interleaved: list[Message] = []
    text = [m for m in messages if isinstance(m, str)]
    binary = [m for m in messages if isinstance(m, bytes)]
    for i in range(max(len(text), len(binary))):
        interleaved.extend(binary[i : i + 1])
        interleaved.extend(text[i : i + 1])
    interleaved.append(seed.to_bytes(4, "big") + rng(100))
    return interleaved


@dataclass
class Mixed:
    """A dtls_peer channels connection and an aiortc SCTP transport talking to each other."""

    peer: Any  # DTLSPeerConnection with channels=True (the channel API is typed there)
    sctp: RTCSctpTransport
    incoming: ChannelAcceptor
    role: str  # dtls_peer's DTLS role


# How aiortc's SCTP reaches dtls_peer: over a plain dtls_peer connection (the adapter), or over
# aiortc's own DTLS (pyOpenSSL), as an aiortc application would. The adapter cannot face a
# dtls_peer DTLS client: a dtls_peer server without channels refuses a client that offers
# ALPN "webrtc" (by design, so that one side without channels fails in the handshake).
STACKS = [("adapter", "server"), ("aiortc_dtls", "client"), ("aiortc_dtls", "server")]


@pytest.fixture(params=STACKS, ids=[f"{how}-dtls_peer_{role}" for how, role in STACKS])
async def mixed(
    request: pytest.FixtureRequest,
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
) -> AsyncIterator[Mixed]:
    how, role = request.param
    other = "server" if role == "client" else "client"
    sock_a, sock_b = udp_pair(socket.AF_INET)
    theirs: AiortcDtls | None = None
    # A channels connection's handshake ends once the SCTP association is up, which needs
    # aiortc's SCTP started on a handshaken DTLS session first.
    if how == "adapter":
        peer = connection(
            sock_a, address(sock_b), identity_a, expected_node_id=identity_b.node_id, role=role, channels=True
        )
        plain = connection(
            sock_b, address(sock_a), identity_b, expected_node_id=identity_a.node_id, role=other
        )
        peer_handshake = asyncio.ensure_future(peer.handshake())
        await asyncio.wait_for(plain.handshake(), STEP_TIMEOUT)
        sctp = await open_sctp(plain)
    else:
        theirs = await open_aiortc_dtls(sock_b, address(sock_a), other)
        pin = node_id_from_certificate(theirs.certificate_der)
        peer = connection(sock_a, address(sock_b), identity_a, expected_node_id=pin, role=role, channels=True)
        peer_handshake = asyncio.ensure_future(peer.handshake())
        await asyncio.wait_for(theirs.start(identity_a.certificate_der), STEP_TIMEOUT)
        sctp = await start_sctp(theirs.dtls)
    incoming = ChannelAcceptor(sctp)
    await asyncio.wait_for(peer_handshake, STEP_TIMEOUT)
    await wait_connected(sctp, STEP_TIMEOUT)
    yield Mixed(peer, sctp, incoming, role)
    await close_sctp(sctp)
    if theirs is not None:
        await theirs.stop()
    await peer.close()


async def within(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, STEP_TIMEOUT)


async def send_all_aiortc(channel: QueuedChannel, messages: Sequence[Message]) -> None:
    for message in messages:
        await channel.send(message)


async def send_all_dtls_peer(channel: Any, messages: Sequence[Message]) -> None:
    for message in messages:
        await channel.send(message)


async def receive(channel: Any, count: int) -> list[Message]:
    return [await within(channel.recv()) for _ in range(count)]


def assert_same(got: Sequence[Message], sent: Sequence[Message]) -> None:
    """Exact content, type (bytes for binary, str for text) and order; a failure names the
    first message that differs instead of printing megabytes."""
    assert len(got) == len(sent), f"{len(got)} messages arrived, {len(sent)} were sent"
    for i, (g, s) in enumerate(zip(got, sent)):
        if type(g) is not type(s) or g != s:
            got_kind, sent_kind = f"{type(g).__name__} of {len(g)}", f"{type(s).__name__} of {len(s)}"
            pytest.fail(f"message {i} differs: got {got_kind}, sent {sent_kind}")


def stream_parity(opener_dtls_role: str) -> int:
    # RFC 8832 section 6: the DTLS client uses even stream IDs, the server odd ones.
    return 0 if opener_dtls_role == "client" else 1


async def test_aiortc_opens_channel_to_dtls_peer(mixed: Mixed) -> None:
    theirs = create_channel(mixed.sctp, "from-aiortc", protocol="chat/1")
    ours = await within(mixed.peer.accept_channel())
    await theirs.wait_open(STEP_TIMEOUT)
    assert (ours.label, ours.protocol, ours.ordered) == ("from-aiortc", "chat/1", True)
    assert ours.id == theirs.channel.id
    aiortc_role = "server" if mixed.role == "client" else "client"
    assert ours.id % 2 == stream_parity(aiortc_role)

    to_dtls_peer, to_aiortc = mixed_messages(1), mixed_messages(2)
    await asyncio.gather(send_all_aiortc(theirs, to_dtls_peer), send_all_dtls_peer(ours, to_aiortc))
    assert_same(await receive(ours, len(to_dtls_peer)), to_dtls_peer)
    assert_same(await receive(theirs, len(to_aiortc)), to_aiortc)


async def test_dtls_peer_opens_channel_to_aiortc(mixed: Mixed) -> None:
    ours = await within(mixed.peer.create_channel("from-dtls-peer", protocol="files"))
    theirs = await mixed.incoming.accept(STEP_TIMEOUT)
    assert (theirs.channel.label, theirs.channel.protocol) == ("from-dtls-peer", "files")
    assert theirs.channel.ordered is True
    assert theirs.channel.maxRetransmits is None and theirs.channel.maxPacketLifeTime is None
    assert ours.id == theirs.channel.id and ours.id % 2 == stream_parity(mixed.role)

    to_aiortc, to_dtls_peer = mixed_messages(3), mixed_messages(4)
    await asyncio.gather(send_all_dtls_peer(ours, to_aiortc), send_all_aiortc(theirs, to_dtls_peer))
    assert_same(await receive(theirs, len(to_aiortc)), to_aiortc)
    assert_same(await receive(ours, len(to_dtls_peer)), to_dtls_peer)


async def test_many_messages_keep_their_order_both_ways(mixed: Mixed) -> None:
    ours = await within(mixed.peer.create_channel("bulk"))
    theirs = await mixed.incoming.accept(STEP_TIMEOUT)
    # 300 messages of 1 B to 16 KiB each way: 2.4 MiB in all, many in flight at once.
    sizes = [1 + (i * 7919) % (16 * KIB) for i in range(300)]
    to_aiortc = [os.urandom(n) for n in sizes]
    to_dtls_peer = [os.urandom(n) for n in reversed(sizes)]
    await asyncio.gather(send_all_dtls_peer(ours, to_aiortc), send_all_aiortc(theirs, to_dtls_peer))
    got_aiortc, got_dtls_peer = await asyncio.gather(
        receive(theirs, len(to_aiortc)), receive(ours, len(to_dtls_peer))
    )
    assert_same(got_aiortc, to_aiortc)
    assert_same(got_dtls_peer, to_dtls_peer)


async def test_empty_messages_cross_both_ways(mixed: Mixed) -> None:
    # RFC 8831 section 6.6: an empty message travels as one byte under the "empty" PPIDs.
    ours = await within(mixed.peer.create_channel("empty"))
    theirs = await mixed.incoming.accept(STEP_TIMEOUT)
    await ours.send(b"")
    await ours.send("")
    await ours.send(b"\x00")
    await theirs.send(b"")
    await theirs.send("")
    await theirs.send("\x00")
    assert_same(await receive(theirs, 3), [b"", "", b"\x00"])
    assert_same(await receive(ours, 3), [b"", "", "\x00"])


async def test_channel_options_cross_both_ways(mixed: Mixed) -> None:
    # dtls_peer -> aiortc: unordered, no retransmissions (DCEP channel type and reliability).
    ours = await within(mixed.peer.create_channel("live", ordered=False, max_retransmits=0))
    theirs = await mixed.incoming.accept(STEP_TIMEOUT)
    assert theirs.channel.ordered is False and theirs.channel.maxRetransmits == 0
    # aiortc -> dtls_peer: unordered, limited lifetime.
    timed = create_channel(mixed.sctp, "timed", ordered=False, maxPacketLifeTime=500)
    accepted = await within(mixed.peer.accept_channel())
    assert (accepted.label, accepted.ordered) == ("timed", False)
    # Nothing is lost on loopback; unordered delivery may reorder, so compare as sets.
    sent = [os.urandom(1 + i * 100) for i in range(20)]
    await send_all_dtls_peer(ours, sent)
    await send_all_aiortc(timed, sent)
    assert sorted(await receive(theirs, len(sent))) == sorted(sent)
    assert sorted(await receive(accepted, len(sent))) == sorted(sent)


async def test_aiortc_closing_its_channel_ends_dtls_peer_reads(mixed: Mixed) -> None:
    theirs = create_channel(mixed.sctp, "short")
    ours = await within(mixed.peer.accept_channel())
    await theirs.wait_open(STEP_TIMEOUT)
    await theirs.send(b"last words")
    await within(_drained(theirs))
    theirs.close()
    # What was sent before the close arrives first; then the channel is closed.
    assert await within(ours.recv()) == b"last words"
    with pytest.raises(ChannelClosed):
        await within(ours.recv())


async def test_dtls_peer_closing_its_channel_ends_aiortc_reads(mixed: Mixed) -> None:
    ours = await within(mixed.peer.create_channel("short"))
    theirs = await mixed.incoming.accept(STEP_TIMEOUT)
    await ours.send("bye")
    await within(ours.close())
    assert await within(theirs.recv()) == "bye"
    with pytest.raises(ConnectionError):
        await within(theirs.recv())
    assert theirs.channel.readyState == "closed"
    with pytest.raises(ChannelClosed):
        await ours.send(b"after close")


async def _drained(channel: QueuedChannel) -> None:
    """Until aiortc has handed everything queued on ``channel`` to SCTP (aiortc's close()
    resets the stream at once, dropping what is still in its own queue)."""
    for _ in range(int(STEP_TIMEOUT / 0.005)):
        if channel.channel.bufferedAmount == 0:
            return
        await asyncio.sleep(0.005)


async def test_a_late_init_from_aiortc_leaves_the_association_working(mixed: Mixed) -> None:
    # aiortc sends INIT from both sides (RFC 8841 section 9.3), so one can arrive after the
    # association is up (or be retransmitted). It is the same INIT aiortc sent at the start.
    init = InitChunk()
    init.initiate_tag = mixed.sctp._local_verification_tag
    init.advertised_rwnd = mixed.sctp._advertised_rwnd
    init.outbound_streams = mixed.sctp._outbound_streams_count
    init.inbound_streams = mixed.sctp._inbound_streams_max
    init.initial_tsn = mixed.sctp._local_tsn
    mixed.sctp._set_extensions(init.params)
    await mixed.sctp.transport._send_data(serialize_packet(5000, 5000, 0, init))
    try:
        ours = await within(mixed.peer.create_channel("after-init"))
        theirs = await mixed.incoming.accept(STEP_TIMEOUT)
        await ours.send(b"still here")
        await theirs.send("and here")
        got = (await within(theirs.recv()), await within(ours.recv()))
    except (DTLSError, asyncio.TimeoutError) as e:
        # One line: on this CPython (3.11.7) pytest's traceback formatting of this failure
        # has died in ast.parse ("AST constructor recursion depth mismatch") and stopped the
        # whole session.
        pytest.fail(
            f"the association did not survive a repeated INIT: {type(e).__name__}: {e}", pytrace=False
        )
    assert got == (b"still here", "and here")
