//! The node-ID check, run inside OpenSSL's certificate verification so that a peer with the
//! wrong identity is refused before the handshake completes.

use std::sync::{Arc, Mutex, PoisonError};

use openssl::ssl::{SslRef, SslVerifyMode};
use openssl::x509::{X509StoreContextRef, X509VerifyResult};

use super::{inspect_peer_certificate, inspect_peer_key, CertificateProblem, VerificationFailure};

/// The pinned node ID and what the last verification concluded.
#[derive(Debug)]
pub(crate) struct Pin {
    expected: Option<String>,
    /// The certificate last judged (DER) and the verdict on it.
    verdict: Mutex<Option<(Vec<u8>, Verdict)>>,
}

/// The peer's node ID, or why its certificate was refused.
type Verdict = Result<String, VerificationFailure>;

impl Pin {
    /// `expected` is a normalised (lowercase) node ID, or `None` to accept any valid certificate.
    pub(crate) fn new(expected: Option<String>) -> Self {
        Self {
            expected,
            verdict: Mutex::new(None),
        }
    }

    /// The peer's node ID once its certificate passed, or why it did not.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        let judged = self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
        judged.as_ref().map(|(_, verdict)| verdict.clone())
    }

    /// The verdict on a leaf certificate given as DER. OpenSSL calls the verify callback once
    /// per chain error and the engine checks again once connected; judging (a parse and an
    /// ECDSA verification, ~0.15 ms) is done once per certificate.
    pub(crate) fn verdict_for(&self, der: &[u8]) -> Verdict {
        let mut judged = self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
        match judged.as_ref() {
            Some((seen, verdict)) if seen.as_slice() == der => verdict.clone(),
            _ => {
                let verdict = self.judge(der);
                *judged = Some((der.to_vec(), verdict.clone()));
                verdict
            }
        }
    }

    /// Judges a leaf certificate given as DER.
    ///
    /// A pinned key needs no self-signature check: the handshake makes the peer sign with that
    /// key (ServerKeyExchange, CertificateVerify), which OpenSSL verifies against the
    /// certificate, and nothing else in the certificate is trusted. The self-signature is
    /// checked when the node ID differs, to tell a damaged certificate (tried again, see
    /// `engine::restart`) from another node's (final), and when nothing is pinned.
    fn judge(&self, der: &[u8]) -> Verdict {
        let failure = VerificationFailure::Certificate;
        match &self.expected {
            Some(expected) => {
                let peer = inspect_peer_key(der).map_err(failure)?;
                if peer.node_id == *expected {
                    return Ok(peer.node_id);
                }
                let peer = inspect_peer_certificate(der).map_err(failure)?;
                Err(VerificationFailure::NodeIdMismatch {
                    expected: expected.clone(),
                    actual: peer.node_id,
                })
            }
            None => inspect_peer_certificate(der).map(|peer| peer.node_id).map_err(failure),
        }
    }

    fn verify(&self, ctx: &mut X509StoreContextRef) -> bool {
        // Chain errors are irrelevant: trust comes from the pinned key, not from issuers.
        // The decision is made on the leaf, which OpenSSL always visits at depth 0.
        if ctx.error_depth() != 0 {
            return true;
        }
        let verdict = match ctx.current_cert().map(|c| c.to_der()) {
            Some(Ok(der)) => self.verdict_for(&der),
            unreadable => {
                let failure = match unreadable {
                    Some(_) => VerificationFailure::Certificate(CertificateProblem::Malformed),
                    None => VerificationFailure::NoCertificate,
                };
                // Kept for `verdict()`, which the engine reads to explain the abort.
                *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some((Vec::new(), Err(failure.clone())));
                Err(failure)
            }
        };
        match verdict {
            Ok(_) => true,
            Err(failure) => {
                ctx.set_error(refusal_reason(&failure));
                false
            }
        }
    }
}

/// The verification error OpenSSL turns into the alert the peer receives. The peer decides
/// from the alert whether to try again (see `engine::restart`): `unknown_ca` (48) for a valid
/// certificate that is not the pinned one and `unsupported_certificate` (43) for a wrong key
/// type say "not you", while `decrypt_error` (51) for a damaged certificate reads as noise.
fn refusal_reason(failure: &VerificationFailure) -> X509VerifyResult {
    let code = match failure {
        VerificationFailure::NodeIdMismatch { .. } | VerificationFailure::NoCertificate => {
            openssl_sys::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        }
        VerificationFailure::Certificate(CertificateProblem::WrongKeyType(_)) => {
            openssl_sys::X509_V_ERR_INVALID_PURPOSE
        }
        VerificationFailure::Certificate(CertificateProblem::Malformed | CertificateProblem::BadSelfSignature) => {
            openssl_sys::X509_V_ERR_CERT_SIGNATURE_FAILURE
        }
    };
    // SAFETY: `code` is one of OpenSSL's own X509_V_ERR constants; the value is only stored.
    #[allow(unsafe_code)]
    unsafe {
        X509VerifyResult::from_raw(code)
    }
}

/// Requires a peer certificate on `ssl` and checks it with `pin` during the handshake.
pub(crate) fn install(ssl: &mut SslRef, pin: Arc<Pin>) {
    ssl.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        move |_preverified, ctx| pin.verify(ctx),
    );
}
