//! The peer's leaf certificate: which key it carries and whether it is intact.

use openssl::asn1::Asn1Object;
use openssl::x509::X509;
use x509_parser::asn1_rs::{Class, Oid, Tag};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{sha256_hex, CertificateProblem};

/// What a peer certificate is, as judged by [`inspect_peer_certificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The peer's node ID (lowercase hex SHA-256 of its SubjectPublicKeyInfo DER).
    pub node_id: String,
}

/// Checks a peer's leaf certificate (DER): P-256 key, valid self-signature. Returns its node ID.
pub fn inspect_peer_certificate(der: &[u8]) -> Result<PeerCertificate, CertificateProblem> {
    let peer = inspect_peer_key(der)?;
    let x509 = X509::from_der(der).map_err(|_| CertificateProblem::Malformed)?;
    let key = x509.public_key().map_err(|_| CertificateProblem::Malformed)?;
    // An OpenSSL error here means the signature could not even be decoded: still a bad one.
    match x509.verify(&key) {
        Ok(true) => Ok(peer),
        _ => Err(CertificateProblem::BadSelfSignature),
    }
}

/// [`inspect_peer_certificate`] without the self-signature (an ECDSA verification): the
/// certificate parses and carries a P-256 key. Returns its node ID.
pub fn inspect_peer_key(der: &[u8]) -> Result<PeerCertificate, CertificateProblem> {
    use CertificateProblem::{Malformed, WrongKeyType};
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
    Ok(PeerCertificate {
        node_id: sha256_hex(spki.raw),
    })
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
    use openssl::rsa::Rsa;

    use super::*;
    use crate::identity::{self_signed, Identity};

    /// `None` means RSA-2048, `Some(curve)` an EC key on that curve.
    fn key_of(curve: Option<Nid>) -> PKey<Private> {
        match curve {
            Some(n) => PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(n).unwrap()).unwrap()),
            None => PKey::from_rsa(Rsa::generate(2048).unwrap()),
        }
        .unwrap()
    }

    const WRONG_KEYS: [(Option<Nid>, &str); 2] = [(None, "rsaEncryption"), (Some(Nid::SECP384R1), "EC secp384r1")];

    #[test]
    fn inspect_rejects_wrong_keys_and_bad_signatures() {
        for (curve, name) in WRONG_KEYS {
            let der = self_signed(&key_of(curve), "t").unwrap().to_der().unwrap();
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
        assert_eq!(inspect_peer_key(&der).map(|p| p.node_id), Ok(id.node_id().to_owned()));
        for bad in [&b"not a cert"[..], &[], &der[..der.len() - 1]] {
            let r = inspect_peer_certificate(bad);
            assert_eq!(r, Err(CertificateProblem::Malformed));
        }
    }
}
