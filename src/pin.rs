//! The node-ID check, run inside OpenSSL's certificate verification so that a peer with the
//! wrong identity is refused before the handshake completes.

use std::sync::{Arc, Mutex, PoisonError};

use openssl::ssl::{SslRef, SslVerifyMode};
use openssl::x509::{X509StoreContextRef, X509VerifyResult};

use crate::engine::VerificationFailure;
use crate::identity::{inspect_peer_certificate, CertificateProblem};

/// The pinned node ID and what the last verification concluded.
#[derive(Debug)]
pub(crate) struct Pin {
    expected: Option<String>,
    verdict: Mutex<Option<Result<String, VerificationFailure>>>,
}

impl Pin {
    /// `expected` is a normalised (lowercase) node ID, or `None` to accept any valid certificate.
    pub(crate) fn new(expected: Option<String>) -> Self {
        Self {
            expected,
            verdict: Mutex::new(None),
        }
    }

    /// The peer's node ID once its certificate passed, or why it did not.
    pub(crate) fn verdict(&self) -> Option<Result<String, VerificationFailure>> {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Judges a leaf certificate given as DER.
    pub(crate) fn judge(&self, der: &[u8]) -> Result<String, VerificationFailure> {
        let peer = inspect_peer_certificate(der).map_err(VerificationFailure::Certificate)?;
        match &self.expected {
            Some(expected) if *expected != peer.node_id => Err(VerificationFailure::NodeIdMismatch {
                expected: expected.clone(),
                actual: peer.node_id,
            }),
            _ => Ok(peer.node_id),
        }
    }

    fn record(&self, verdict: Result<String, VerificationFailure>) -> bool {
        let ok = verdict.is_ok();
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
        ok
    }

    fn verify(&self, ctx: &mut X509StoreContextRef) -> bool {
        // Chain errors are irrelevant: trust comes from the pinned key, not from issuers.
        // The decision is made on the leaf, which OpenSSL always visits at depth 0.
        if ctx.error_depth() != 0 {
            return true;
        }
        let verdict = match ctx.current_cert().map(|c| c.to_der()) {
            Some(Ok(der)) => self.judge(&der),
            Some(Err(_)) => Err(VerificationFailure::Certificate(CertificateProblem::Malformed)),
            None => Err(VerificationFailure::NoCertificate),
        };
        let alert = verdict.as_ref().err().map(refusal_reason);
        let ok = self.record(verdict);
        if let Some(reason) = alert {
            ctx.set_error(reason);
        }
        ok
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
