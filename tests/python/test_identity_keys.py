"""Guards node keys of every supported type (P-256, Ed25519, RSA, secp256k1) and the node-ID
schemes (sha256, libp2p, an application's callable): generation, saving, loading in every PEM
form, the DTLS certificate each identity presents, published libp2p vectors, and the keys
refused at load time.

Node IDs are checked against ``node_ids.py``, which computes them with ``cryptography``
independently of the library."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from app_certs import LIBP2P_OID, pkcs8_pem, self_signed_pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from dtls_peer import Identity, node_id_from_certificate
from libp2p_vectors import TLS_SPEC_INVALID, TLS_SPEC_VECTORS
from node_ids import Scheme, dpc_node_id, expected_node_id, libp2p_public_key

KEY_TYPES = ["p256", "ed25519", "rsa", "secp256k1"]
# RSA key generation costs up to a second on a loaded machine: tests that generate a key per
# case use these, and the module's saved RSA key (generated once) covers RSA.
FAST_KEY_TYPES = ["p256", "ed25519", "secp256k1"]
SCHEMES: list[Scheme] = ["sha256", "libp2p", dpc_node_id]
SCHEME_IDS = ["sha256", "libp2p", "callable"]
PKCS8 = "-----BEGIN PRIVATE KEY-----"


@dataclass(frozen=True)
class KeyFiles:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyFiles]:
    """One generated and saved identity per key type (RSA key generation is slow: once per module)."""
    directory = tmp_path_factory.mktemp("keys")
    files = {}
    for key_type in KEY_TYPES:
        found = KeyFiles(directory / f"{key_type}.crt", directory / f"{key_type}.key")
        Identity.generate(key_type).save(found.cert, found.key)  # type: ignore[arg-type]
        files[key_type] = found
    return files


def private_key(files: KeyFiles) -> object:
    return serialization.load_pem_private_key(files.key.read_bytes(), password=None)


def spki(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def expected_key_class(key_type: str) -> type:
    return {
        "p256": ec.EllipticCurvePrivateKey,
        "secp256k1": ec.EllipticCurvePrivateKey,
        "ed25519": ed25519.Ed25519PrivateKey,
        "rsa": rsa.RSAPrivateKey,
    }[key_type]


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# -- generate, save, load ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generate_save_load_keeps_the_node_id(
    saved: dict[str, KeyFiles], tmp_path: Path, key_type: str, scheme: Scheme
) -> None:
    files = saved[key_type]
    loaded = Identity.load(files.cert, files.key, node_id_scheme=scheme)
    assert loaded.key_type == key_type
    assert loaded.node_id_scheme == scheme
    # The node ID is the scheme applied to the node key, as an application computes it.
    key = private_key(files)
    assert isinstance(key, expected_key_class(key_type))
    assert loaded.public_key_der == spki(key)
    assert loaded.node_id == expected_node_id(spki(key), scheme)
    # The same key file alone (no certificate) is the same node.
    key_only = Identity.load(None, files.key, node_id_scheme=scheme)
    assert (key_only.node_id, key_only.public_key_der, key_only.key_type) == (
        loaded.node_id,
        loaded.public_key_der,
        key_type,
    )
    # Saved again (from either), it loads again as the same node; the key file is 0600 PKCS#8.
    again = KeyFiles(tmp_path / "again.crt", tmp_path / "again.key")
    key_only.save(again.cert, again.key)
    assert stat.S_IMODE(again.key.stat().st_mode) == 0o600
    assert again.key.read_text().startswith(PKCS8)
    reloaded = Identity.load(again.cert, again.key, node_id_scheme=scheme)
    assert reloaded.node_id == loaded.node_id
    assert reloaded.public_key_der == loaded.public_key_der


@pytest.mark.parametrize("scheme", SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize("key_type", FAST_KEY_TYPES)
def test_generate_with_a_scheme_and_reload(tmp_path: Path, key_type: str, scheme: Scheme) -> None:
    identity = Identity.generate(key_type, node_id_scheme=scheme)  # type: ignore[arg-type]
    assert identity.key_type == key_type
    assert identity.node_id == expected_node_id(identity.public_key_der, scheme)
    cert, key = tmp_path / "n.crt", tmp_path / "n.key"
    identity.save(cert, key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Identity.load(cert, key, node_id_scheme=scheme).node_id == identity.node_id
    assert Identity.load(None, key, node_id_scheme=scheme).node_id == identity.node_id


def test_generate_defaults_to_p256_and_sha256() -> None:
    identity = Identity.generate()
    assert (identity.key_type, identity.node_id_scheme) == ("p256", "sha256")
    assert identity.node_id == hashlib.sha256(identity.public_key_der).hexdigest()


def test_each_generated_key_is_new() -> None:
    first, second = Identity.generate("ed25519"), Identity.generate("ed25519")
    assert first.node_id != second.node_id
    assert first.public_key_der != second.public_key_der


# -- the certificates an identity holds -------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_node_and_dtls_certificates(saved: dict[str, KeyFiles], key_type: str, scheme: Scheme) -> None:
    identity = Identity.load(saved[key_type].cert, saved[key_type].key, node_id_scheme=scheme)
    node_cert = x509.load_der_x509_certificate(identity.certificate_der)
    assert node_cert.public_bytes(serialization.Encoding.PEM).decode() == identity.certificate_pem
    assert spki(node_cert) == identity.public_key_der
    dtls_cert = x509.load_der_x509_certificate(identity.dtls_certificate_der)
    assert dtls_cert.public_bytes(serialization.Encoding.PEM).decode() == identity.dtls_certificate_pem
    # What DTLS presents is always a P-256 certificate (the ECDHE-ECDSA suites need one).
    dtls_key = dtls_cert.public_key()
    assert isinstance(dtls_key, ec.EllipticCurvePublicKey) and isinstance(dtls_key.curve, ec.SECP256R1)
    digest = hashlib.sha256(identity.dtls_certificate_der).hexdigest().upper()
    assert identity.fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    if key_type == "p256" and scheme != "libp2p":
        # Today's identities: the node certificate is the DTLS certificate, no extension.
        assert identity.dtls_certificate_der == identity.certificate_der
        assert LIBP2P_OID not in [e.oid for e in dtls_cert.extensions]
    else:
        # An ephemeral P-256 certificate whose libp2p extension carries the node key.
        assert identity.dtls_certificate_der != identity.certificate_der
        assert spki(dtls_cert) != identity.public_key_der
        extension = dtls_cert.extensions.get_extension_for_oid(LIBP2P_OID)
        assert isinstance(extension.value, x509.UnrecognizedExtension)
        assert libp2p_public_key(identity.public_key_der) in extension.value.value
    # Made once per identity, not per access (or per connection).
    assert identity.dtls_certificate_der == identity.dtls_certificate_der
    # Any certificate of the identity names its node, whatever carries the node key.
    for der in (identity.certificate_der, identity.dtls_certificate_der):
        assert node_id_from_certificate(der, node_id_scheme=scheme) == identity.node_id
        assert node_id_from_certificate(x509_pem(der), node_id_scheme=scheme) == identity.node_id


def x509_pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_a_generated_node_certificate_is_self_signed_with_the_node_id_as_cn(
    saved: dict[str, KeyFiles], key_type: str
) -> None:
    # Generated under the default scheme (the module's saved keys), and under libp2p.
    identities = [Identity.load(saved[key_type].cert, saved[key_type].key)]
    if key_type in FAST_KEY_TYPES:
        identities.append(Identity.generate(key_type, node_id_scheme="libp2p"))  # type: ignore[arg-type]
    for identity in identities:
        cert = x509.load_der_x509_certificate(identity.certificate_der)
        assert common_name(cert) == identity.node_id
        assert cert.issuer == cert.subject
        cert.verify_directly_issued_by(cert)


# -- PEM forms -----------------------------------------------------------------------------


def traditional(key: object) -> str:
    pem: bytes = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode()


@pytest.mark.parametrize(
    ("key_type", "header"),
    [
        ("p256", "-----BEGIN EC PRIVATE KEY-----"),  # SEC1
        ("secp256k1", "-----BEGIN EC PRIVATE KEY-----"),  # SEC1
        ("rsa", "-----BEGIN RSA PRIVATE KEY-----"),  # PKCS#1
    ],
)
def test_from_pem_reads_sec1_and_pkcs1_keys(saved: dict[str, KeyFiles], key_type: str, header: str) -> None:
    files = saved[key_type]
    reference = Identity.load(files.cert, files.key)
    key_pem = traditional(private_key(files))
    assert key_pem.startswith(header)
    for cert_pem in (files.cert.read_text(), files.cert.read_bytes(), None):
        for key_form in (key_pem, key_pem.encode(), bytearray(key_pem.encode())):
            identity = Identity.from_pem(cert_pem, key_form)
            assert identity.node_id == reference.node_id
            assert identity.public_key_der == reference.public_key_der


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_from_pem_reads_pkcs8_keys(saved: dict[str, KeyFiles], key_type: str) -> None:
    files = saved[key_type]
    key_pem = files.key.read_text()
    assert key_pem.startswith(PKCS8)
    with_cert = Identity.from_pem(files.cert.read_text(), key_pem, node_id_scheme="libp2p")
    without = Identity.from_pem(None, key_pem.encode(), node_id_scheme="libp2p")
    assert with_cert.node_id == without.node_id == expected_node_id(with_cert.public_key_der, "libp2p")


@pytest.mark.parametrize(
    ("cert_of", "key_of"), [("p256", "ed25519"), ("ed25519", "rsa"), ("rsa", "secp256k1")]
)
def test_a_certificate_must_match_its_key(saved: dict[str, KeyFiles], cert_of: str, key_of: str) -> None:
    with pytest.raises(ValueError):
        Identity.load(saved[cert_of].cert, saved[key_of].key)
    with pytest.raises(ValueError):
        Identity.from_pem(saved[cert_of].cert.read_text(), saved[key_of].key.read_text())


# -- published libp2p vectors ----------------------------------------------------------------

# libp2p/specs peer-ids/peer-ids.md, "Test vectors": an Ed25519 private key (seed, then public
# key), protobuf-encoded. Its peer ID is asserted by go-libp2p's TestWalkthroughInSpec
# (p2p/http/auth/internal/handshake/handshake_test.go), for the walkthrough in libp2p/specs
# http/peer-id-auth.md; so is the peer ID of the all-zero seed.
SPEC_ED25519_PRIVATE = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SPEC_ED25519_PUBLIC = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
ED25519_PEER_IDS = {
    SPEC_ED25519_PRIVATE[4:36]: "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
    bytes(32): "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
}


@pytest.mark.parametrize("seed", list(ED25519_PEER_IDS), ids=["peer-ids-spec-key", "zero-key"])
def test_libp2p_peer_id_of_a_published_ed25519_key(seed: bytes) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    identity = Identity.from_pem(None, pem, node_id_scheme="libp2p")
    assert identity.key_type == "ed25519"
    assert identity.node_id == ED25519_PEER_IDS[seed]
    if seed == SPEC_ED25519_PRIVATE[4:36]:
        assert libp2p_public_key(identity.public_key_der) == SPEC_ED25519_PUBLIC
    # The peer ID is carried by the DTLS certificate's extension.
    assert (
        node_id_from_certificate(identity.dtls_certificate_der, node_id_scheme="libp2p") == identity.node_id
    )


@pytest.mark.parametrize("vector", list(TLS_SPEC_VECTORS))
def test_node_id_from_certificate_gives_the_libp2p_spec_peer_ids(vector: str) -> None:
    cert_hex, peer_id = TLS_SPEC_VECTORS[vector]
    der = bytes.fromhex(cert_hex)
    assert node_id_from_certificate(der, node_id_scheme="libp2p") == peer_id
    # Under another scheme the same node key (the extension's, not the certificate's) is named.
    cert = x509.load_der_x509_certificate(der)
    extension = cert.extensions.get_extension_for_oid(LIBP2P_OID).value
    assert isinstance(extension, x509.UnrecognizedExtension)
    sha256_id = node_id_from_certificate(der, node_id_scheme="sha256")
    assert sha256_id != hashlib.sha256(spki(cert)).hexdigest()


def test_node_id_from_certificate_refuses_the_libp2p_spec_invalid_vector() -> None:
    for scheme in ("libp2p", "sha256"):
        with pytest.raises(ValueError):
            node_id_from_certificate(bytes.fromhex(TLS_SPEC_INVALID), node_id_scheme=scheme)


# -- refused keys and arguments --------------------------------------------------------------


REFUSED_KEYS: dict[str, Callable[[], object]] = {
    "rsa-1024": lambda: rsa.generate_private_key(65537, 1024),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed448": lambda: ed448.Ed448PrivateKey.generate(),
    "dsa": lambda: dsa.generate_private_key(2048),
}


@pytest.fixture(scope="module")
def refused_keys() -> Iterator[dict[str, object]]:
    yield {name: make() for name, make in REFUSED_KEYS.items()}


@pytest.mark.parametrize("name", list(REFUSED_KEYS))
def test_unsupported_keys_are_refused_at_load_time_naming_what_is_supported(
    refused_keys: dict[str, object], tmp_path: Path, name: str
) -> None:
    key = refused_keys[name]
    key_file, cert_file = tmp_path / "node.key", tmp_path / "node.crt"
    key_file.write_text(pkcs8_pem(key))
    cert_file.write_text(self_signed_pem(key, "refused"))
    attempts: list[Callable[[], Identity]] = [
        lambda: Identity.from_pem(None, pkcs8_pem(key)),
        lambda: Identity.from_pem(cert_file.read_text(), pkcs8_pem(key)),
        lambda: Identity.load(None, key_file),
        lambda: Identity.load(cert_file, key_file, node_id_scheme="libp2p"),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError) as caught:
            attempt()
        message = str(caught.value).lower()
        # The message names what would work: RSA's key sizes, or the key types.
        supported = ["2048"] if name == "rsa-1024" else ["ed25519", "rsa", "secp256k1"]
        for word in supported:
            assert word in message, message


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: Identity.generate("dsa"), ValueError, "ed25519"),  # type: ignore[arg-type]
        (lambda: Identity.generate("P256"), ValueError, "p256"),  # type: ignore[arg-type]
        (lambda: Identity.generate(node_id_scheme="md5"), ValueError, "libp2p"),  # type: ignore[arg-type]
        (lambda: Identity.generate(node_id_scheme=42), TypeError, "node_id_scheme"),  # type: ignore[arg-type]
        (
            lambda: node_id_from_certificate(Identity.generate().certificate_der, node_id_scheme="md5"),  # type: ignore[arg-type]
            ValueError,
            "libp2p",
        ),
    ],
    ids=["unknown-key-type", "key-type-case", "unknown-scheme", "scheme-not-callable", "id-unknown-scheme"],
)
def test_unknown_key_types_and_schemes(
    call: Callable[[], object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value).lower()


def test_a_callable_scheme_is_applied_to_the_node_key(saved: dict[str, KeyFiles]) -> None:
    seen: list[bytes] = []

    def scheme(spki_der: bytes) -> str:
        seen.append(spki_der)
        return "node:" + hashlib.blake2b(spki_der, digest_size=8).hexdigest()

    identity = Identity.load(None, saved["ed25519"].key, node_id_scheme=scheme)
    assert identity.node_id_scheme is scheme
    # Called once, for the own key, when the identity is made; the ID is kept, not recomputed.
    assert seen == [identity.public_key_der]
    assert identity.node_id == identity.node_id == scheme(identity.public_key_der)
    assert len(seen) == 2


def test_a_callable_scheme_that_fails_on_the_own_key_fails_the_load(saved: dict[str, KeyFiles]) -> None:
    def broken(spki_der: bytes) -> str:
        raise RuntimeError("no IDs today")

    with pytest.raises(ValueError, match="node_id_scheme raised RuntimeError: no IDs today"):
        Identity.load(None, saved["p256"].key, node_id_scheme=broken)
    with pytest.raises(ValueError, match="node_id_scheme returned bytes, not str"):
        Identity.load(saved["p256"].cert, saved["p256"].key, node_id_scheme=bytes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="node_id_scheme returned an empty str"):
        Identity.load(None, saved["p256"].key, node_id_scheme=lambda der: "")


@pytest.mark.parametrize("key_type", ["p256", "ed25519"])
def test_a_callable_scheme_may_make_ids_longer_than_a_certificate_cn(
    saved: dict[str, KeyFiles], key_type: str
) -> None:
    # X.509 bounds a CN to 64 characters; an application's IDs need not fit. The CN is only a
    # label, so it is cut, and the identity keeps the whole ID.
    def long_id(spki_der: bytes) -> str:
        return "node:" + hashlib.sha512(spki_der).hexdigest()

    identity = Identity.load(None, saved[key_type].key, node_id_scheme=long_id)
    assert identity.node_id == long_id(identity.public_key_der)
    cn = common_name(x509.load_der_x509_certificate(identity.certificate_der))
    assert len(cn) == 64 and cn.endswith("...") and identity.node_id.startswith(cn[:-3]), cn
