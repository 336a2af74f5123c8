//! Node-ID schemes: how a node key becomes the string applications pin. Both ends of a
//! connection use the same scheme (the local one judges the peer's key).

use std::fmt;
use std::sync::Arc;

use super::libp2p;
use super::node_key::PublicNodeKey;
use super::sha256_hex;

/// Turns a node key into a node ID, and checks IDs typed by users.
///
/// `node_id` runs inside the handshake, on whichever thread drives it, once per peer
/// certificate; an error fails that handshake with a `PeerVerification` failure whose text is
/// the error.
pub trait NodeIdScheme: Send + Sync {
    /// "sha256", "libp2p", or what an application scheme calls itself.
    fn name(&self) -> &str;

    /// The node ID of `key`.
    fn node_id(&self, key: &PublicNodeKey) -> Result<String, String>;

    /// `text` as a node ID this scheme can produce, normalised for comparison, or why not.
    fn parse(&self, text: &str) -> Result<String, String>;

    /// The node ID of a certificate key of no supported type, given as DER SPKI, if this
    /// scheme can name one. Only `node_id_from_certificate` asks: it named any certificate's
    /// key before node key types were checked, and pinning such an ID still gets a typed
    /// refusal in the handshake.
    fn unsupported_key_id(&self, spki_der: &[u8]) -> Option<String> {
        let _ = spki_der;
        None
    }

    /// Whether a P-256 node key should still sit behind an ephemeral certificate with the
    /// libp2p extension (libp2p: the certificate key SHOULD NOT be the host key).
    fn separate_certificate_key(&self) -> bool {
        false
    }
}

impl fmt::Debug for dyn NodeIdScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeIdScheme({})", self.name())
    }
}

/// The default: lowercase hex SHA-256 of the node key's DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256;

impl NodeIdScheme for Sha256 {
    fn name(&self) -> &str {
        "sha256"
    }

    fn node_id(&self, key: &PublicNodeKey) -> Result<String, String> {
        Ok(sha256_hex(key.spki_der()))
    }

    fn parse(&self, text: &str) -> Result<String, String> {
        parse_node_id(text)
    }

    fn unsupported_key_id(&self, spki_der: &[u8]) -> Option<String> {
        Some(sha256_hex(spki_der))
    }
}

/// libp2p peer IDs (base58btc multihash of the protobuf public key).
#[derive(Debug, Clone, Copy, Default)]
pub struct Libp2p;

impl NodeIdScheme for Libp2p {
    fn name(&self) -> &str {
        "libp2p"
    }

    fn node_id(&self, key: &PublicNodeKey) -> Result<String, String> {
        libp2p::peer_id(key)
    }

    fn parse(&self, text: &str) -> Result<String, String> {
        libp2p::parse_peer_id(text)
    }

    fn separate_certificate_key(&self) -> bool {
        true
    }
}

/// The built-in scheme called `name`; the error lists them.
pub fn scheme_named(name: &str) -> Result<Arc<dyn NodeIdScheme>, String> {
    match name {
        "sha256" => Ok(Arc::new(Sha256)),
        "libp2p" => Ok(Arc::new(Libp2p)),
        other => Err(format!(
            "unknown node_id_scheme {other:?}: expected 'sha256', 'libp2p' or a callable taking the DER public key"
        )),
    }
}

/// Normalises a user-supplied SHA-256 node ID: exactly 64 hex characters, any case, returned
/// lowercase.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
