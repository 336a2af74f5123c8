//! Node identities: a node key of any supported type (P-256, Ed25519, RSA, secp256k1), its
//! node certificate, the P-256 certificate DTLS presents, and the node ID a scheme gives it.
//!
//! A P-256 node key under a scheme other than "libp2p" is its own DTLS key: its self-signed
//! certificate is what the handshake shows, as it always was. Every other identity presents an
//! ephemeral P-256 certificate made once per identity, endorsed by the node key through
//! libp2p's key extension (`trust::libp2p`); the handshake stays ECDHE-ECDSA on P-256 and
//! peers pin the node key inside it.

mod certificates;
mod files;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Ref, X509};
use x509_parser::prelude::{FromDer, X509Certificate};

pub use certificates::{libp2p_extension, self_signed};

use crate::trust::{sha256_hex, CertificateKeyError, KeyType, NodeIdScheme, PublicNodeKey, Sha256};

/// Bits of a generated RSA node key.
const GENERATED_RSA_BITS: u32 = 2048;

/// Errors from identity handling.
#[derive(Debug)]
pub enum IdentityError {
    /// Certificate or key could not be parsed (message says what and why).
    InvalidPem(String),
    /// The key is of no supported type or size (message names what was found and what is
    /// supported).
    UnsupportedKey(String),
    /// The private key does not match the certificate's public key.
    KeyMismatch,
    /// The node-ID scheme could not name the key (message says why).
    Scheme(String),
    /// Writing or reading files failed (path + io error text).
    Io(String),
    /// save() refused because a file exists and overwrite was false (path).
    Exists(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPem(msg) => write!(f, "invalid certificate or key: {msg}"),
            Self::UnsupportedKey(msg) | Self::Scheme(msg) => f.write_str(msg),
            Self::KeyMismatch => f.write_str("private key does not match the certificate"),
            Self::Io(msg) => write!(f, "I/O error: {msg}"),
            Self::Exists(path) => write!(f, "refusing to overwrite existing file {path}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// A certificate and its private key (the node's, or the P-256 one DTLS presents). Shared by an identity's
/// clones; `policy` keys its context cache on it.
pub struct CertifiedKey {
    cert: X509,
    key: PKey<Private>,
    der: Vec<u8>,
    pem: String,
}

impl CertifiedKey {
    fn new(cert: X509, key: PKey<Private>) -> Result<Self, IdentityError> {
        let der = cert.to_der().map_err(invalid("encoding certificate"))?;
        let pem = cert.to_pem().map_err(invalid("encoding certificate"))?;
        // PEM is pure ASCII, so the lossy conversion never alters it.
        let pem = String::from_utf8_lossy(&pem).into_owned();
        Ok(Self { cert, key, der, pem })
    }

    /// The certificate, for handing to OpenSSL.
    pub fn certificate(&self) -> &X509Ref {
        &self.cert
    }

    /// Its private key, for handing to OpenSSL.
    pub fn private_key(&self) -> &PKeyRef<Private> {
        &self.key
    }
}

/// A node's key, certificates and node ID.
#[derive(Clone)]
pub struct Identity {
    key: PKey<Private>,
    public_key: PublicNodeKey,
    /// The node certificate, self-signed by the node key.
    cert: Arc<CertifiedKey>,
    /// What DTLS presents (the same as `cert` for a P-256 key outside the libp2p scheme).
    dtls: Arc<CertifiedKey>,
    scheme: Arc<dyn NodeIdScheme>,
    node_id: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key must never reach logs, so only the public node ID is shown.
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh P-256 identity under the SHA-256 scheme: a self-signed X.509 v3 certificate
    /// whose subject CN is the node ID, valid from one hour ago (tolerates clock skew) for ten
    /// years.
    pub fn generate() -> Result<Self, IdentityError> {
        Self::generate_with(KeyType::P256, Arc::new(Sha256))
    }

    /// A fresh node key of `key_type` (RSA: 2048 bits) named by `scheme`, with a self-signed
    /// node certificate whose CN is the node ID.
    pub fn generate_with(key_type: KeyType, scheme: Arc<dyn NodeIdScheme>) -> Result<Self, IdentityError> {
        let key = new_key(key_type).map_err(invalid("generating a key"))?;
        Self::assemble(None, key, scheme)
    }

    /// A P-256 identity under the SHA-256 scheme from a PEM certificate and key; see
    /// [`Identity::from_pem_with`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        Self::from_pem_with(Some(cert_pem), key_pem, Arc::new(Sha256))
    }

    /// Parses a PEM private key (PKCS#8, SEC1 or PKCS#1) of a supported type and, if given, a
    /// PEM certificate that must carry its public key; without one, a self-signed node
    /// certificate is made.
    pub fn from_pem_with(
        cert_pem: Option<&[u8]>,
        key_pem: &[u8],
        scheme: Arc<dyn NodeIdScheme>,
    ) -> Result<Self, IdentityError> {
        let cert = cert_pem
            .map(|pem| X509::from_pem(pem).map_err(invalid("certificate")))
            .transpose()?;
        // An explicit callback stops OpenSSL from prompting on the terminal for encrypted keys.
        let key = PKey::private_key_from_pem_callback(key_pem, |_| Ok(0))
            .map_err(invalid("private key (must be unencrypted PEM)"))?;
        Self::assemble(cert, key, scheme)
    }

    /// Reads a PEM certificate and key from files, then behaves like [`Identity::from_pem`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        Self::load_with(Some(cert_path), key_path, Arc::new(Sha256))
    }

    /// Reads the files, then behaves like [`Identity::from_pem_with`].
    pub fn load_with(
        cert_path: Option<&Path>,
        key_path: &Path,
        scheme: Arc<dyn NodeIdScheme>,
    ) -> Result<Self, IdentityError> {
        let cert = cert_path
            .map(|p| std::fs::read(p).map_err(|e| files::io_err(p, &e)))
            .transpose()?;
        let key = std::fs::read(key_path).map_err(|e| files::io_err(key_path, &e))?;
        Self::from_pem_with(cert.as_deref(), &key, scheme)
    }

    /// Writes the node certificate (PEM, 0644) and the node key (PKCS#8 PEM, 0600). Each file
    /// is replaced atomically, and the key is never readable by others, even briefly. Without
    /// `overwrite`, an existing target yields [`IdentityError::Exists`] and nothing is written.
    pub fn save(&self, cert_path: &Path, key_path: &Path, overwrite: bool) -> Result<(), IdentityError> {
        let key_pem = self.key.private_key_to_pem_pkcs8().map_err(invalid("encoding key"))?;
        files::save_pair(cert_path, key_path, self.cert.pem.as_bytes(), &key_pem, overwrite)
    }

    /// The node ID under this identity's scheme.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node key's type.
    pub fn key_type(&self) -> KeyType {
        self.public_key.key_type()
    }

    /// DER SubjectPublicKeyInfo of the node key.
    pub fn public_key_der(&self) -> &[u8] {
        self.public_key.spki_der()
    }

    /// The node key's public half.
    pub fn public_key(&self) -> &PublicNodeKey {
        &self.public_key
    }

    /// The scheme that names this node and judges its peers.
    pub fn scheme(&self) -> &Arc<dyn NodeIdScheme> {
        &self.scheme
    }

    /// SHA-256 of the DTLS certificate DER as uppercase colon-separated hex ("AB:CD:...").
    pub fn fingerprint(&self) -> String {
        let hex = sha256_hex(&self.dtls.der).to_ascii_uppercase();
        let pairs: Vec<_> = hex.as_bytes().chunks(2).map(String::from_utf8_lossy).collect();
        pairs.join(":")
    }

    /// The node certificate in DER form.
    pub fn certificate_der(&self) -> Vec<u8> {
        self.cert.der.clone()
    }

    /// The node certificate in PEM form.
    pub fn certificate_pem(&self) -> String {
        self.cert.pem.clone()
    }

    /// The node certificate.
    pub fn certificate(&self) -> &X509Ref {
        &self.cert.cert
    }

    /// The node's private key.
    pub fn private_key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// The DTLS certificate in DER form.
    pub fn dtls_certificate_der(&self) -> Vec<u8> {
        self.dtls.der.clone()
    }

    /// The DTLS certificate in PEM form.
    pub fn dtls_certificate_pem(&self) -> String {
        self.dtls.pem.clone()
    }

    /// What DTLS presents, shared by clones.
    pub fn dtls_credentials(&self) -> &Arc<CertifiedKey> {
        &self.dtls
    }

    fn assemble(cert: Option<X509>, key: PKey<Private>, scheme: Arc<dyn NodeIdScheme>) -> Result<Self, IdentityError> {
        let key_type = KeyType::of(&key).map_err(IdentityError::UnsupportedKey)?;
        // A P-256 key outside the libp2p scheme is its own DTLS key; everyone else's goes in
        // the extension of an ephemeral certificate.
        let own_dtls_key = key_type == KeyType::P256 && !scheme.separate_certificate_key();
        let cert_spki = match &cert {
            Some(cert) => {
                let cert_key = cert.public_key().map_err(invalid("certificate key"))?;
                if !cert_key.public_eq(&key) {
                    return Err(IdentityError::KeyMismatch);
                }
                Some(cert.to_der().map_err(invalid("encoding certificate"))?)
            }
            None => None,
        };
        // Name the key as peers will see it: the SPKI bytes exactly as they sit in a
        // certificate DTLS presents (OpenSSL's re-encoding could differ, e.g. for compressed
        // points), or the canonical SPKI a peer rebuilds from the extension.
        let public_key = match (&cert_spki, own_dtls_key) {
            (Some(der), true) => PublicNodeKey::from_spki_der(parse_spki(der)?),
            _ => PublicNodeKey::from_key(&key),
        }
        .map_err(IdentityError::UnsupportedKey)?;
        let node_id = scheme.node_id(&public_key).map_err(IdentityError::Scheme)?;
        let cert = match cert {
            Some(cert) => cert,
            None => self_signed(&key, &node_id, None).map_err(invalid("making the node certificate"))?,
        };
        let cert = Arc::new(CertifiedKey::new(cert, key.clone())?);
        let dtls = if own_dtls_key {
            cert.clone()
        } else {
            let (dtls_cert, dtls_key) = certificates::endorsed_ephemeral(&key, &public_key, &node_id)
                .map_err(|e| IdentityError::InvalidPem(format!("making the DTLS certificate: {e}")))?;
            Arc::new(CertifiedKey::new(dtls_cert, dtls_key)?)
        };
        Ok(Self {
            key,
            public_key,
            cert,
            dtls,
            scheme,
            node_id,
        })
    }
}

/// A fresh private key of `key_type` (RSA: 2048 bits).
pub(crate) fn new_key(key_type: KeyType) -> Result<PKey<Private>, ErrorStack> {
    let curve = |nid| EcGroup::from_curve_name(nid).and_then(|g| EcKey::generate(&g));
    match key_type {
        KeyType::P256 => PKey::from_ec_key(curve(Nid::X9_62_PRIME256V1)?),
        KeyType::Secp256k1 => PKey::from_ec_key(curve(Nid::SECP256K1)?),
        KeyType::Ed25519 => PKey::generate_ed25519(),
        KeyType::Rsa => PKey::from_rsa(Rsa::generate(GENERATED_RSA_BITS)?),
    }
}

/// Node ID of a certificate given as PEM or DER under `scheme`: the key its libp2p extension
/// endorses when it has one (an invalid extension is an error, never passed over), else the
/// certificate's own key (any supported type).
pub fn node_id_from_certificate(pem_or_der: &[u8], scheme: &dyn NodeIdScheme) -> Result<String, IdentityError> {
    let text = pem_or_der.trim_ascii_start();
    let pem_der;
    let der = if text.starts_with(b"-----BEGIN CERTIFICATE-----") {
        pem_der = X509::from_pem(text)
            .and_then(|c| c.to_der())
            .map_err(invalid("certificate"))?;
        &pem_der[..]
    } else {
        pem_or_der
    };
    match crate::trust::certificate_node_key(der) {
        Ok(key) => scheme.node_id(&key).map_err(IdentityError::Scheme),
        Err(CertificateKeyError::UnsupportedKey { spki, why }) => scheme
            .unsupported_key_id(&spki)
            .ok_or(IdentityError::UnsupportedKey(why)),
        Err(e) => Err(IdentityError::InvalidPem(e.to_string())),
    }
}

/// The raw SubjectPublicKeyInfo DER inside a certificate's DER.
fn parse_spki(der: &[u8]) -> Result<&[u8], IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::InvalidPem(format!("certificate DER: {e}")))?;
    Ok(cert.tbs_certificate.subject_pki.raw)
}

fn invalid(what: &'static str) -> impl Fn(ErrorStack) -> IdentityError {
    move |e| IdentityError::InvalidPem(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{SystemTime, UNIX_EPOCH};

    use openssl::symm::Cipher;

    use super::*;
    use crate::trust::{inspect_peer_certificate, Libp2p};

    /// `None` means RSA-1024, `Some(curve)` an EC key on that curve.
    fn key_of(curve: Option<Nid>) -> PKey<Private> {
        match curve {
            Some(n) => PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(n).unwrap()).unwrap()),
            None => PKey::from_rsa(Rsa::generate(1024).unwrap()),
        }
        .unwrap()
    }

    /// Keys no identity accepts, and what the error names.
    const WRONG_KEYS: [(Option<Nid>, &str); 2] = [(None, "RSA with 1024 bits"), (Some(Nid::SECP384R1), "EC secp384r1")];

    #[test]
    fn generate_gives_consistent_node_id() {
        let id = Identity::generate().unwrap();
        let n = id.node_id();
        assert!(n.len() == 64 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let subject = id.certificate().subject_name();
        let cn = subject.entries_by_nid(Nid::COMMONNAME).next().unwrap();
        assert_eq!(cn.data().to_string().unwrap(), n);
        let peer = inspect_peer_certificate(&id.certificate_der()).unwrap();
        assert_eq!(sha256_hex(peer.spki_der()), n);
        // OpenSSL's SPKI encoding of the key must equal the bytes x509-parser finds in the cert.
        let spki = id.private_key().public_key_to_der().unwrap();
        assert_eq!(sha256_hex(&spki), n);
        assert_eq!(id.public_key_der(), spki);
        assert_eq!(id.certificate().version(), 2);
        // A P-256 node key under SHA-256 is its own DTLS key, as before.
        assert_eq!(id.dtls_certificate_der(), id.certificate_der());
        assert_eq!(format!("{id:?}"), format!("Identity {{ node_id: {n:?}, .. }}"));
    }

    #[test]
    fn other_key_types_present_one_endorsed_ephemeral_certificate() {
        let schemes: [Arc<dyn NodeIdScheme>; 2] = [Arc::new(Sha256), Arc::new(Libp2p)];
        for key_type in KeyType::ALL {
            for scheme in &schemes {
                let id = Identity::generate_with(key_type, scheme.clone()).unwrap();
                assert_eq!(id.key_type(), key_type);
                let separate = key_type != KeyType::P256 || scheme.name() == "libp2p";
                assert_eq!(
                    id.dtls_certificate_der() != id.certificate_der(),
                    separate,
                    "{key_type}"
                );
                // What DTLS presents is P-256 and names the node key.
                let key = inspect_peer_certificate(&id.dtls_certificate_der()).unwrap();
                assert_eq!(key.spki_der(), id.public_key_der());
                let dtls_key = id.dtls_credentials().private_key().ec_key().unwrap();
                assert_eq!(dtls_key.group().curve_name(), Some(Nid::X9_62_PRIME256V1));
                // Made once per identity: clones present the same certificate.
                assert_eq!(id.clone().dtls_certificate_der(), id.dtls_certificate_der());
                assert!(Arc::ptr_eq(id.clone().dtls_credentials(), id.dtls_credentials()));
                let fingerprint = sha256_hex(&id.dtls_certificate_der()).to_ascii_uppercase();
                assert_eq!(id.fingerprint().replace(':', ""), fingerprint);
            }
        }
    }

    #[test]
    fn from_pem_accepts_pkcs8_and_sec1() {
        let id = Identity::generate().unwrap();
        let cert = id.certificate_pem();
        let pkcs8 = id.private_key().private_key_to_pem_pkcs8().unwrap();
        let sec1 = id.private_key().ec_key().unwrap().private_key_to_pem();
        let sec1 = sec1.unwrap();
        assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
        for key in [pkcs8, sec1] {
            let loaded = Identity::from_pem(cert.as_bytes(), &key).unwrap();
            assert_eq!(loaded.node_id(), id.node_id());
            assert_eq!(loaded.certificate_der(), id.certificate_der());
        }
    }

    #[test]
    fn keys_load_from_every_pem_form_with_or_without_a_certificate() {
        let schemes: [Arc<dyn NodeIdScheme>; 2] = [Arc::new(Sha256), Arc::new(Libp2p)];
        for key_type in KeyType::ALL {
            let id = Identity::generate_with(key_type, Arc::new(Sha256)).unwrap();
            let key = id.private_key();
            let mut forms = vec![key.private_key_to_pem_pkcs8().unwrap()];
            match key_type {
                KeyType::Rsa => forms.push(key.rsa().unwrap().private_key_to_pem().unwrap()),
                KeyType::P256 | KeyType::Secp256k1 => forms.push(key.ec_key().unwrap().private_key_to_pem().unwrap()),
                KeyType::Ed25519 => {}
            }
            let cert = id.certificate_pem();
            for pem in &forms {
                for scheme in &schemes {
                    let want = Identity::from_pem_with(Some(cert.as_bytes()), pem, scheme.clone()).unwrap();
                    let keyless = Identity::from_pem_with(None, pem, scheme.clone()).unwrap();
                    assert_eq!(keyless.node_id(), want.node_id(), "{key_type} {}", scheme.name());
                    assert_eq!(keyless.public_key_der(), id.public_key_der());
                    assert_eq!(want.certificate_der(), id.certificate_der());
                }
            }
        }
    }

    #[test]
    fn from_pem_rejects_bad_inputs() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let a_cert = a.certificate_pem();
        let b_key = b.private_key().private_key_to_pem_pkcs8().unwrap();
        let r = Identity::from_pem(a_cert.as_bytes(), &b_key);
        assert!(matches!(r, Err(IdentityError::KeyMismatch)), "{r:?}");
        for (curve, name) in WRONG_KEYS {
            let key = key_of(curve);
            let cert = self_signed(&key, "t", None).unwrap().to_pem().unwrap();
            let r = Identity::from_pem(&cert, &key.private_key_to_pem_pkcs8().unwrap());
            let Err(IdentityError::UnsupportedKey(msg)) = r else {
                panic!("{r:?}");
            };
            assert!(
                msg.contains(name) && msg.contains("Ed25519, RSA (2048 to 8192 bits)"),
                "{msg}"
            );
        }
        let r = Identity::from_pem(b"garbage", &b_key);
        assert!(matches!(r, Err(IdentityError::InvalidPem(_))), "{r:?}");
        // Encrypted keys must fail cleanly rather than prompt for a passphrase.
        let cipher = Cipher::aes_256_cbc();
        let enc = a.private_key().private_key_to_pem_pkcs8_passphrase(cipher, b"pw");
        let r = Identity::from_pem(a_cert.as_bytes(), &enc.unwrap());
        assert!(matches!(r, Err(IdentityError::InvalidPem(_))), "{r:?}");
    }

    #[test]
    fn node_id_from_pem_or_der() {
        let id = Identity::generate().unwrap();
        let pem = format!("\n  {}", id.certificate_pem());
        for input in [pem.as_bytes(), &id.certificate_der()] {
            assert_eq!(node_id_from_certificate(input, &Sha256).unwrap(), id.node_id());
        }
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let rsa_cert = self_signed(&rsa, "t", None).unwrap().to_der().unwrap();
        let want = sha256_hex(&rsa.public_key_to_der().unwrap());
        assert_eq!(node_id_from_certificate(&rsa_cert, &Sha256).unwrap(), want);
        // A key no identity may hold still has a SHA-256 ID (pinning it gets a typed refusal
        // in the handshake), but no libp2p one.
        let p384 = key_of(Some(Nid::SECP384R1));
        let p384_cert = self_signed(&p384, "t", None).unwrap().to_der().unwrap();
        let want = sha256_hex(&p384.public_key_to_der().unwrap());
        assert_eq!(node_id_from_certificate(&p384_cert, &Sha256).unwrap(), want);
        let r = node_id_from_certificate(&p384_cert, &Libp2p);
        assert!(matches!(r, Err(IdentityError::UnsupportedKey(_))), "{r:?}");
        let bad_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for bad in [&b"garbage"[..], bad_pem, b""] {
            let r = node_id_from_certificate(bad, &Sha256);
            assert!(matches!(r, Err(IdentityError::InvalidPem(_))), "{r:?}");
        }
    }

    #[test]
    fn fingerprint_format() {
        let fp = Identity::generate().unwrap().fingerprint();
        assert_eq!(fp.len(), 95);
        let ok = |(i, c)| matches!((i % 3, c), (2, ':') | (0 | 1, '0'..='9' | 'A'..='F'));
        assert!(fp.chars().enumerate().all(ok), "{fp}");
    }

    #[test]
    fn save_and_load() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let unique = format!("dtls_peer-id-{}-{}", std::process::id(), nanos.as_nanos());
        let dir = std::env::temp_dir().join(unique);
        fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("node.crt"), dir.join("node.key"));
        let id = Identity::generate().unwrap();
        id.save(&cert, &key, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let load = || Identity::load(&cert, &key).unwrap().node_id().to_owned();
        assert_eq!(load(), id.node_id());
        let read_both = || (fs::read(&cert).unwrap(), fs::read(&key).unwrap());
        let before = read_both();
        let other = Identity::generate().unwrap();
        let r = other.save(&cert, &key, false);
        assert!(matches!(r, Err(IdentityError::Exists(_))), "{r:?}");
        assert_eq!(read_both(), before);
        other.save(&cert, &key, true).unwrap();
        assert_eq!(load(), other.node_id());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "temp files left behind");
        let r = Identity::load(&cert, &dir.join("missing.key"));
        assert!(
            matches!(r, Err(IdentityError::Io(ref s)) if s.contains("missing.key")),
            "{r:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_key_type_saves_and_loads_to_the_same_node_id() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let dir = std::env::temp_dir().join(format!("dtls_peer-keys-{}-{}", std::process::id(), nanos.as_nanos()));
        fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("node.crt"), dir.join("node.key"));
        let schemes: [Arc<dyn NodeIdScheme>; 2] = [Arc::new(Sha256), Arc::new(Libp2p)];
        for key_type in KeyType::ALL {
            for scheme in &schemes {
                let id = Identity::generate_with(key_type, scheme.clone()).unwrap();
                id.save(&cert, &key, true).unwrap();
                let loaded = Identity::load_with(Some(&cert), &key, scheme.clone()).unwrap();
                assert_eq!(loaded.node_id(), id.node_id(), "{key_type} {}", scheme.name());
                assert_eq!(loaded.key_type(), key_type);
                let keyless = Identity::load_with(None, &key, scheme.clone()).unwrap();
                assert_eq!(keyless.node_id(), id.node_id());
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
