//! libp2p's encodings (libp2p/specs `tls/tls.md`, `peer-ids/peer-ids.md`): the `PublicKey`
//! protobuf, the `SignedKey` certificate extension and base58btc peer IDs.
//!
//! The protobuf has two fields, so it is written and read here rather than through a protobuf
//! crate: field 1 (`Type`, varint, tag byte 0x08) then field 2 (`Data`, bytes, tag byte 0x12),
//! in that order with minimal varints, which is the deterministic encoding peer IDs need.

use der::asn1::OctetString;
use der::{Decode, Encode, Sequence};

use super::node_key::{KeyType, PublicNodeKey};

/// The extension's OID, allocated by IANA to libp2p.
pub const EXTENSION_OID: &str = "1.3.6.1.4.1.53594.1.1";
/// What the node key signs, followed by the DER SPKI of the certificate's key.
pub const SIGNATURE_PREFIX: &[u8] = b"libp2p-tls-handshake:";
/// Protobuf-encoded keys up to this size are inlined in the peer ID (identity multihash).
const MAX_INLINE_KEY: usize = 42;
/// Multihash codes.
const IDENTITY: u8 = 0x00;
const SHA2_256: u8 = 0x12;
/// Longest protobuf accepted from a peer: an RSA-8192 SPKI is about 1.1 KB.
const MAX_PUBLIC_KEY: usize = 2048;

/// `SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct SignedKeyDer {
    public_key: OctetString,
    signature: OctetString,
}

/// The extension's content: the node key (protobuf `PublicKey`) and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKey {
    /// Protobuf `PublicKey` bytes.
    pub public_key: Vec<u8>,
    /// The node key's signature over [`SIGNATURE_PREFIX`] ‖ DER SPKI of the certificate key.
    pub signature: Vec<u8>,
}

impl SignedKey {
    /// The DER of the extension value.
    pub fn to_der(&self) -> Result<Vec<u8>, String> {
        let octets = |b: &[u8]| OctetString::new(b).map_err(|e| e.to_string());
        let value = SignedKeyDer {
            public_key: octets(&self.public_key)?,
            signature: octets(&self.signature)?,
        };
        value.to_der().map_err(|e| e.to_string())
    }

    /// Parses the extension value (strict DER, nothing after it).
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let value = SignedKeyDer::from_der(der).map_err(|e| format!("SignedKey is not valid DER: {e}"))?;
        Ok(Self {
            public_key: value.public_key.into_bytes(),
            signature: value.signature.into_bytes(),
        })
    }
}

/// The message a node key signs to endorse a certificate key given as DER SPKI.
pub fn signed_message(certificate_spki: &[u8]) -> Vec<u8> {
    [SIGNATURE_PREFIX, certificate_spki].concat()
}

fn type_code(key_type: KeyType) -> u8 {
    match key_type {
        KeyType::Rsa => 0,
        KeyType::Ed25519 => 1,
        KeyType::Secp256k1 => 2,
        KeyType::P256 => 3,
    }
}

/// The protobuf `PublicKey { Type, Data }` for `key`.
pub fn encode_public_key(key: &PublicNodeKey) -> Result<Vec<u8>, String> {
    let data = key.libp2p_data()?;
    let mut out = vec![0x08, type_code(key.key_type()), 0x12];
    put_varint(&mut out, data.len() as u64);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Reads a protobuf `PublicKey`: both fields exactly once, in any order, nothing else.
pub fn decode_public_key(bytes: &[u8]) -> Result<PublicNodeKey, String> {
    if bytes.len() > MAX_PUBLIC_KEY {
        return Err(format!(
            "the PublicKey protobuf is {} bytes, more than any supported key",
            bytes.len()
        ));
    }
    let malformed = || "the PublicKey protobuf is malformed".to_owned();
    let (mut key_type, mut data) = (None, None);
    let mut rest = bytes;
    while !rest.is_empty() {
        let tag = take_varint(&mut rest).ok_or_else(malformed)?;
        match tag {
            0x08 if key_type.is_none() => key_type = Some(take_varint(&mut rest).ok_or_else(malformed)?),
            0x12 if data.is_none() => {
                let len = usize::try_from(take_varint(&mut rest).ok_or_else(malformed)?).map_err(|_| malformed())?;
                if len > rest.len() {
                    return Err(malformed());
                }
                let (field, after) = rest.split_at(len);
                data = Some(field);
                rest = after;
            }
            _ => return Err(malformed()),
        }
    }
    let (Some(code), Some(data)) = (key_type, data) else {
        return Err(malformed());
    };
    let key_type = (KeyType::ALL.into_iter().find(|t| u64::from(type_code(*t)) == code))
        .ok_or_else(|| format!("the PublicKey protobuf names unknown key type {code}"))?;
    PublicNodeKey::from_libp2p_data(key_type, data)
}

/// The base58btc peer ID of `key`: identity multihash of the protobuf when it is at most 42
/// bytes, else its SHA-256 multihash.
pub fn peer_id(key: &PublicNodeKey) -> Result<String, String> {
    let protobuf = encode_public_key(key)?;
    let multihash = if protobuf.len() <= MAX_INLINE_KEY {
        // The length fits one varint byte.
        [&[IDENTITY, protobuf.len() as u8][..], &protobuf].concat()
    } else {
        [&[SHA2_256, 32][..], &openssl::sha::sha256(&protobuf)].concat()
    };
    Ok(bs58::encode(multihash).into_string())
}

/// Checks that `text` is a base58btc peer ID (a SHA-256 multihash, or an identity multihash
/// of a supported key) and returns it unchanged.
pub fn parse_peer_id(text: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        let shown: String = text.chars().take(80).collect();
        format!("node ID must be a libp2p peer ID (base58btc multihash, e.g. 12D3KooW...), got {shown:?}: {why}")
    };
    if text.len() > 200 {
        return Err(invalid("too long"));
    }
    let bytes = bs58::decode(text).into_vec().map_err(|_| invalid("not base58btc"))?;
    match bytes.as_slice() {
        [SHA2_256, 32, digest @ ..] if digest.len() == 32 => Ok(text.to_owned()),
        [IDENTITY, len, protobuf @ ..] if usize::from(*len) == protobuf.len() && protobuf.len() <= MAX_INLINE_KEY => {
            decode_public_key(protobuf).map_err(|e| invalid(&e))?;
            Ok(text.to_owned())
        }
        _ => Err(invalid("not an identity or SHA-256 multihash")),
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A minimal varint of at most 10 bytes from the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            // A trailing zero byte would make a second encoding of the same number.
            if i > 0 && b == 0 {
                return None;
            }
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_non_minimal_forms() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX)] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut slice = &out[..];
            assert_eq!(take_varint(&mut slice), Some(value));
            assert!(slice.is_empty());
        }
        for bad in [&[0x80, 0x00][..], &[0x80], &[]] {
            let mut slice = bad;
            assert_eq!(take_varint(&mut slice), None, "{bad:?}");
        }
    }

    #[test]
    fn signed_key_round_trips_and_refuses_garbage() {
        let value = SignedKey {
            public_key: vec![8, 1, 0x12, 0],
            signature: vec![7; 64],
        };
        let der = value.to_der().unwrap();
        assert_eq!(der[0], 0x30, "a SEQUENCE");
        assert_eq!(SignedKey::from_der(&der).unwrap(), value);
        let mut trailing = der.clone();
        trailing.push(0);
        for bad in [
            &b""[..],
            b"\x30\x00",
            &der[..der.len() - 1],
            &trailing,
            b"\x04\x00\x04\x00",
        ] {
            assert!(SignedKey::from_der(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_key_protobuf_refuses_malformed_input() {
        let ed = PublicNodeKey::from_key(&openssl::pkey::PKey::generate_ed25519().unwrap()).unwrap();
        let good = encode_public_key(&ed).unwrap();
        assert_eq!(good.len(), 36);
        assert_eq!(&good[..4], &[0x08, 0x01, 0x12, 0x20]);
        assert_eq!(decode_public_key(&good).unwrap(), ed);
        // Fields in the other order are the same message.
        let swapped = [&good[2..], &good[..2]].concat();
        assert_eq!(decode_public_key(&swapped).unwrap(), ed);
        let bad: [&[u8]; 6] = [
            &good[..35],                              // Data cut short
            &[&good[..], &good[..2]].concat(),        // Type twice
            &good[2..],                               // no Type
            &[0x08, 0x09, 0x12, 0x20, 0, 0],          // unknown type, short key
            &[&good[..], &[0x18, 0x01][..]].concat(), // unknown field 3
            &[0x08, 0x02, 0x12, 0x21],                // secp256k1 with no point
        ];
        for b in bad {
            assert!(decode_public_key(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn peer_ids_parse_and_refuse() {
        for ok in [
            "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv",
            "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE",
            "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs",
        ] {
            assert_eq!(parse_peer_id(ok).unwrap(), ok);
        }
        let hex = "ab".repeat(32);
        for bad in [
            "",
            "0OIl",
            "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9u",
            hex.as_str(),
        ] {
            let e = parse_peer_id(bad).unwrap_err();
            assert!(e.starts_with("node ID must be a libp2p peer ID"), "{e}");
        }
    }
}
