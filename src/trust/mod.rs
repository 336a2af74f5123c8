//! Who the peer is, decided inside the handshake: the key its certificate carries, the node ID
//! that key has, and the verdict OpenSSL acts on. Nothing here knows about TLS policy or the
//! engine; the engine asks `verifier` for a verdict on each certificate.

mod certificate;
mod failure;
pub(crate) mod verifier;

pub use certificate::{inspect_peer_certificate, inspect_peer_key, PeerCertificate};
pub use failure::{CertificateProblem, VerificationFailure};

/// Lowercase hex SHA-256; the single definition of how node IDs are spelled.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}
