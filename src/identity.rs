//! Node identities: a P-256 key with a self-signed certificate, and the node ID derived from it.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::ssl::SslContext;
use openssl::x509::{X509Builder, X509NameBuilder, X509Ref, X509};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::trust::sha256_hex;

/// Errors from identity handling.
#[derive(Debug)]
pub enum IdentityError {
    /// Certificate or key could not be parsed (message says what and why).
    InvalidPem(String),
    /// The key is not ECDSA P-256 (message names what was found).
    UnsupportedKey(String),
    /// The private key does not match the certificate's public key.
    KeyMismatch,
    /// Writing or reading files failed (path + io error text).
    Io(String),
    /// save() refused because a file exists and overwrite was false (path).
    Exists(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPem(msg) => write!(f, "invalid certificate or key: {msg}"),
            Self::UnsupportedKey(found) => {
                write!(f, "unsupported key: expected ECDSA P-256, found {found}")
            }
            Self::KeyMismatch => f.write_str("private key does not match the certificate"),
            Self::Io(msg) => write!(f, "I/O error: {msg}"),
            Self::Exists(path) => write!(f, "refusing to overwrite existing file {path}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// A node's certificate and private key (ECDSA P-256, self-signed).
#[derive(Clone)]
pub struct Identity {
    cert: X509,
    key: PKey<Private>,
    node_id: String,
    // Cached so the infallible accessors never need to re-encode (and so never fail).
    cert_der: Vec<u8>,
    cert_pem: String,
    /// OpenSSL contexts built from this identity, one per cipher list, shared by clones: every
    /// connection of one identity shares one (each context costs about 17 KiB and its build
    /// time; docs/benchmarks.md).
    contexts: Arc<Mutex<Vec<(String, SslContext)>>>,
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
    /// Creates a fresh P-256 key and a self-signed X.509 v3 certificate whose subject CN is the
    /// node ID, valid from one hour ago (tolerates clock skew) for ten years.
    pub fn generate() -> Result<Self, IdentityError> {
        let make = || -> Result<_, ErrorStack> {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
            let node_id = sha256_hex(&key.public_key_to_der()?);
            Ok((self_signed(&key, &node_id)?, key))
        };
        let (cert, key) = make().map_err(invalid("generating identity"))?;
        Self::assemble(cert, key)
    }

    /// Parses a PEM certificate and a PEM private key (PKCS#8 or SEC1). The key must be EC
    /// P-256 and must match the certificate's public key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let cert = X509::from_pem(cert_pem).map_err(invalid("certificate"))?;
        // An explicit callback stops OpenSSL from prompting on the terminal for encrypted keys.
        let key = PKey::private_key_from_pem_callback(key_pem, |_| Ok(0))
            .map_err(invalid("private key (must be unencrypted PEM)"))?;
        Self::assemble(cert, key)
    }

    /// Reads a PEM certificate and key from files, then behaves like [`Identity::from_pem`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let cert = fs::read(cert_path).map_err(|e| io_err(cert_path, &e))?;
        let key = fs::read(key_path).map_err(|e| io_err(key_path, &e))?;
        Self::from_pem(&cert, &key)
    }

    /// Writes the certificate (PEM, 0644) and key (PKCS#8 PEM, 0600). Each file is replaced
    /// atomically, and the key is never readable by others, even briefly. Without `overwrite`,
    /// an existing target yields [`IdentityError::Exists`] and nothing is written.
    pub fn save(&self, cert_path: &Path, key_path: &Path, overwrite: bool) -> Result<(), IdentityError> {
        if cert_path == key_path {
            let msg = "certificate and key paths must be different";
            return Err(IdentityError::Io(format!("{}: {msg}", key_path.display())));
        }
        // symlink_metadata so that a dangling symlink also counts as existing.
        let existing = [cert_path, key_path]
            .into_iter()
            .find(|p| fs::symlink_metadata(p).is_ok());
        if let (false, Some(p)) = (overwrite, existing) {
            return Err(IdentityError::Exists(p.display().to_string()));
        }
        let key_pem = self.key.private_key_to_pem_pkcs8().map_err(invalid("encoding key"))?;
        // Both temp files are complete before either rename, which shrinks the window for
        // leaving a new key beside an old certificate to the gap between two renames.
        let key_tmp = write_temp(key_path, &key_pem, 0o600)?;
        let cert_tmp = write_temp(cert_path, self.cert_pem.as_bytes(), 0o644);
        let renamed = cert_tmp.and_then(|cert_tmp| {
            for (tmp, target) in [(&key_tmp, key_path), (&cert_tmp, cert_path)] {
                fs::rename(tmp, target).map_err(|e| {
                    let _ = fs::remove_file(&cert_tmp);
                    io_err(target, &e)
                })?;
            }
            Ok(())
        });
        if renamed.is_err() {
            let _ = fs::remove_file(&key_tmp);
        }
        renamed?;
        for target in [key_path, cert_path] {
            sync_parent(target);
        }
        Ok(())
    }

    /// The node ID: lowercase hex SHA-256 of the certificate's SubjectPublicKeyInfo DER.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// SHA-256 of the certificate DER as uppercase colon-separated hex ("AB:CD:...").
    pub fn fingerprint(&self) -> String {
        let hex = sha256_hex(&self.cert_der).to_ascii_uppercase();
        let pairs: Vec<_> = hex.as_bytes().chunks(2).map(String::from_utf8_lossy).collect();
        pairs.join(":")
    }

    /// The certificate in DER form.
    pub fn certificate_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// The certificate in PEM form.
    pub fn certificate_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The certificate, for handing to OpenSSL.
    pub fn certificate(&self) -> &X509Ref {
        &self.cert
    }

    /// The private key, for handing to OpenSSL.
    pub fn private_key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    fn assemble(cert: X509, key: PKey<Private>) -> Result<Self, IdentityError> {
        let curve = key.ec_key().ok().and_then(|ec| ec.group().curve_name());
        if curve != Some(Nid::X9_62_PRIME256V1) {
            let name = |n: Nid| n.long_name().map_or(format!("NID {}", n.as_raw()), str::to_owned);
            let found = match (key.id(), curve) {
                (Id::EC, Some(c)) => format!("EC {}", name(c)),
                (Id::EC, None) => "EC with explicit curve parameters".to_owned(),
                (id, _) => name(Nid::from_raw(id.as_raw())),
            };
            return Err(IdentityError::UnsupportedKey(found));
        }
        let cert_key = cert.public_key().map_err(invalid("certificate key"))?;
        if !cert_key.public_eq(&key) {
            return Err(IdentityError::KeyMismatch);
        }
        let cert_der = cert.to_der().map_err(invalid("encoding certificate"))?;
        let cert_pem = cert.to_pem().map_err(invalid("encoding certificate"))?;
        // Hash the SPKI bytes exactly as they sit in the certificate, as peers will; OpenSSL's
        // re-encoding of the key could differ (e.g. for compressed points).
        let node_id = sha256_hex(parse_spki(&cert_der).map_err(IdentityError::InvalidPem)?);
        // PEM is pure ASCII, so the lossy conversion never alters it.
        let cert_pem = String::from_utf8_lossy(&cert_pem).into_owned();
        Ok(Self {
            cert,
            key,
            node_id,
            cert_der,
            cert_pem,
            contexts: Arc::default(),
        })
    }

    /// The context for `ciphers`, made by `build` the first time it is asked for.
    pub(crate) fn context_for<E>(
        &self,
        ciphers: &str,
        build: impl FnOnce() -> Result<SslContext, E>,
    ) -> Result<SslContext, E> {
        let mut contexts = self.contexts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, context)) = contexts.iter().find(|(c, _)| c == ciphers) {
            return Ok(context.clone());
        }
        let context = build()?;
        contexts.push((ciphers.to_owned(), context.clone()));
        Ok(context)
    }
}

/// Node ID of a certificate given as PEM or DER. Any key type is accepted.
pub fn node_id_from_certificate(pem_or_der: &[u8]) -> Result<String, IdentityError> {
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
    let spki = parse_spki(der).map_err(IdentityError::InvalidPem)?;
    Ok(sha256_hex(spki))
}

/// Normalises a user-supplied node ID: exactly 64 hex characters, any case, returned lowercase.
pub fn parse_node_id(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    // Bounded echo: the input may be huge or something pasted by mistake.
    let mut shown: String = text.chars().take(80).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    let count = text.chars().count();
    Err(format!(
        "node ID must be 64 hexadecimal characters (SHA-256 of the certificate's public key), \
         got {shown:?} ({count} characters)"
    ))
}

/// Self-signed X.509 v3 certificate, ECDSA/SHA-256 signed, valid from one hour ago (tolerates
/// clock skew between peers) for ten years.
pub(crate) fn self_signed(key: &PKeyRef<Private>, common_name: &str) -> Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
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
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// The raw SubjectPublicKeyInfo DER inside a certificate's DER.
fn parse_spki(der: &[u8]) -> Result<&[u8], String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("certificate DER: {e}"))?;
    Ok(cert.tbs_certificate.subject_pki.raw)
}

fn invalid(what: &'static str) -> impl Fn(ErrorStack) -> IdentityError {
    move |e| IdentityError::InvalidPem(format!("{what}: {e}"))
}

fn io_err(path: &Path, e: &std::io::Error) -> IdentityError {
    IdentityError::Io(format!("{}: {e}", path.display()))
}

/// Writes `data` to a new, fsynced temp file beside `target` and returns its path.
fn write_temp(target: &Path, data: &[u8], mode: u32) -> Result<PathBuf, IdentityError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let not_file = || IdentityError::Io(format!("{}: not a file path", target.display()));
    let name = target.file_name().ok_or_else(not_file)?.to_string_lossy();
    let (pid, seq) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let tmp = target.with_file_name(format!(".{name}.{pid}-{seq}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(&tmp).map_err(|e| io_err(&tmp, &e))?;
    if let Err(e) = file.write_all(data).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(io_err(target, &e));
    }
    Ok(tmp)
}

/// Best effort: makes a rename durable; failure only weakens crash safety.
fn sync_parent(target: &Path) {
    #[cfg(unix)]
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    #[cfg(not(unix))]
    let _ = target;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::inspect_peer_certificate;
    use openssl::rsa::Rsa;
    use openssl::symm::Cipher;

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
    fn generate_gives_consistent_node_id() {
        let id = Identity::generate().unwrap();
        let n = id.node_id();
        assert!(n.len() == 64 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let subject = id.certificate().subject_name();
        let cn = subject.entries_by_nid(Nid::COMMONNAME).next().unwrap();
        assert_eq!(cn.data().to_string().unwrap(), n);
        let peer = inspect_peer_certificate(&id.certificate_der()).unwrap();
        assert_eq!(peer.node_id, n);
        // OpenSSL's SPKI encoding of the key must equal the bytes x509-parser finds in the cert.
        let spki = id.private_key().public_key_to_der().unwrap();
        assert_eq!(sha256_hex(&spki), n);
        assert_eq!(id.certificate().version(), 2);
        assert_eq!(format!("{id:?}"), format!("Identity {{ node_id: {n:?}, .. }}"));
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
    fn from_pem_rejects_bad_inputs() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let a_cert = a.certificate_pem();
        let b_key = b.private_key().private_key_to_pem_pkcs8().unwrap();
        let r = Identity::from_pem(a_cert.as_bytes(), &b_key);
        assert!(matches!(r, Err(IdentityError::KeyMismatch)), "{r:?}");
        for (curve, name) in WRONG_KEYS {
            let key = key_of(curve);
            let cert = self_signed(&key, "t").unwrap().to_pem().unwrap();
            let r = Identity::from_pem(&cert, &key.private_key_to_pem_pkcs8().unwrap());
            assert!(
                matches!(r, Err(IdentityError::UnsupportedKey(ref s)) if s == name),
                "{r:?}"
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
            assert_eq!(node_id_from_certificate(input).unwrap(), id.node_id());
        }
        let rsa = key_of(None);
        let rsa_cert = self_signed(&rsa, "t").unwrap().to_der().unwrap();
        let want = sha256_hex(&rsa.public_key_to_der().unwrap());
        assert_eq!(node_id_from_certificate(&rsa_cert).unwrap(), want);
        let bad_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for bad in [&b"garbage"[..], bad_pem, b""] {
            let r = node_id_from_certificate(bad);
            assert!(matches!(r, Err(IdentityError::InvalidPem(_))), "{r:?}");
        }
    }

    #[test]
    fn parse_node_id_normalises_and_rejects() {
        let lower = "ab".repeat(32);
        for ok in [lower.clone(), "AB".repeat(32), "aB".repeat(32)] {
            assert_eq!(parse_node_id(&ok).unwrap(), lower);
        }
        let short = "ab".repeat(31);
        let bad = [short.clone(), format!(" {lower}"), format!("{short}zz"), "é".repeat(32)];
        for text in bad {
            assert!(parse_node_id(&text).is_err(), "{text}");
        }
        let long = parse_node_id(&"x".repeat(10_000)).unwrap_err();
        assert!(long.starts_with("node ID must be 64 hexadecimal characters") && long.len() < 300);
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
}
