//! Node keys as peers see them: the four key types a node may hold, their canonical DER
//! SubjectPublicKeyInfo (what node IDs are computed from) and signature checks.

use std::fmt;
use std::sync::OnceLock;

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Public};
use openssl::sign::Verifier;

/// Smallest and largest RSA node key accepted, in bits.
pub const RSA_BITS: std::ops::RangeInclusive<u32> = 2048..=8192;

/// Largest RSA public exponent accepted, in bits (65537 has 17).
const MAX_RSA_EXPONENT_BITS: i32 = 32;

/// What `ValueError`s and refusals say is supported.
pub const SUPPORTED_KEYS: &str = "ECDSA P-256, Ed25519, RSA (2048 to 8192 bits) or ECDSA secp256k1";

/// A node key's type. The names are the ones the Python API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (libp2p "ECDSA").
    P256,
    /// Ed25519.
    Ed25519,
    /// RSA, 2048 to 8192 bits; signatures are PKCS#1 v1.5 with SHA-256, as libp2p uses.
    Rsa,
    /// ECDSA on secp256k1.
    Secp256k1,
}

impl KeyType {
    /// All types, in the order the documentation lists them.
    pub const ALL: [Self; 4] = [Self::P256, Self::Ed25519, Self::Rsa, Self::Secp256k1];

    /// "p256", "ed25519", "rsa" or "secp256k1".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Ed25519 => "ed25519",
            Self::Rsa => "rsa",
            Self::Secp256k1 => "secp256k1",
        }
    }

    /// The inverse of [`KeyType::as_str`]; the error names the supported types.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| format!("unsupported key_type {name:?}: expected 'p256', 'ed25519', 'rsa' or 'secp256k1'"))
    }

    /// The type of `key`, or why it is not a supported node key.
    pub fn of<T: HasPublic>(key: &PKeyRef<T>) -> Result<Self, String> {
        let unsupported = |found: String| format!("unsupported key: {found}; node keys must be {SUPPORTED_KEYS}");
        match key.id() {
            Id::ED25519 => Ok(Self::Ed25519),
            Id::RSA => {
                let bits = key.bits();
                // A huge public exponent would make each verification as slow as a private-key
                // operation, for a key any stranger can put in an extension.
                let exponent_bits = key.rsa().map_or(i32::MAX, |rsa| rsa.e().num_bits());
                if !RSA_BITS.contains(&bits) {
                    Err(unsupported(format!("RSA with {bits} bits")))
                } else if exponent_bits > MAX_RSA_EXPONENT_BITS {
                    Err(unsupported(format!("RSA with a {exponent_bits}-bit public exponent")))
                } else {
                    Ok(Self::Rsa)
                }
            }
            Id::EC => match key.ec_key().ok().and_then(|ec| ec.group().curve_name()) {
                Some(Nid::X9_62_PRIME256V1) => Ok(Self::P256),
                Some(Nid::SECP256K1) => Ok(Self::Secp256k1),
                Some(curve) => Err(unsupported(format!("EC {}", nid_name(curve)))),
                None => Err(unsupported("EC with explicit curve parameters".to_owned())),
            },
            id => Err(unsupported(nid_name(Nid::from_raw(id.as_raw())))),
        }
    }

    /// The message digest its signatures use (`None`: the scheme hashes by itself).
    pub(crate) fn digest(self) -> Option<MessageDigest> {
        match self {
            Self::Ed25519 => None,
            Self::P256 | Self::Rsa | Self::Secp256k1 => Some(MessageDigest::sha256()),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A supported node public key with its canonical DER SubjectPublicKeyInfo.
#[derive(Clone)]
pub struct PublicNodeKey {
    key_type: KeyType,
    spki: Vec<u8>,
    /// Loaded into OpenSSL only when needed (a signature to check, a libp2p encoding): that
    /// load validates the point, about 40 µs for P-256, which a plain pinned P-256 certificate
    /// key never needs (OpenSSL loads it for the handshake's own signatures anyway).
    key: OnceLock<Option<PKey<Public>>>,
}

impl fmt::Debug for PublicNodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicNodeKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl PartialEq for PublicNodeKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for PublicNodeKey {}

impl PublicNodeKey {
    /// The public half of `key`, with its canonical SPKI (see [`canonical_spki`]).
    pub fn from_key<T: HasPublic>(key: &PKeyRef<T>) -> Result<Self, String> {
        Ok(Self {
            key_type: KeyType::of(key)?,
            spki: canonical_spki(key)?,
            // Loaded from the SPKI if ever needed: a local identity's key never is.
            key: OnceLock::new(),
        })
    }

    /// `key` with its canonical SPKI, keeping the loaded key for signature checks.
    fn from_public(key: PKey<Public>) -> Result<Self, String> {
        Ok(Self {
            key_type: KeyType::of(&key)?,
            spki: canonical_spki(&key)?,
            key: OnceLock::from(Some(key)),
        })
    }

    /// A key given as DER SubjectPublicKeyInfo, kept byte for byte (certificates' SPKIs are
    /// hashed exactly as they appear, as they always were).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, String> {
        let key = PKey::public_key_from_der(spki).map_err(|_| "the public key does not parse".to_owned())?;
        let key_type = KeyType::of(&key)?;
        Ok(Self {
            key_type,
            spki: spki.to_vec(),
            key: OnceLock::from(Some(key)),
        })
    }

    /// The same key with its canonical SPKI (EC points uncompressed), as a peer rebuilds it
    /// from a libp2p extension.
    pub(crate) fn canonical(self) -> Result<Self, String> {
        let key = self.key().ok_or_else(|| "the public key does not parse".to_owned())?;
        let spki = canonical_spki(key)?;
        Ok(Self { spki, ..self })
    }

    /// A P-256 key given as the DER SPKI of a certificate whose algorithm and curve were
    /// already checked (`trust::certificate`); OpenSSL loads it only if it is ever needed.
    pub(crate) fn p256_from_checked_spki(spki: &[u8]) -> Self {
        Self {
            key_type: KeyType::P256,
            spki: spki.to_vec(),
            key: OnceLock::new(),
        }
    }

    fn key(&self) -> Option<&PKey<Public>> {
        self.key
            .get_or_init(|| PKey::public_key_from_der(&self.spki).ok())
            .as_ref()
    }

    /// A key from libp2p's `PublicKey.Data` bytes for `key_type`: 32 raw bytes (Ed25519), a
    /// 33-byte compressed point (secp256k1) or DER SPKI (RSA, ECDSA).
    pub fn from_libp2p_data(key_type: KeyType, data: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| format!("the {key_type} public key in the extension is invalid ({what})");
        let key = match key_type {
            KeyType::Ed25519 => {
                PKey::public_key_from_raw_bytes(data, Id::ED25519).map_err(|_| bad("not 32 key bytes"))?
            }
            KeyType::Secp256k1 => {
                if data.len() != 33 {
                    return Err(bad("not a 33-byte compressed point"));
                }
                let point = || -> Result<PKey<Public>, ErrorStack> {
                    let group = EcGroup::from_curve_name(Nid::SECP256K1)?;
                    let mut ctx = BigNumContext::new()?;
                    let point = EcPoint::from_bytes(&group, data, &mut ctx)?;
                    PKey::from_ec_key(EcKey::from_public_key(&group, &point)?)
                };
                point().map_err(|_| bad("not a point on the curve"))?
            }
            KeyType::Rsa | KeyType::P256 => {
                PKey::public_key_from_der(data).map_err(|_| bad("not a DER SubjectPublicKeyInfo"))?
            }
        };
        let found = KeyType::of(&key)?;
        if found != key_type {
            return Err(bad(&format!("its SubjectPublicKeyInfo holds a {found} key")));
        }
        Self::from_public(key)
    }

    /// libp2p's `PublicKey.Data` bytes for this key.
    pub fn libp2p_data(&self) -> Result<Vec<u8>, String> {
        let failed = |e: ErrorStack| format!("encoding the public key: {e}");
        let key = || self.key().ok_or_else(|| "the public key does not parse".to_owned());
        match self.key_type {
            KeyType::Ed25519 => key()?.raw_public_key().map_err(failed),
            KeyType::Secp256k1 => {
                let ec = key()?.ec_key().map_err(failed)?;
                let mut ctx = BigNumContext::new().map_err(failed)?;
                (ec.public_key()
                    .to_bytes(ec.group(), PointConversionForm::COMPRESSED, &mut ctx))
                .map_err(failed)
            }
            KeyType::Rsa | KeyType::P256 => Ok(self.spki.clone()),
        }
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The DER SubjectPublicKeyInfo node IDs are computed from.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Whether `signature` is this key's signature over `message` (an undecodable signature
    /// is a wrong one).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some(key) = self.key() else {
            return false;
        };
        let verifier = match self.key_type.digest() {
            Some(digest) => Verifier::new(digest, key),
            None => Verifier::new_without_digest(key),
        };
        verifier
            .and_then(|mut v| v.verify_oneshot(signature, message))
            .unwrap_or(false)
    }
}

/// The DER SPKI of `key` with EC points uncompressed, so that a key has one SPKI however it
/// was stored (as go-libp2p's `MarshalPKIXPublicKey` does). Only a compressed point is
/// rebuilt: that costs a point validation (about 40 µs for P-256).
fn canonical_spki<T: HasPublic>(key: &PKeyRef<T>) -> Result<Vec<u8>, String> {
    let encode = || -> Result<Vec<u8>, ErrorStack> {
        let der = key.public_key_to_der()?;
        let Ok(ec) = key.ec_key() else {
            return Ok(der);
        };
        let group = ec.group();
        let mut ctx = BigNumContext::new()?;
        let uncompressed = ec
            .public_key()
            .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)?;
        if der.ends_with(&uncompressed) {
            return Ok(der);
        }
        let point = EcPoint::from_bytes(group, &uncompressed, &mut ctx)?;
        PKey::from_ec_key(EcKey::from_public_key(group, &point)?)?.public_key_to_der()
    };
    encode().map_err(|e| format!("encoding the public key: {e}"))
}

/// OpenSSL's long name for `nid`, or its number.
pub(crate) fn nid_name(nid: Nid) -> String {
    nid.long_name().map_or(format!("NID {}", nid.as_raw()), str::to_owned)
}

#[cfg(test)]
mod tests {
    use openssl::bn::BigNum;
    use openssl::rsa::Rsa;

    use super::*;

    #[test]
    fn rsa_keys_need_a_usual_size_and_exponent() {
        let rsa = |bits, e: u32| {
            let rsa = Rsa::generate_with_e(bits, &BigNum::from_u32(e).unwrap()).unwrap();
            KeyType::of(&PKey::from_rsa(rsa).unwrap())
        };
        assert_eq!(rsa(2048, 65537), Ok(KeyType::Rsa));
        assert!(rsa(1024, 65537).unwrap_err().contains("RSA with 1024 bits"));
        // A 2048-bit key with a 2047-bit exponent is valid RSA, but slow to verify.
        let n_bits = Rsa::generate(2048).unwrap();
        let big_e = BigNum::from_slice(&[0x7f; 256]).unwrap();
        let public = Rsa::from_public_components(n_bits.n().to_owned().unwrap(), big_e).unwrap();
        let err = KeyType::of(&PKey::from_rsa(public).unwrap()).unwrap_err();
        assert!(
            err.contains("-bit public exponent") && err.contains(SUPPORTED_KEYS),
            "{err}"
        );
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::*;

    #[test]
    fn compressed_and_uncompressed_points_give_one_spki() {
        // DER SPKI headers for a 33-byte compressed point on each curve.
        let curves = [
            (
                Nid::X9_62_PRIME256V1,
                "3039301306072a8648ce3d020106082a8648ce3d030107032200",
            ),
            (Nid::SECP256K1, "3036301006072a8648ce3d020106052b8104000a032200"),
        ];
        for (nid, header) in curves {
            let group = EcGroup::from_curve_name(nid).unwrap();
            let ec = EcKey::generate(&group).unwrap();
            let plain = PublicNodeKey::from_key(&PKey::from_ec_key(ec.clone()).unwrap()).unwrap();
            let mut ctx = BigNumContext::new().unwrap();
            let point = ec
                .public_key()
                .to_bytes(&group, PointConversionForm::COMPRESSED, &mut ctx);
            let header: Vec<u8> = (0..header.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&header[i..i + 2], 16).unwrap())
                .collect();
            let stored = [header, point.unwrap()].concat();
            let loaded = PKey::public_key_from_der(&stored).unwrap();
            assert_eq!(
                loaded.public_key_to_der().unwrap(),
                stored,
                "OpenSSL keeps the compressed form"
            );
            assert_eq!(PublicNodeKey::from_public(loaded).unwrap().spki_der(), plain.spki_der());
            // The SPKI as given (a certificate's) is kept byte for byte.
            assert_eq!(PublicNodeKey::from_spki_der(&stored).unwrap().spki_der(), stored);
            let canonical = PublicNodeKey::from_spki_der(&stored).unwrap().canonical().unwrap();
            assert_eq!(canonical.spki_der(), plain.spki_der());
        }
    }
}
