//! Who the peer is, decided inside the handshake: the key its certificate carries, the node ID
//! that key has, and the verdict OpenSSL acts on. Nothing here knows about TLS policy or the
//! engine; the engine asks `verifier` for a verdict on each certificate.
//!
//! - `allow`: the allow policy an endpoint's `accept()` asks about each peer's node ID.
//! - `certificate`: the node key a certificate carries (libp2p extension or its own key).
//! - `libp2p`: the libp2p extension, public-key protobuf and peer IDs.
//! - `node_key`: supported node key types, canonical SPKI, signature checks.
//! - `scheme`: node-ID schemes (`sha256`, `libp2p`, or the application's).
//! - `verifier`: the verdict inside OpenSSL's verify callback and the alert it sends.

mod allow;
mod certificate;
mod failure;
pub mod libp2p;
mod node_key;
mod scheme;
pub(crate) mod verifier;

pub use allow::{AllowList, AllowPolicy};
pub use certificate::{certificate_node_key, inspect_peer_certificate, inspect_peer_key, CertificateKeyError};
pub use failure::{CertificateProblem, VerificationFailure};
pub use node_key::{KeyType, PublicNodeKey, RSA_BITS, SUPPORTED_KEYS};
pub use scheme::{parse_node_id, scheme_named, Libp2p, NodeIdScheme, Sha256};
pub use verifier::{Accept, PeerIdentity, Pin};

/// Lowercase hex SHA-256; the single definition of how node IDs are spelled.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}
