//! The peer's leaf certificate: which key it carries and whether it is intact.

use openssl::asn1::Asn1Object;
use openssl::x509::X509;
use x509_parser::asn1_rs::{oid, Class, Oid, Tag};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::libp2p::{self, SignedKey};
use super::node_key::{KeyType, PublicNodeKey};
use super::CertificateProblem;

/// libp2p's key extension (the same OID as [`libp2p::EXTENSION_OID`]).
const LIBP2P_EXTENSION: Oid<'static> = oid!(1.3.6 .1 .4 .1 .53594 .1 .1);

/// The peer's node key, after a full check of its leaf certificate (DER): as
/// [`inspect_peer_key`], and the self-signature verifies.
pub fn inspect_peer_certificate(der: &[u8]) -> Result<PublicNodeKey, CertificateProblem> {
    let key = inspect_peer_key(der)?;
    check_self_signature(der)?;
    Ok(key)
}

/// The peer's node key from its leaf certificate (DER), without the self-signature check:
/// the certificate parses and carries a P-256 key, and the node key is the one its libp2p
/// extension endorses (whose signature is verified) or, with no extension, that P-256 key.
///
/// A present but invalid extension is never passed over for the certificate key: that is
/// [`CertificateProblem::InvalidExtension`], or [`CertificateProblem::BadSelfSignature`] when
/// the certificate was damaged after it was signed (the handshake is then tried again).
pub fn inspect_peer_key(der: &[u8]) -> Result<PublicNodeKey, CertificateProblem> {
    use CertificateProblem::{InvalidExtension, Malformed, WrongKeyType};
    // Trailing bytes are rejected: the handshake hands over exactly one certificate.
    let Ok(([], cert)) = X509Certificate::from_der(der) else {
        return Err(Malformed);
    };
    let spki = &cert.tbs_certificate.subject_pki;
    let alg = &spki.algorithm;
    // A key OpenSSL cannot even load (an unknown algorithm or curve) is damage, not a
    // different kind of key; the difference decides whether a handshake is tried again.
    let loadable = || X509::from_der(der).and_then(|c| c.public_key()).is_ok();
    if alg.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(if loadable() {
            WrongKeyType(oid_name(&alg.algorithm))
        } else {
            Malformed
        });
    }
    // Oid::try_from does not check the tag, so anything but a universal OID is refused first.
    let curve = (alg.parameters.as_ref())
        .filter(|p| p.header.class() == Class::Universal && p.tag() == Tag::Oid)
        .and_then(|p| Oid::try_from(p).ok());
    if curve.as_ref() != Some(&OID_EC_P256) {
        if !loadable() {
            return Err(Malformed);
        }
        let found = curve.map_or_else(|| "without a named curve".to_owned(), |c| oid_name(&c));
        return Err(WrongKeyType(format!("EC {found}")));
    }
    let mut endorsements = cert.extensions().iter().filter(|e| e.oid == LIBP2P_EXTENSION);
    let endorsed = match (endorsements.next(), endorsements.next()) {
        (None, _) => return Ok(PublicNodeKey::p256_from_checked_spki(spki.raw)),
        (Some(_), Some(_)) => Err("the certificate carries it twice".to_owned()),
        (Some(extension), None) => endorsed_key(extension.value, spki.raw),
    };
    endorsed.or_else(|why| {
        check_self_signature(der)?;
        Err(InvalidExtension(why))
    })
}

/// Why [`certificate_node_key`] found no node key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateKeyError {
    /// Not a certificate (says why).
    Malformed(String),
    /// The libp2p extension is present but invalid (says why).
    InvalidExtension(String),
    /// No extension, and the certificate's key is of no supported type: its raw DER SPKI,
    /// which the SHA-256 scheme can still name.
    UnsupportedKey {
        /// The certificate's SubjectPublicKeyInfo as it appears in it.
        spki: Vec<u8>,
        /// What the key is.
        why: String,
    },
}

impl std::fmt::Display for CertificateKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "certificate DER: {why}"),
            Self::InvalidExtension(why) => write!(f, "invalid libp2p key extension: {why}"),
            Self::UnsupportedKey { why, .. } => f.write_str(why),
        }
    }
}

/// The node key of any certificate (DER) a node may show: the one its libp2p extension
/// endorses (an invalid extension is an error, never passed over), else the certificate's own
/// key, of any supported type. The self-signature is not checked.
pub fn certificate_node_key(der: &[u8]) -> Result<PublicNodeKey, CertificateKeyError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertificateKeyError::Malformed(e.to_string()))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let mut endorsements = cert.extensions().iter().filter(|e| e.oid == LIBP2P_EXTENSION);
    match (endorsements.next(), endorsements.next()) {
        (None, _) => {
            let key = PublicNodeKey::from_spki_der(spki).map_err(|why| CertificateKeyError::UnsupportedKey {
                spki: spki.to_vec(),
                why,
            })?;
            // Only a P-256 key is presented in DTLS as it is; any other node key is named as
            // it arrives in an extension, canonically encoded.
            match key.key_type() {
                KeyType::P256 => Ok(key),
                _ => key.canonical().map_err(CertificateKeyError::Malformed),
            }
        }
        (Some(_), Some(_)) => Err(CertificateKeyError::InvalidExtension(
            "the certificate carries it twice".to_owned(),
        )),
        (Some(extension), None) => endorsed_key(extension.value, spki).map_err(CertificateKeyError::InvalidExtension),
    }
}

/// The node key a libp2p `SignedKey` extension value carries, once its signature over the
/// certificate's key verifies.
fn endorsed_key(value: &[u8], certificate_spki: &[u8]) -> Result<PublicNodeKey, String> {
    let signed = SignedKey::from_der(value)?;
    let key = libp2p::decode_public_key(&signed.public_key)?;
    if !key.verify(&libp2p::signed_message(certificate_spki), &signed.signature) {
        return Err(format!(
            "its signature does not verify with the {} key it carries",
            key.key_type()
        ));
    }
    Ok(key)
}

/// The certificate's signature verifies with its own key.
pub(super) fn check_self_signature(der: &[u8]) -> Result<(), CertificateProblem> {
    let x509 = X509::from_der(der).map_err(|_| CertificateProblem::Malformed)?;
    let key = x509.public_key().map_err(|_| CertificateProblem::Malformed)?;
    // An OpenSSL error here means the signature could not even be decoded: still a bad one.
    match x509.verify(&key) {
        Ok(true) => Ok(()),
        _ => Err(CertificateProblem::BadSelfSignature),
    }
}

/// Names an OID via OpenSSL's table, which knows more curves than x509-parser's registry.
fn oid_name(oid: &Oid<'_>) -> String {
    let dotted = oid.to_id_string();
    Asn1Object::from_str(&dotted).map_or(dotted, |o| o.to_string())
}

#[cfg(test)]
mod tests {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};

    use super::*;
    use crate::identity::{libp2p_extension, new_key, self_signed, Identity};
    use crate::trust::sha256_hex;
    use crate::trust::{KeyType, Libp2p, NodeIdScheme, Sha256};

    fn p256() -> PKey<Private> {
        new_key(KeyType::P256).unwrap()
    }

    /// A P-256 certificate whose libp2p extension holds `value`.
    fn with_extension(value: &[u8]) -> Vec<u8> {
        let extension = libp2p_extension(value).unwrap();
        self_signed(&p256(), "t", Some(&extension)).unwrap().to_der().unwrap()
    }

    /// Node keys that cannot be DTLS certificate keys, and how a refusal names them.
    fn wrong_keys() -> [(PKey<Private>, &'static str); 2] {
        let p384 = EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap();
        [
            (new_key(KeyType::Rsa).unwrap(), "rsaEncryption"),
            (PKey::from_ec_key(p384).unwrap(), "EC secp384r1"),
        ]
    }

    #[test]
    fn inspect_rejects_wrong_keys_and_bad_signatures() {
        for (key, name) in wrong_keys() {
            let der = self_signed(&key, "t", None).unwrap().to_der().unwrap();
            let want = Err(CertificateProblem::WrongKeyType(name.into()));
            assert_eq!(inspect_peer_certificate(&der), want);
        }
        let id = Identity::generate().unwrap();
        let mut der = id.certificate_der();
        *der.last_mut().unwrap() ^= 0x01;
        let r = inspect_peer_certificate(&der);
        assert_eq!(r, Err(CertificateProblem::BadSelfSignature));
        // The key alone is still that node's: the pin check (which leaves possession to the
        // handshake's signatures) reads it without the signature.
        assert_eq!(
            inspect_peer_key(&der).map(|k| sha256_hex(k.spki_der())),
            Ok(id.node_id().to_owned())
        );
        for bad in [&b"not a cert"[..], &[], &der[..der.len() - 1]] {
            let r = inspect_peer_certificate(bad);
            assert_eq!(r, Err(CertificateProblem::Malformed));
        }
    }

    #[test]
    fn the_extension_key_is_the_node_key_and_must_verify() {
        for key_type in KeyType::ALL {
            let id = Identity::generate_with(key_type, std::sync::Arc::new(Libp2p)).unwrap();
            let der = id.dtls_certificate_der();
            let key = inspect_peer_certificate(&der).unwrap();
            assert_eq!(key.spki_der(), id.public_key_der(), "{key_type}");
            assert_eq!(Libp2p.node_id(&key).unwrap(), id.node_id());
            assert_eq!(certificate_node_key(&der).unwrap(), key);
            // The node certificate (any key type) names the same key.
            assert_eq!(certificate_node_key(&id.certificate_der()).unwrap(), key);
        }
    }

    #[test]
    fn invalid_extensions_are_refused_never_passed_over() {
        let ed = Identity::generate_with(KeyType::Ed25519, std::sync::Arc::new(Sha256)).unwrap();
        let protobuf = libp2p::encode_public_key(ed.public_key()).unwrap();
        // Signed by the node key, but over another certificate's key.
        let other_spki = p256().public_key_to_der().unwrap();
        let misplaced = SignedKey {
            public_key: protobuf.clone(),
            signature: openssl::sign::Signer::new_without_digest(ed.private_key())
                .and_then(|mut s| s.sign_oneshot_to_vec(&libp2p::signed_message(&other_spki)))
                .unwrap(),
        };
        let garbage: [&[u8]; 4] = [b"", b"\x30\x00", b"\x04\x03abc", &[0x30, 0x04, 0x04, 0x00, 0x04, 0x00]];
        let mut values: Vec<Vec<u8>> = garbage.iter().map(|g| g.to_vec()).collect();
        values.push(misplaced.to_der().unwrap());
        for value in values {
            let der = with_extension(&value);
            let r = inspect_peer_key(&der);
            assert!(
                matches!(r, Err(CertificateProblem::InvalidExtension(_))),
                "{value:?}: {r:?}"
            );
            assert!(certificate_node_key(&der).is_err());
            // Damaged in transit instead (the self-signature covers the extension): noise.
            let mut damaged = der.clone();
            *damaged.last_mut().unwrap() ^= 1;
            assert_eq!(inspect_peer_key(&damaged), Err(CertificateProblem::BadSelfSignature));
        }
    }
}
