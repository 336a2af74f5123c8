"""Guards the forms ``ciphers=`` accepts: OpenSSL's ``"A:B"`` string, or a list or tuple of suite
names (what a configuration file or a settings object usually holds), and what it refuses."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from conftest import (
    ALLOWED_CIPHERS,
    ConnectionFactory,
    PairFactory,
    UdpPairFactory,
    address,
    handshake_all,
    recv_within,
)
from dtls_peer import Identity

CHACHA = "ECDHE-ECDSA-CHACHA20-POLY1305"
AES256 = "ECDHE-ECDSA-AES256-GCM-SHA384"


@pytest.mark.parametrize("form", [list, tuple], ids=["list", "tuple"])
async def test_a_list_or_tuple_of_suite_names_chooses_the_suite(
    make_pair: PairFactory, form: type[Any]
) -> None:
    # The first suite of the client's list both sides accept is the one negotiated; giving the
    # server only the second proves that the list reached the engine in full, not just its head.
    pair = make_pair(
        socket.AF_INET,
        options_a={"ciphers": form([CHACHA, AES256]), "role": "client"},
        options_b={"ciphers": form([AES256]), "role": "server"},
    )
    await handshake_all(pair.a, pair.b)
    assert pair.a.cipher == pair.b.cipher == AES256
    await pair.a.send(b"over a list")
    assert await recv_within(pair.b) == b"over a list"


async def test_a_one_name_list_equals_the_string(make_pair: PairFactory) -> None:
    pair = make_pair(socket.AF_INET6, options_a={"ciphers": [CHACHA]}, options_b={"ciphers": CHACHA})
    await handshake_all(pair.a, pair.b)
    assert pair.a.cipher == pair.b.cipher == CHACHA
    assert CHACHA in ALLOWED_CIPHERS


@pytest.mark.parametrize(
    ("ciphers", "error", "words"),
    [
        ([], ValueError, "empty"),
        ((), ValueError, "empty"),
        ([CHACHA, 7], TypeError, "ciphers[1]"),
        ([CHACHA, b"ECDHE-ECDSA-AES256-GCM-SHA384"], TypeError, "ciphers[1]"),
        ([""], ValueError, "ciphers[0]"),
        ([f"{CHACHA}:{AES256}"], ValueError, "one suite name"),
        ({CHACHA}, TypeError, "list or tuple"),
        (iter([CHACHA]), TypeError, "list or tuple"),
        (b"ECDHE-ECDSA-AES128-GCM-SHA256", TypeError, "list or tuple"),
        # A list goes through the same policy check as the string: no RSA, no CBC, no "ALL".
        (["ECDHE-RSA-AES128-GCM-SHA256"], ValueError, "ciphers"),
        ([CHACHA, "ECDHE-ECDSA-AES128-SHA256"], ValueError, "ciphers"),
        (["ALL"], ValueError, "ciphers"),
    ],
    ids=[
        "empty-list",
        "empty-tuple",
        "int-item",
        "bytes-item",
        "empty-name",
        "joined-names",
        "set",
        "iterator",
        "bytes",
        "rsa-suite",
        "cbc-suite",
        "ALL",
    ],
)
def test_bad_cipher_lists_are_refused_with_a_clear_error(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    ciphers: object,
    error: type[Exception],
    words: str,
) -> None:
    sock, peer = udp_pair(socket.AF_INET)
    with pytest.raises(error) as caught:
        connection(sock, address(peer), identity_a, expected_node_id=identity_b.node_id, ciphers=ciphers)
    assert words in str(caught.value)
