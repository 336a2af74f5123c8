"""Guards Identity creation, persistence and node-ID derivation (the values peers pin)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import stat
from pathlib import Path

import pytest
from conftest import ConnectionFactory, UdpPairFactory, address, handshake_all, recv_within
from dtls_peer import Identity, node_id_from_certificate

NODE_ID = re.compile(r"[0-9a-f]{64}")
FINGERPRINT = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){31}")


@pytest.fixture
def saved(tmp_path: Path, identity_a: Identity) -> tuple[Path, Path]:
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    identity_a.save(cert, key)
    return cert, key


def test_generate_gives_a_fresh_identity_with_consistent_properties() -> None:
    identity = Identity.generate()
    assert NODE_ID.fullmatch(identity.node_id)
    assert FINGERPRINT.fullmatch(identity.fingerprint)
    der = identity.certificate_der
    assert isinstance(der, bytes) and der[0] == 0x30
    pem = identity.certificate_pem
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert ssl.PEM_cert_to_DER_cert(pem) == der
    digest = hashlib.sha256(der).hexdigest().upper()
    assert identity.fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert node_id_from_certificate(der) == identity.node_id
    assert identity.node_id in repr(identity)
    other = Identity.generate()
    assert other.node_id != identity.node_id
    assert other != identity


def test_node_id_from_certificate_accepts_pem_and_der(identity_a: Identity) -> None:
    pem, der = identity_a.certificate_pem, identity_a.certificate_der
    for form in (pem, pem.encode(), der, bytearray(der), bytearray(pem.encode())):
        assert node_id_from_certificate(form) == identity_a.node_id


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        "",
        b"not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x03",
    ],
)
def test_node_id_from_certificate_refuses_garbage(garbage: str | bytes) -> None:
    with pytest.raises(ValueError):
        node_id_from_certificate(garbage)


def test_node_id_from_certificate_refuses_wrong_types() -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        node_id_from_certificate(1234)  # type: ignore[arg-type]


def test_save_and_load_round_trip(saved: tuple[Path, Path], identity_a: Identity) -> None:
    cert, key = saved
    loaded = Identity.load(cert, key)
    assert loaded == identity_a
    assert hash(loaded) == hash(identity_a)
    assert loaded.node_id == identity_a.node_id
    assert loaded.fingerprint == identity_a.fingerprint
    assert loaded.certificate_der == identity_a.certificate_der
    assert Identity.load(str(cert), str(key)) == identity_a
    assert len({loaded, identity_a}) == 1


def test_saved_files(saved: tuple[Path, Path], identity_a: Identity) -> None:
    cert, key = saved
    assert cert.is_file()
    assert ssl.PEM_cert_to_DER_cert(cert.read_text()) == identity_a.certificate_der
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY-----" in key.read_text()


def test_save_accepts_str_paths(tmp_path: Path, identity_a: Identity) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    identity_a.save(str(cert), str(key))
    assert Identity.load(cert, key) == identity_a
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", ["cert", "key", "both"])
def test_save_refuses_to_overwrite_unless_asked(
    tmp_path: Path, identity_a: Identity, identity_b: Identity, existing: str
) -> None:
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    if existing in ("cert", "both"):
        cert.write_text("keep me")
    if existing in ("key", "both"):
        key.write_text("keep me")
    with pytest.raises(FileExistsError):
        identity_a.save(cert, key)
    for path in (cert, key):
        assert not path.exists() or path.read_text() == "keep me"
    identity_b.save(cert, key, overwrite=True)
    assert Identity.load(cert, key) == identity_b
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_overwrite_replaces_a_saved_identity(
    saved: tuple[Path, Path], identity_a: Identity, identity_b: Identity
) -> None:
    cert, key = saved
    with pytest.raises(FileExistsError):
        identity_b.save(cert, key)
    assert Identity.load(cert, key) == identity_a
    identity_b.save(cert, key, overwrite=True)
    assert Identity.load(cert, key) == identity_b


def test_from_pem_accepts_str_and_bytes(saved: tuple[Path, Path], identity_a: Identity) -> None:
    cert, key = saved
    cert_text, key_text = cert.read_text(), key.read_text()
    assert Identity.from_pem(cert_text, key_text) == identity_a
    assert Identity.from_pem(cert_text.encode(), key_text.encode()) == identity_a
    assert Identity.from_pem(bytearray(cert_text.encode()), key_text) == identity_a
    assert Identity.from_pem(identity_a.certificate_pem, key_text).node_id == identity_a.node_id


def test_from_pem_refuses_a_key_that_does_not_match(
    saved: tuple[Path, Path], tmp_path: Path, identity_b: Identity
) -> None:
    cert, _ = saved
    other_cert, other_key = tmp_path / "b.crt", tmp_path / "b.key"
    identity_b.save(other_cert, other_key)
    with pytest.raises(ValueError):
        Identity.from_pem(cert.read_text(), other_key.read_text())
    with pytest.raises(ValueError):
        Identity.load(cert, other_key)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_from_pem_refuses_garbage(saved: tuple[Path, Path], which: str) -> None:
    cert_text, key_text = (p.read_text() for p in saved)
    garbage = "-----BEGIN GARBAGE-----\nnot base64 !!\n-----END GARBAGE-----\n"
    with pytest.raises(ValueError):
        if which == "cert":
            Identity.from_pem(garbage, key_text)
        else:
            Identity.from_pem(cert_text, garbage)
    with pytest.raises(ValueError):
        if which == "cert":
            Identity.from_pem(b"", key_text)
        else:
            Identity.from_pem(cert_text, b"")


def test_from_pem_refuses_wrong_types(saved: tuple[Path, Path]) -> None:
    cert_text, key_text = (p.read_text() for p in saved)
    with pytest.raises(TypeError, match="cert_pem"):
        Identity.from_pem(42, key_text)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_pem"):
        Identity.from_pem(cert_text, 42)  # type: ignore[arg-type]


def test_load_of_missing_files_raises_os_error(saved: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = saved
    missing = tmp_path / "missing.pem"
    with pytest.raises(OSError):
        Identity.load(missing, key)
    with pytest.raises(OSError):
        Identity.load(cert, missing)


def test_load_of_garbage_files_raises_value_error(saved: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = saved
    junk = tmp_path / "junk.pem"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(ValueError):
        Identity.load(junk, key)
    with pytest.raises(ValueError):
        Identity.load(cert, junk)


async def test_a_loaded_identity_keeps_its_pinned_node_id(
    saved: tuple[Path, Path],
    identity_a: Identity,
    identity_b: Identity,
    udp_pair: UdpPairFactory,
    connection: ConnectionFactory,
    family: socket.AddressFamily,
) -> None:
    """A node restarted from its saved files is accepted by a peer that pinned it before."""
    loaded = Identity.load(*saved)
    sa, sb = udp_pair(family)
    a = connection(sa, address(sb), loaded, expected_node_id=identity_b.node_id)
    b = connection(sb, address(sa), identity_b, expected_node_id=identity_a.node_id)
    await handshake_all(a, b)
    assert b.peer_node_id == identity_a.node_id
    await a.send(b"it is me again")
    assert await recv_within(b) == b"it is me again"
