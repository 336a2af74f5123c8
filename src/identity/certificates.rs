//! The certificates an identity makes: the node certificate (self-signed by the node key) and
//! the DTLS certificate (an ephemeral P-256 key endorsed by the node key through libp2p's
//! extension).

use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::sign::Signer;
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509};

use crate::trust::libp2p::{self, SignedKey};
use crate::trust::{KeyType, PublicNodeKey};

/// Self-signed X.509 v3 certificate of `key` (any node key type; SHA-256 digests, Ed25519
/// signs without one), valid from one hour ago (tolerates clock skew between peers) for ten
/// years, subject CN `common_name`, carrying `extension` if given.
pub fn self_signed(
    key: &PKeyRef<Private>,
    common_name: &str,
    extension: Option<&X509Extension>,
) -> Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &bounded_common_name(common_name))?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    // MSB forced to one: always exactly 128 bits, never zero.
    serial.rand(128, MsbOption::ONE, false)?;
    let serial = serial.to_asn1_integer()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Only an absurd clock overflows time_t; the epoch is then a harmless lower bound.
    let not_before = Asn1Time::from_unix(now.saturating_sub(3600).try_into().unwrap_or(0))?;
    let not_after = Asn1Time::days_from_now(3650)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    if let Some(extension) = extension {
        b.append_extension2(extension)?;
    }
    // Ed25519 hashes by itself and takes no digest; every other key signs SHA-256.
    let digest = match key.id() {
        Id::ED25519 => MessageDigest::null(),
        _ => MessageDigest::sha256(),
    };
    b.sign(key, digest)?;
    Ok(b.build())
}

/// The CN a certificate can carry for `node_id`. X.509 bounds a CN to 1..=64 characters
/// (RFC 5280 ub-common-name), and OpenSSL refuses anything else; an application's scheme may
/// make longer IDs. The CN is only a label (trust comes from the key, never from the CN), so
/// a long ID is cut, and an empty one gets a fixed label.
fn bounded_common_name(node_id: &str) -> String {
    match node_id.chars().count() {
        0 => "dtls_peer node".to_owned(),
        1..=64 => node_id.to_owned(),
        _ => node_id.chars().take(61).chain("...".chars()).collect(),
    }
}

/// A fresh P-256 key and its self-signed certificate, whose libp2p extension carries
/// `node_key` (the public half of `signer`) and `signer`'s signature over
/// "libp2p-tls-handshake:" ‖ the new key's DER SPKI.
pub(crate) fn endorsed_ephemeral(
    signer: &PKeyRef<Private>,
    node_key: &PublicNodeKey,
    common_name: &str,
) -> Result<(X509, PKey<Private>), String> {
    let openssl = |e: ErrorStack| e.to_string();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(openssl)?;
    let key = PKey::from_ec_key(EcKey::generate(&group).map_err(openssl)?).map_err(openssl)?;
    let spki = key.public_key_to_der().map_err(openssl)?;
    let signed = SignedKey {
        public_key: libp2p::encode_public_key(node_key)?,
        signature: sign(signer, node_key.key_type(), &libp2p::signed_message(&spki)).map_err(openssl)?,
    };
    let extension = libp2p_extension(&signed.to_der()?).map_err(openssl)?;
    let cert = self_signed(&key, common_name, Some(&extension)).map_err(openssl)?;
    Ok((cert, key))
}

/// The libp2p key extension holding `value` (a DER `SignedKey`), not critical: a standard
/// DTLS peer that pins the certificate ignores it (libp2p allows either).
pub fn libp2p_extension(value: &[u8]) -> Result<X509Extension, ErrorStack> {
    let value = Asn1OctetString::new_from_bytes(value)?;
    let oid = Asn1Object::from_str(libp2p::EXTENSION_OID)?;
    X509Extension::new_from_der(&oid, false, &value)
}

/// `key`'s signature over `message` as libp2p defines it for `key_type`: ECDSA and RSA
/// (PKCS#1 v1.5) over SHA-256, Ed25519 over the message itself.
pub(crate) fn sign(key: &PKeyRef<Private>, key_type: KeyType, message: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let mut signer = match key_type.digest() {
        Some(digest) => Signer::new(digest, key)?,
        None => Signer::new_without_digest(key)?,
    };
    signer.sign_oneshot_to_vec(message)
}
