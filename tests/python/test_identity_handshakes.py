"""Guards handshakes between node keys of every type under every node-ID scheme over loopback,
DPC Messenger's real identity files, and the refusals that keep a pin meaningful: a wrong node
key, a certificate whose CN copies the pinned ID, a forged or garbage libp2p extension, and a
callable scheme that raises or returns a non-str. A refused handshake fails on both sides and
delivers no application byte."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import itertools
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from app_certs import LIBP2P_OID, pkcs8_pem, self_signed_pem
from conftest import (
    ALLOWED_CIPHERS,
    STEP_TIMEOUT,
    ConnectionFactory,
    UdpPairFactory,
    address,
    handshake_all,
    recv_within,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from dtls_peer import (
    DTLSError,
    DTLSPeerConnection,
    HandshakeError,
    HandshakeTimeout,
    Identity,
    PeerVerificationError,
)
from node_ids import Scheme, dpc_node_id, expected_node_id, libp2p_public_key

KEY_TYPES = ["p256", "ed25519", "rsa", "secp256k1"]
SCHEMES: dict[str, Scheme] = {"sha256": "sha256", "libp2p": "libp2p", "callable": dpc_node_id}


@dataclass(frozen=True)
class NodeKey:
    cert_pem: str
    key_pem: str


@pytest.fixture(scope="module")
def node_keys() -> dict[tuple[str, int], NodeKey]:
    """Two node keys of each type, generated once for the module (RSA generation is slow)."""
    keys = {}
    for key_type, n in itertools.product(KEY_TYPES, (0, 1)):
        identity = Identity.generate(key_type)  # type: ignore[arg-type]
        keys[key_type, n] = NodeKey(identity.certificate_pem, pkcs8_of(identity))
    return keys


def pkcs8_of(identity: Identity) -> str:
    # An Identity does not hand out its private key; save() is how an application gets it.
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "n.crt"), Path(directory, "n.key")
        identity.save(cert, key)
        return key.read_text()


Node = Callable[[str, int, str], Identity]


@pytest.fixture(scope="module")
def node(node_keys: dict[tuple[str, int], NodeKey]) -> Node:
    """``node(key_type, n, scheme)``: an identity of one of the module's keys under a scheme."""
    made: dict[tuple[str, int, str], Identity] = {}

    def get(key_type: str, n: int, scheme: str) -> Identity:
        if (key_type, n, scheme) not in made:
            key = node_keys[key_type, n]
            made[key_type, n, scheme] = Identity.from_pem(
                key.cert_pem, key.key_pem, node_id_scheme=SCHEMES[scheme]
            )
        return made[key_type, n, scheme]

    return get


def pair_of(
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    a: Identity,
    b: Identity,
    *,
    pin_a: str | None = None,
    pin_b: str | None = None,
    auto: bool = False,
) -> tuple[DTLSPeerConnection, DTLSPeerConnection]:
    """Two connections over loopback (``a`` the client unless ``auto``); each pins the other's
    node ID unless told otherwise."""
    sock_a, sock_b = udp_pair(socket.AF_INET)
    role_a, role_b = ("auto", "auto") if auto else ("client", "server")
    conn_a = connection(sock_a, address(sock_b), a, expected_node_id=pin_a or b.node_id, role=role_a)
    conn_b = connection(sock_b, address(sock_a), b, expected_node_id=pin_b or a.node_id, role=role_b)
    return conn_a, conn_b


async def exchange(a: DTLSPeerConnection, b: DTLSPeerConnection) -> None:
    await a.send(b"from a")
    assert await recv_within(b) == b"from a"
    await b.send(b"from b")
    assert await recv_within(a) == b"from b"


def check_verified(conn: DTLSPeerConnection, peer: Identity) -> None:
    assert conn.is_established
    assert conn.cipher is not None and conn.cipher.startswith("ECDHE-ECDSA"), conn.cipher
    assert conn.cipher in ALLOWED_CIPHERS
    assert conn.peer_node_id == peer.node_id
    assert conn.peer_public_key == peer.public_key_der
    assert conn.peer_certificate == peer.dtls_certificate_der


# -- every pair of key types under every scheme ----------------------------------------------


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(
    ("type_a", "type_b"),
    list(itertools.combinations_with_replacement(KEY_TYPES, 2)),
    ids=[f"{a}-{b}" for a, b in itertools.combinations_with_replacement(KEY_TYPES, 2)],
)
async def test_handshake_between_key_types(
    node: Node,
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    type_a: str,
    type_b: str,
    scheme: str,
) -> None:
    a_id, b_id = node(type_a, 0, scheme), node(type_b, 1, scheme)
    assert a_id.node_id == expected_node_id(a_id.public_key_der, SCHEMES[scheme])
    # role="auto": both sides compare the two IDs of this scheme and agree on who is the client.
    a, b = pair_of(udp_pair, connection, a_id, b_id, auto=True)
    assert {a.role, b.role} == {"client", "server"}
    await handshake_all(a, b)
    check_verified(a, b_id)
    check_verified(b, a_id)
    await exchange(a, b)


async def test_auto_roles_compare_libp2p_ids_case_sensitively(
    udp_pair: UdpPairFactory, connection: ConnectionFactory
) -> None:
    """base58 is case-sensitive: folding case (right for hex IDs) would let both sides pick the
    same role for a pair whose order changes under folding."""
    for _ in range(500):
        a_id, b_id = (Identity.generate("ed25519", node_id_scheme="libp2p") for _ in range(2))
        if (a_id.node_id < b_id.node_id) != (a_id.node_id.lower() < b_id.node_id.lower()):
            break
    else:
        pytest.fail("no pair of peer IDs whose order depends on case in 500 tries")
    a, b = pair_of(udp_pair, connection, a_id, b_id, auto=True)
    assert a.role == ("client" if a_id.node_id < b_id.node_id else "server")
    assert {a.role, b.role} == {"client", "server"}
    await handshake_all(a, b)
    await exchange(a, b)


# -- DPC Messenger's identity files ----------------------------------------------------------


@dataclass(frozen=True)
class DpcNode:
    """What DPC's ``crypto.generate_identity()`` leaves in ``~/.dpc``."""

    cert: Path
    key: Path
    node_id: str  # the content of node.id, computed by the application itself


def make_dpc_node(home: Path, cn: str | None = None) -> DpcNode:
    """An identity made the way dpc-protocol/dpc_protocol/crypto.py makes it (RSA-2048, PKCS#8,
    self-signed, CN = node ID, BasicConstraints ca=True). ``cn`` forges the CN."""
    home.mkdir(parents=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    node_id = "dpc-node-" + hashlib.sha256(pem).hexdigest()[:32]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or node_id)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .serial_number(x509.random_serial_number())
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key=key, algorithm=hashes.SHA256())
    )
    node = DpcNode(home / "node.crt", home / "node.key", node_id)
    node.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    node.key.chmod(0o600)
    node.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (home / "node.id").write_text(node_id)
    return node


@pytest.fixture(scope="module")
def dpc_nodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[DpcNode, DpcNode]:
    base = tmp_path_factory.mktemp("dpc")
    return make_dpc_node(base / "alice" / ".dpc"), make_dpc_node(base / "bob" / ".dpc")


def test_dpc_identity_loads_with_its_own_node_id(dpc_nodes: tuple[DpcNode, DpcNode]) -> None:
    for dpc in dpc_nodes:
        me = Identity.load(dpc.cert, dpc.key, node_id_scheme=dpc_node_id)
        assert me.node_id == dpc.node_id == (dpc.cert.parent / "node.id").read_text()
        assert me.key_type == "rsa"
        assert me.node_id_scheme is dpc_node_id
        # The application's certificate stays its node certificate; DTLS presents an
        # ephemeral P-256 certificate that the RSA key endorses.
        node_cert = x509.load_pem_x509_certificate(dpc.cert.read_bytes())
        assert me.certificate_der == node_cert.public_bytes(serialization.Encoding.DER)
        dtls_cert = x509.load_der_x509_certificate(me.dtls_certificate_der)
        assert isinstance(dtls_cert.public_key(), ec.EllipticCurvePublicKey)
        assert dtls_cert.extensions.get_extension_for_oid(LIBP2P_OID) is not None


async def test_two_dpc_nodes_handshake_pinned_by_their_node_ids(
    dpc_nodes: tuple[DpcNode, DpcNode], udp_pair: UdpPairFactory, connection: ConnectionFactory
) -> None:
    alice_files, bob_files = dpc_nodes
    alice = Identity.load(alice_files.cert, alice_files.key, node_id_scheme=dpc_node_id)
    bob = Identity.load(bob_files.cert, bob_files.key, node_id_scheme=dpc_node_id)
    # Each side pins the ID it learned from the DHT / HELLO: the "dpc-node-..." string.
    a, b = pair_of(
        udp_pair, connection, alice, bob, pin_a=bob_files.node_id, pin_b=alice_files.node_id, auto=True
    )
    await handshake_all(a, b)
    check_verified(a, bob)
    check_verified(b, alice)
    assert a.peer_node_id == bob_files.node_id and b.peer_node_id == alice_files.node_id
    # The verified node key is the RSA key of the peer's node.crt.
    bob_key = x509.load_pem_x509_certificate(bob_files.cert.read_bytes()).public_key()
    assert a.peer_public_key == bob_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    await exchange(a, b)


# -- refusals --------------------------------------------------------------------------------


async def refused(
    refusing: DTLSPeerConnection, other: DTLSPeerConnection
) -> tuple[PeerVerificationError, HandshakeError]:
    """Runs a handshake that ``refusing`` must refuse; checks both sides failed promptly and
    that no application byte crossed. Returns both errors."""
    results = await asyncio.wait_for(
        asyncio.gather(refusing.handshake(), other.handshake(), return_exceptions=True), STEP_TIMEOUT
    )
    refusal, failure = results
    assert isinstance(refusal, PeerVerificationError), repr(refusal)
    assert isinstance(failure, HandshakeError), repr(failure)
    assert not isinstance(failure, HandshakeTimeout), repr(failure)
    for conn in (refusing, other):
        assert not conn.is_established
        assert conn.peer_node_id is None
        assert conn.peer_public_key is None
        assert conn.stats()["messages_in"] == 0
        with pytest.raises(DTLSError):
            await conn.send(b"must not be sent")
    return refusal, failure


@pytest.mark.parametrize("refusing_role", ["client", "server"])
@pytest.mark.parametrize(
    ("key_type", "scheme"), [("ed25519", "libp2p"), ("rsa", "callable"), ("secp256k1", "sha256")]
)
async def test_a_wrong_node_key_is_refused(
    node: Node,
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    key_type: str,
    scheme: str,
    refusing_role: str,
) -> None:
    """The pinning side expects node 1 of the type; node 0 of the same type answers."""
    me, impostor, expected = node("p256", 0, scheme), node(key_type, 0, scheme), node(key_type, 1, scheme)
    other_role = "server" if refusing_role == "client" else "client"
    sock_a, sock_b = udp_pair(socket.AF_INET)
    a = connection(sock_a, address(sock_b), me, expected_node_id=expected.node_id, role=refusing_role)
    b = connection(sock_b, address(sock_a), impostor, expected_node_id=me.node_id, role=other_role)
    refusal, failure = await refused(a, b)
    assert (refusal.expected_node_id, refusal.actual_node_id) == (expected.node_id, impostor.node_id)
    assert not isinstance(failure, PeerVerificationError)


async def test_a_dpc_certificate_whose_cn_copies_the_pinned_id_is_refused(
    dpc_nodes: tuple[DpcNode, DpcNode],
    tmp_path: Path,
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
) -> None:
    """What DPC's own DTLS attempt checked (the CN) is what anyone can copy; the key decides."""
    alice_files, bob_files = dpc_nodes
    mallory_files = make_dpc_node(tmp_path / "mallory" / ".dpc", cn=bob_files.node_id)
    assert x509.load_pem_x509_certificate(mallory_files.cert.read_bytes()).subject.rfc4514_string() == (
        f"CN={bob_files.node_id}"
    )
    alice = Identity.load(alice_files.cert, alice_files.key, node_id_scheme=dpc_node_id)
    mallory = Identity.load(mallory_files.cert, mallory_files.key, node_id_scheme=dpc_node_id)
    # Mallory's node ID is that of her key, whatever her certificate's CN says.
    assert mallory.node_id == mallory_files.node_id != bob_files.node_id
    a, m = pair_of(udp_pair, connection, alice, mallory, pin_a=bob_files.node_id)
    refusal, _ = await refused(a, m)
    assert (refusal.expected_node_id, refusal.actual_node_id) == (bob_files.node_id, mallory.node_id)


async def test_a_p256_certificate_whose_cn_copies_the_pinned_id_is_refused(
    node: Node, udp_pair: UdpPairFactory, connection: ConnectionFactory
) -> None:
    """A P-256 identity under "sha256" presents its node certificate itself: the forged CN is on
    the wire, and the pin is still checked against the key."""
    me, victim = node("p256", 0, "sha256"), node("p256", 1, "sha256")
    key = ec.generate_private_key(ec.SECP256R1())
    mallory = Identity.from_pem(self_signed_pem(key, victim.node_id), pkcs8_pem(key))
    assert mallory.node_id != victim.node_id
    assert mallory.dtls_certificate_der == mallory.certificate_der
    a, m = pair_of(udp_pair, connection, me, mallory, pin_a=victim.node_id)
    refusal, _ = await refused(a, m)
    assert (refusal.expected_node_id, refusal.actual_node_id) == (victim.node_id, mallory.node_id)


# -- callable schemes that misbehave -------------------------------------------------------------


def scheme_for(own_der: bytes, own_id: str, on_peer: Callable[[bytes], Any]) -> Callable[[bytes], str]:
    """A callable scheme that names the own key and does ``on_peer`` for any other key."""

    def scheme(spki_der: bytes) -> str:
        if spki_der == own_der:
            return own_id
        result: str = on_peer(spki_der)
        return result

    return scheme


def _raise(spki_der: bytes) -> str:
    raise LookupError("this key is not in the contact list")


@pytest.mark.parametrize("refusing_role", ["client", "server"])
@pytest.mark.parametrize(
    ("on_peer", "words"),
    [
        (_raise, "node_id_scheme raised"),
        (lambda der: len(der), "returned int, not str"),
        (lambda der: None, "NoneType"),
    ],
    ids=["raises", "returns-int", "returns-none"],
)
async def test_a_misbehaving_callable_scheme_fails_the_handshake(
    node: Node,
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    identity_a: Identity,
    identity_b: Identity,
    on_peer: Callable[[bytes], Any],
    words: str,
    refusing_role: str,
) -> None:
    key = node_key_pem(node, "ed25519")
    plain = Identity.from_pem(None, key)
    me = Identity.from_pem(None, key, node_id_scheme=scheme_for(plain.public_key_der, "me", on_peer))
    assert me.node_id == "me"
    peer = node("p256", 1, "sha256")
    other_role = "server" if refusing_role == "client" else "client"
    sock_a, sock_b = udp_pair(socket.AF_INET)
    a = connection(sock_a, address(sock_b), me, expected_node_id="my friend", role=refusing_role)
    b = connection(sock_b, address(sock_a), peer, expected_node_id=plain.node_id, role=other_role)
    refusal, _ = await refused(a, b)
    assert words in str(refusal), str(refusal)
    # The library is not stuck: the next handshake on the same runtime completes.
    c, d = pair_of(udp_pair, connection, identity_a, identity_b)
    await handshake_all(c, d)
    await exchange(c, d)


def node_key_pem(node: Node, key_type: str) -> str:
    """The PKCS#8 PEM of node 0 of a type (what an application keeps on disk)."""
    identity = node(key_type, 0, "sha256")
    return pkcs8_of(identity)


async def test_a_callable_scheme_may_name_peers_from_the_applications_own_table(
    node: Node, udp_pair: UdpPairFactory, connection: ConnectionFactory
) -> None:
    """The scheme sees the peer's node key (DER SPKI), so an application can map keys to names."""
    alice_key, bob_key = node("ed25519", 0, "sha256"), node("rsa", 1, "sha256")
    contacts = {alice_key.public_key_der: "alice", bob_key.public_key_der: "bob"}
    seen: list[bytes] = []

    def by_contacts(spki_der: bytes) -> str:
        seen.append(spki_der)
        return contacts[spki_der]

    alice = Identity.from_pem(None, node_key_pem(node, "ed25519"), node_id_scheme=by_contacts)
    bob = Identity.from_pem(None, pkcs8_of(bob_key), node_id_scheme=by_contacts)
    assert (alice.node_id, bob.node_id) == ("alice", "bob")
    seen.clear()
    a, b = pair_of(udp_pair, connection, alice, bob, auto=True)
    # "alice" < "bob": alice is the client on both sides' reckoning.
    assert (a.role, b.role) == ("client", "server")
    await handshake_all(a, b)
    assert (a.peer_node_id, b.peer_node_id) == ("bob", "alice")
    # Evaluated once per handshake and side: each side named only its peer.
    assert sorted(seen) == sorted([alice.public_key_der, bob.public_key_der])
    await exchange(a, b)


# -- forged libp2p extensions ----------------------------------------------------------------------


def der_octets(data: bytes) -> bytes:
    return b"\x04" + der_length(len(data)) + data


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def signed_key(public_key_protobuf: bytes, signature: bytes) -> bytes:
    """``SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }`` (tls.md)."""
    body = der_octets(public_key_protobuf) + der_octets(signature)
    return b"\x30" + der_length(len(body)) + body


@dataclass(frozen=True)
class Forged:
    identity: Identity  # presents the forged certificate as its DTLS certificate
    certificate_key_id: str  # sha256 node ID of the certificate's own (P-256) key


def forge(extension: Callable[[bytes], bytes]) -> Forged:
    """A P-256 identity under "sha256" whose certificate carries ``extension(cert_spki)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert_spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = self_signed_pem(key, "forged", extension(cert_spki))
    return Forged(Identity.from_pem(pem, pkcs8_pem(key)), hashlib.sha256(cert_spki).hexdigest())


def endorsed_by(signer: ed25519.Ed25519PrivateKey, claimed: bytes) -> Callable[[bytes], bytes]:
    """An extension claiming the node key ``claimed`` (DER SPKI), signed by ``signer``."""

    def make(cert_spki: bytes) -> bytes:
        signature = signer.sign(b"libp2p-tls-handshake:" + cert_spki)
        return signed_key(libp2p_public_key(claimed), signature)

    return make


async def test_an_extension_signed_by_another_key_is_refused(
    node: Node, udp_pair: UdpPairFactory, connection: ConnectionFactory
) -> None:
    """Mallory claims the victim's Ed25519 node key but can only sign with her own."""
    me, victim = node("p256", 0, "sha256"), node("ed25519", 1, "sha256")
    forged = forge(endorsed_by(ed25519.Ed25519PrivateKey.generate(), victim.public_key_der))
    a, m = pair_of(udp_pair, connection, me, forged.identity, pin_a=victim.node_id)
    refusal, _ = await refused(a, m)
    assert refusal.actual_node_id != victim.node_id
    assert "libp2p key extension" in str(refusal) and "signature does not verify" in str(refusal), refusal


@pytest.mark.parametrize(
    "extension",
    [
        lambda spki: b"\x30\x03\x04\x01",  # truncated DER
        lambda spki: b"garbage, not DER at all",
        lambda spki: signed_key(b"\x08\x07\x12\x01\x00", b"\x00" * 64),  # unknown key type 7
        lambda spki: signed_key(b"\x08\x01\x12\x05short", b"\x00" * 64),  # Ed25519 key of 5 bytes
    ],
    ids=["truncated", "not-der", "unknown-key-type", "short-ed25519-key"],
)
async def test_a_garbage_extension_is_refused_never_falling_back_to_the_certificate_key(
    node: Node, udp_pair: UdpPairFactory, connection: ConnectionFactory, extension: Callable[[bytes], bytes]
) -> None:
    """The pin is the certificate key's own ID, which would match without the extension: a
    present but invalid extension must still be refused."""
    me = node("p256", 0, "sha256")
    forged = forge(extension)
    a, m = pair_of(udp_pair, connection, me, forged.identity, pin_a=forged.certificate_key_id)
    refusal, _ = await refused(a, m)
    assert "invalid libp2p key extension" in str(refusal), refusal


async def test_a_slow_callable_scheme_never_deadlocks_with_the_loop_reading_connections(
    node: Node, udp_pair: UdpPairFactory, connection: ConnectionFactory
) -> None:
    # The scheme runs under a connection's lock on the thread that drives the handshake and
    # needs the GIL there; the loop thread reading that connection's state while holding the
    # GIL must therefore never wait for the lock (a deadlock until the test's timeout before
    # the bindings released the GIL first).
    calls = 0

    def slow(spki_der: bytes) -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.01)
        return "n-" + hashlib.sha256(spki_der).hexdigest()[:16]

    pairs = []
    for i in range(4):
        a = Identity.from_pem(None, node_key_pem(node, "ed25519"), node_id_scheme=slow)
        b = Identity.from_pem(None, node_key_pem(node, "rsa" if i % 2 else "p256"), node_id_scheme=slow)
        pairs.append(pair_of(udp_pair, connection, a, b))

    async def read_state() -> None:
        for _ in range(500):
            for conn in itertools.chain.from_iterable(pairs):
                _ = (conn.state, conn.stats(), conn.peer_node_id, conn.is_established)
            await asyncio.sleep(0)

    reader = asyncio.ensure_future(read_state())
    await handshake_all(*itertools.chain.from_iterable(pairs))
    for conn_a, conn_b in pairs:
        await exchange(conn_a, conn_b)
    await asyncio.wait_for(reader, STEP_TIMEOUT)
    # Made once per identity (8) and once per handshake side (8).
    assert calls >= 16, calls
