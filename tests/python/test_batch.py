"""Guards send_many()/recv_many(): order kept, nothing duplicated or lost, and bad input refused
before anything is sent."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import STEP_TIMEOUT, Pair, PairFactory, wait_until
from dtls_peer import ConnectionClosed, DTLSError, DTLSPeerConnection, MessageTooLarge


def numbered(start: int, count: int, size: int = 64) -> list[bytes]:
    return [b"%08d" % i + b"." * (size - 8) for i in range(start, start + count)]


async def drain(conn: DTLSPeerConnection, count: int, max_messages: int) -> list[bytes]:
    """Exactly ``count`` messages through recv_many(), checking each batch's size bound."""
    got: list[bytes] = []
    while len(got) < count:
        batch = await asyncio.wait_for(conn.recv_many(max_messages), STEP_TIMEOUT)
        assert 1 <= len(batch) <= max_messages
        got.extend(batch)
    return got


async def assert_nothing_more(conn: DTLSPeerConnection) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(conn.recv_many(), 0.05)


async def test_send_many_delivers_every_message_once_in_order(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    expected: list[bytes] = []
    # Rounds small enough that the receiver's kernel buffer never overflows (that would be
    # ordinary UDP loss, not the library's).
    for round_ in range(10):
        batch = numbered(round_ * 50, 50)
        await a.send_many(batch)
        expected += batch
        assert await drain(b, 50, 16) == batch
    await assert_nothing_more(b)
    assert a.stats()["messages_out"] == b.stats()["messages_in"] == len(expected) == 500


async def test_send_many_accepts_any_iterable_of_bytes_like(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    mixed: list[bytes | bytearray | memoryview] = [b"one", bytearray(b"two"), memoryview(b"three")]
    await a.send_many(iter(mixed))
    await a.send_many((b"four",))
    assert await drain(b, 4, 10) == [b"one", b"two", b"three", b"four"]


async def test_send_many_larger_than_the_outbox_keeps_order(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    # 300 small datagrams fit a receive buffer of this size (Linux's default maximum) even
    # if the receiver never ran, so nothing here can be ordinary UDP loss.
    connected_pair.sock_b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 212_992)
    sent = numbered(0, 300, size=16)
    await a.send_many(sent)
    assert a.stats()["messages_out"] == 300
    assert await drain(b, 300, 1000) == sent
    await assert_nothing_more(b)


async def test_recv_many_takes_at_most_max_messages_oldest_first(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    sent = numbered(0, 20)
    for message in sent:
        await a.send(message)
    await wait_until(lambda: b.stats()["messages_in"] == 20, "20 messages queued")
    assert await b.recv_many(7) == sent[:7]
    assert await b.recv() == sent[7]
    assert await b.recv_many(7) == sent[8:15]
    assert await b.recv_many(100) == sent[15:]
    await assert_nothing_more(b)


async def test_cancelled_recv_many_loses_nothing(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(b.recv_many(), 0.05)
    await a.send_many([b"first", b"second"])
    assert await drain(b, 2, 5) == [b"first", b"second"]


@pytest.mark.parametrize(
    ("messages", "error", "match"),
    [
        ([], ValueError, "at least one message"),
        (b"not a list", TypeError, "iterable of bytes-like"),
        ("text", TypeError, "iterable of bytes-like"),
        (42, TypeError, "iterable of bytes-like"),
        ([b"ok", "text"], TypeError, r"messages\[1\] must be bytes-like, not str"),
        ([b"ok", None], TypeError, r"messages\[1\] must be bytes-like, not NoneType"),
        ([b"ok", b""], ValueError, r"messages\[1\] is empty"),
    ],
)
async def test_send_many_refuses_bad_input_before_sending_anything(
    connected_pair: Pair, messages: Any, error: type[Exception], match: str
) -> None:
    a, b = connected_pair.a, connected_pair.b
    with pytest.raises(error, match=match):
        await a.send_many(messages)
    assert a.stats()["messages_out"] == 0
    await a.send(b"still usable")
    assert await drain(b, 1, 4) == [b"still usable"]


async def test_send_many_refuses_an_oversize_message_before_sending_anything(connected_pair: Pair) -> None:
    a = connected_pair.a
    largest = a.max_message_size
    with pytest.raises(MessageTooLarge, match=rf"messages\[2\] is {largest + 1} bytes"):
        await a.send_many([b"x", b"y" * largest, b"z" * (largest + 1)])
    assert a.stats()["messages_out"] == 0
    await a.send_many([b"y" * largest])
    assert a.stats()["messages_out"] == 1


@pytest.mark.parametrize(
    ("max_messages", "error"),
    [(0, ValueError), (-1, ValueError), ("3", TypeError), (True, TypeError), (2.0, TypeError)],
)
async def test_recv_many_refuses_a_bad_max(
    connected_pair: Pair, max_messages: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="max_messages"):
        await connected_pair.b.recv_many(max_messages)


async def test_batches_before_the_handshake_are_refused(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET)
    with pytest.raises(DTLSError, match="handshake"):
        await pair.a.send_many([b"too early"])
    with pytest.raises(DTLSError, match="handshake"):
        await pair.a.recv_many()


async def test_batches_after_close_raise_connection_closed(connected_pair: Pair) -> None:
    a = connected_pair.a
    await a.close()
    with pytest.raises(ConnectionClosed):
        await a.send_many([b"late"])
    with pytest.raises(ConnectionClosed):
        await a.recv_many()


async def test_recv_many_returns_what_came_before_the_peer_closed(connected_pair: Pair) -> None:
    a, b = connected_pair.a, connected_pair.b
    await a.send_many(numbered(0, 5))
    await a.close()
    await wait_until(lambda: not b.is_established, "the peer's close_notify")
    assert await b.recv_many(100) == numbered(0, 5)
    with pytest.raises(ConnectionClosed):
        await b.recv_many()
    with pytest.raises(ConnectionClosed):
        await b.send_many([b"to a closed peer"])


async def test_close_wakes_a_waiting_recv_many(connected_pair: Pair) -> None:
    b = connected_pair.b
    waiting = asyncio.ensure_future(b.recv_many())
    await asyncio.sleep(0)
    await b.close()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(waiting, STEP_TIMEOUT)
