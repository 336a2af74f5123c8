//! Which failed handshake attempts are worth a fresh attempt within the same deadline.
//!
//! Epoch-0 handshake messages carry no integrity protection until Finished, and OpenSSL aborts
//! an attempt on one bad byte in them (a corrupted certificate, a signature that no longer
//! verifies, a length that does not add up) and on any fatal alert, which anyone able to spoof
//! the peer's address can send. None of that says the peer is the wrong one, so such an attempt
//! is started again from a fresh ClientHello while the handshake deadline allows. What does say
//! something about the peer — a valid certificate with another node ID, an unacceptable key, no
//! certificate, or the peer telling us it refused ours — ends the handshake at once.

use super::output::{HandshakeFailure, VerificationFailure};
use crate::identity::CertificateProblem;

/// Attempts per handshake, the first included; bounds the work spoofed alerts can cause.
pub(super) const MAX_ATTEMPTS: u32 = 12;
/// The same failure this many attempts in a row is a real mismatch (no shared cipher, say),
/// not noise: report it instead of trying until the deadline.
pub(super) const SAME_FAILURE_LIMIT: u32 = 3;
/// A new attempt the peer has not answered after this many initial retransmission periods
/// (1 + 2 + 4: three transmissions of its first flight) means the peer gave up.
pub(super) const ANSWER_PERIODS: u32 = 7;
/// Times our fatal alert is sent again to a peer still sending the abandoned attempt.
pub(super) const ABORT_RESENDS: u32 = 4;

/// Alerts a peer sends when it refuses who we are: `unsupported_certificate` (our key type),
/// `unknown_ca` (our node ID is not the one it pinned, see `pin`), `access_denied`, and
/// `close_notify`/`user_canceled` (it gave up). OpenSSL never sends these for corrupted input.
const REFUSAL_ALERTS: [u8; 5] = [0, 43, 48, 49, 90];

/// Whether an attempt that failed this way may be followed by another.
pub(super) fn is_retryable(failure: &HandshakeFailure) -> bool {
    match failure {
        HandshakeFailure::Timeout | HandshakeFailure::Closed => false,
        // A damaged certificate fails its self-signature or does not parse; a certificate
        // that is intact but names someone else never becomes acceptable by trying again.
        HandshakeFailure::PeerVerification(VerificationFailure::Certificate(
            CertificateProblem::Malformed | CertificateProblem::BadSelfSignature,
        )) => true,
        HandshakeFailure::PeerVerification(_) => false,
        HandshakeFailure::AlertReceived(code) => !REFUSAL_ALERTS.contains(code),
        HandshakeFailure::Protocol(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_refusals_are_final_and_noise_is_retried() {
        let mismatch = VerificationFailure::NodeIdMismatch {
            expected: "a".into(),
            actual: "b".into(),
        };
        assert!(!is_retryable(&HandshakeFailure::PeerVerification(mismatch)));
        assert!(!is_retryable(&HandshakeFailure::PeerVerification(
            VerificationFailure::NoCertificate
        )));
        assert!(!is_retryable(&HandshakeFailure::AlertReceived(48)));
        assert!(!is_retryable(&HandshakeFailure::Timeout));
        assert!(is_retryable(&HandshakeFailure::PeerVerification(
            VerificationFailure::Certificate(CertificateProblem::BadSelfSignature)
        )));
        assert!(is_retryable(&HandshakeFailure::AlertReceived(51)));
        assert!(is_retryable(&HandshakeFailure::Protocol("length mismatch".into())));
    }
}
