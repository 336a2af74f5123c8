//! The node-ID check, run inside OpenSSL's certificate verification so that a peer with the
//! wrong identity is refused before the handshake completes.

use std::sync::{Arc, Mutex, PoisonError};

use openssl::ssl::{SslRef, SslVerifyMode};
use openssl::x509::{X509StoreContextRef, X509VerifyResult};

use super::certificate::check_self_signature;
use super::{
    inspect_peer_certificate, inspect_peer_key, AllowPolicy, CertificateProblem, NodeIdScheme, VerificationFailure,
};
use crate::alert::Alert;

/// Whom a connection accepts, judged by the peer's node ID under the local scheme.
#[derive(Debug, Clone)]
pub enum Accept {
    /// Only this node ID (normalised by the scheme's `parse`).
    Node(String),
    /// Any peer with a valid certificate.
    Any,
    /// Any peer with a valid certificate whose node ID the policy allows.
    Allowed(Arc<dyn AllowPolicy>),
}

/// Whom a connection accepts, and the local scheme that names the peer's key.
#[derive(Debug, Clone)]
pub struct Pin {
    accept: Accept,
    scheme: Arc<dyn NodeIdScheme>,
}

impl Pin {
    /// `expected` must already be normalised with `scheme.parse` (`None` accepts any valid
    /// certificate).
    pub fn new(expected: Option<String>, scheme: Arc<dyn NodeIdScheme>) -> Self {
        let accept = match expected {
            Some(node_id) => Accept::Node(node_id),
            None => Accept::Any,
        };
        Self::accepting(accept, scheme)
    }

    /// Accepts the peers `policy` allows (an endpoint's `accept()`).
    pub fn allowing(policy: Arc<dyn AllowPolicy>, scheme: Arc<dyn NodeIdScheme>) -> Self {
        Self::accepting(Accept::Allowed(policy), scheme)
    }

    /// Accepts whom `accept` says; a node ID in it must be normalised with `scheme.parse`.
    pub fn accepting(accept: Accept, scheme: Arc<dyn NodeIdScheme>) -> Self {
        Self { accept, scheme }
    }

    /// Whom it accepts.
    pub fn accept(&self) -> &Accept {
        &self.accept
    }

    /// The same scheme, pinned to one node ID: a new handshake that may replace a session
    /// (a restarted peer) must come from the node already verified, whoever else the policy
    /// lets in.
    pub fn only(&self, node_id: &str) -> Self {
        Self::accepting(Accept::Node(node_id.to_owned()), self.scheme.clone())
    }
}

/// What verification found out about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Its node ID under the local scheme.
    pub node_id: String,
    /// DER SubjectPublicKeyInfo of its node key.
    pub public_key_der: Vec<u8>,
}

/// One handshake attempt's verification: the pin and what the last check concluded.
#[derive(Debug)]
pub(crate) struct Verifier {
    pin: Pin,
    /// The certificate last judged (DER) and the verdict on it.
    verdict: Mutex<Option<(Vec<u8>, Verdict)>>,
}

/// The peer's identity, or why its certificate was refused.
type Verdict = Result<PeerIdentity, VerificationFailure>;

impl Verifier {
    pub(crate) fn new(pin: Pin) -> Self {
        Self {
            pin,
            verdict: Mutex::new(None),
        }
    }

    /// The peer's identity once its certificate passed, or why it did not.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        let judged = self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
        judged.as_ref().map(|(_, verdict)| verdict.clone())
    }

    /// The verdict on a leaf certificate given as DER. OpenSSL calls the verify callback once
    /// per chain error and the engine checks again once connected; judging (a parse, the
    /// extension's signature if there is one, and the scheme) is done once per certificate.
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
    /// A pinned key needs no self-signature check: the handshake makes the peer sign with the
    /// certificate key (ServerKeyExchange, CertificateVerify), which OpenSSL verifies, and the
    /// node key either is that key or endorses it through the extension's signature, which is
    /// always verified. Nothing else in the certificate (its CN, say) is trusted. The same
    /// holds for a node ID the allow policy lets in. The self-signature is checked when the
    /// node ID is refused (another one than pinned, or one the policy refuses or cannot
    /// judge), to tell a damaged certificate (tried again, see `engine::restart`) from another
    /// node's (final), and when anyone is accepted. The scheme and the policy run once per
    /// certificate (a handshake sees one).
    fn judge(&self, der: &[u8]) -> Verdict {
        let failure = VerificationFailure::Certificate;
        let key = match &self.pin.accept {
            Accept::Node(_) | Accept::Allowed(_) => inspect_peer_key(der),
            Accept::Any => inspect_peer_certificate(der),
        }
        .map_err(failure)?;
        let node_id = match self.pin.scheme.node_id(&key) {
            Ok(node_id) => node_id,
            Err(why) => {
                // A key damaged in transit is noise even if the scheme chokes on it.
                check_self_signature(der).map_err(failure)?;
                return Err(VerificationFailure::Scheme(why));
            }
        };
        let refusal = match &self.pin.accept {
            Accept::Node(expected) if *expected != node_id => Some(VerificationFailure::NodeIdMismatch {
                expected: expected.clone(),
                actual: node_id.clone(),
            }),
            Accept::Node(_) | Accept::Any => None,
            Accept::Allowed(policy) => match policy.allows(&node_id) {
                Ok(true) => None,
                Ok(false) => Some(VerificationFailure::NotAllowed {
                    actual: node_id.clone(),
                }),
                Err(why) => Some(VerificationFailure::Policy(why)),
            },
        };
        if let Some(refusal) = refusal {
            check_self_signature(der).map_err(failure)?;
            return Err(refusal);
        }
        Ok(PeerIdentity {
            node_id,
            public_key_der: key.spki_der().to_vec(),
        })
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

/// The alert the peer receives when its certificate is refused. The peer decides from the
/// alert whether to try again (see `engine::restart`): `unknown_ca` for a valid certificate that
/// is not the pinned one (or none) and `unsupported_certificate` for a wrong key type or an
/// invalid key extension say "not you", while `decrypt_error` for a damaged certificate reads as
/// noise. A failing local scheme sends `internal_error`: the fault is ours, and the peer's retry
/// goes unanswered because this side's failure is final. A peer the allow policy refuses, or
/// cannot judge, gets a pin mismatch's `unknown_ca`: to the peer both mean "not you", and it
/// stops at once instead of retrying into a refusal that is final here.
fn refusal_alert(failure: &VerificationFailure) -> Alert {
    match failure {
        VerificationFailure::NodeIdMismatch { .. }
        | VerificationFailure::NoCertificate
        | VerificationFailure::NotAllowed { .. }
        | VerificationFailure::Policy(_) => Alert::UnknownCa,
        VerificationFailure::Certificate(
            CertificateProblem::WrongKeyType(_) | CertificateProblem::InvalidExtension(_),
        ) => Alert::UnsupportedCertificate,
        VerificationFailure::Scheme(_) => Alert::InternalError,
        VerificationFailure::Certificate(CertificateProblem::Malformed | CertificateProblem::BadSelfSignature) => {
            Alert::DecryptError
        }
    }
}

/// The verification error OpenSSL turns into `refusal_alert`'s alert (see `Alert`'s table).
fn refusal_reason(failure: &VerificationFailure) -> X509VerifyResult {
    // Every alert `refusal_alert` picks has a verify error (unit-tested below); were one
    // missing, X509_V_ERR_UNSPECIFIED still refuses the peer, with internal_error.
    let code = refusal_alert(failure)
        .verify_error()
        .unwrap_or(openssl_sys::X509_V_ERR_UNSPECIFIED);
    // SAFETY: `code` is one of OpenSSL's own X509_V_ERR constants; the value is only stored.
    #[allow(unsafe_code)]
    unsafe {
        X509VerifyResult::from_raw(code)
    }
}

/// Requires a peer certificate on `ssl` and checks it with `pin` during the handshake.
pub(crate) fn install(ssl: &mut SslRef, pin: Arc<Verifier>) {
    ssl.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        move |_preverified, ctx| pin.verify(ctx),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_the_verify_error_that_sends_its_alert() {
        let cases = [
            (VerificationFailure::NoCertificate, 48),
            (
                VerificationFailure::NodeIdMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                },
                48,
            ),
            (
                VerificationFailure::Certificate(CertificateProblem::WrongKeyType("rsaEncryption".into())),
                43,
            ),
            (
                VerificationFailure::Certificate(CertificateProblem::InvalidExtension("bad".into())),
                43,
            ),
            (VerificationFailure::Certificate(CertificateProblem::Malformed), 51),
            (
                VerificationFailure::Certificate(CertificateProblem::BadSelfSignature),
                51,
            ),
            (VerificationFailure::Scheme("raised".into()), 80),
            (VerificationFailure::NotAllowed { actual: "b".into() }, 48),
            (VerificationFailure::Policy("allow raised".into()), 48),
        ];
        for (failure, code) in cases {
            let alert = refusal_alert(&failure);
            assert_eq!(alert.code(), code, "{failure:?}");
            let error = alert
                .verify_error()
                .expect("an alert the verifier sends has a verify error");
            assert_eq!(refusal_reason(&failure).as_raw(), error, "{failure:?}");
        }
    }
}
