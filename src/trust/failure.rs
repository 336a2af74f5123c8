//! Why a peer's certificate is refused: the failure kinds the engine reports.

use std::fmt;

/// Why a peer certificate is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// DER did not parse as an X.509 certificate.
    Malformed,
    /// Public key is not ECDSA P-256 (names the algorithm or curve found, e.g. "rsaEncryption"
    /// or "EC secp384r1").
    WrongKeyType(String),
    /// Self-signature does not verify with the certificate's own key.
    BadSelfSignature,
    /// The libp2p key extension is present but does not endorse the certificate key with a
    /// supported node key (says why).
    InvalidExtension(String),
}

/// Why the peer's certificate was rejected during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationFailure {
    /// The peer presented no certificate.
    NoCertificate,
    /// The certificate is valid but belongs to another node.
    NodeIdMismatch {
        /// The pinned node ID.
        expected: String,
        /// The node ID the peer presented.
        actual: String,
    },
    /// The certificate itself is unacceptable.
    Certificate(CertificateProblem),
    /// The local node-ID scheme could not name the peer's key (an application scheme raised
    /// or returned something other than a string; the text says which).
    Scheme(String),
    /// The certificate is valid but the allow policy refused its node ID.
    NotAllowed {
        /// The node ID the peer presented.
        actual: String,
    },
    /// The allow policy could not decide (an application callable raised or returned
    /// something other than a bool; the text says which). The peer is refused.
    Policy(String),
}

impl fmt::Display for VerificationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCertificate => f.write_str("the peer presented no certificate"),
            Self::NodeIdMismatch { expected, actual } => {
                write!(
                    f,
                    "peer node ID mismatch: expected {expected}, the peer presented {actual}"
                )
            }
            Self::Certificate(CertificateProblem::Malformed) => f.write_str("the peer's certificate is malformed"),
            Self::Certificate(CertificateProblem::WrongKeyType(found)) => {
                write!(f, "the peer's certificate key is {found}, not ECDSA P-256")
            }
            Self::Certificate(CertificateProblem::BadSelfSignature) => {
                f.write_str("the peer's certificate signature does not verify with its own key")
            }
            Self::Certificate(CertificateProblem::InvalidExtension(why)) => {
                write!(f, "the peer's certificate has an invalid libp2p key extension: {why}")
            }
            Self::Scheme(why) | Self::Policy(why) => f.write_str(why),
            Self::NotAllowed { actual } => write!(f, "peer node ID {actual} was refused by the allow policy"),
        }
    }
}
