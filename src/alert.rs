//! The TLS alerts this crate sends and recognises, in one table, and the OpenSSL reason codes
//! the engine acts on.
//!
//! Each alert's row says what the engine does with it: whether a peer sending it refuses who we
//! are (which ends the handshake instead of starting another attempt, see `engine::restart`),
//! whether it may mean the peer rejected our node ID (a hint in the error message), and which
//! X509 verification error makes OpenSSL send it (how `trust::verifier` chooses the alert a
//! refused peer receives). OpenSSL's own errors are recognised by reason *code*, never by their
//! text, so an OpenSSL upgrade that rewords a message cannot change what the engine does.

use std::ffi::c_int;

use openssl::error::ErrorStack;

/// Defines `Alert` and its table from one row per alert.
macro_rules! alerts {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $code:literal, $name:literal,
        refusal: $refusal:literal, identity_hint: $hint:literal, verify_error: $verify:expr;
    )*) => {
        /// A TLS alert (RFC 5246 §7.2, RFC 8446 §6) this crate sends or recognises. Alerts
        /// received with other codes are reported by number only.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Alert {
            $($(#[$doc])* $variant = $code,)*
        }

        impl Alert {
            /// Every alert in the table, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The alert with this code, if it is in the table.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// Its registered name ("unknown_ca").
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// Whether a peer sends it when it refuses who we are (or gives up), never for
            /// corrupted input: a handshake attempt that ends with it is not tried again.
            pub const fn is_refusal(self) -> bool {
                match self {
                    $(Self::$variant => $refusal,)*
                }
            }

            /// Whether a peer that pins node IDs may send it on rejecting ours (the error
            /// message then says so).
            pub const fn may_reject_identity(self) -> bool {
                match self {
                    $(Self::$variant => $hint,)*
                }
            }

            /// The X509 verification error that makes OpenSSL send this alert from the verify
            /// callback (OpenSSL's `ssl_verify_alarm_type`), for the alerts we send that way.
            pub(crate) const fn verify_error(self) -> Option<c_int> {
                match self {
                    $(Self::$variant => $verify,)*
                }
            }
        }
    };
}

alerts! {
    /// The sender closes the session (or, during a handshake, gave up).
    CloseNotify = 0, "close_notify",
        refusal: true, identity_hint: false, verify_error: None;
    /// A message arrived out of order.
    UnexpectedMessage = 10, "unexpected_message",
        refusal: false, identity_hint: false, verify_error: None;
    /// A record failed its integrity check.
    BadRecordMac = 20, "bad_record_mac",
        refusal: false, identity_hint: false, verify_error: None;
    /// No acceptable parameters (or a generic refusal).
    HandshakeFailure = 40, "handshake_failure",
        refusal: false, identity_hint: true, verify_error: None;
    /// A certificate was corrupt or its signatures did not verify.
    BadCertificate = 42, "bad_certificate",
        refusal: false, identity_hint: true, verify_error: None;
    /// A certificate of an unsupported type: we send it for a wrong key type or an invalid
    /// libp2p key extension ("not you").
    UnsupportedCertificate = 43, "unsupported_certificate",
        refusal: true, identity_hint: true, verify_error: Some(openssl_sys::X509_V_ERR_INVALID_PURPOSE);
    /// A certificate was revoked.
    CertificateRevoked = 44, "certificate_revoked",
        refusal: false, identity_hint: false, verify_error: None;
    /// A certificate has expired.
    CertificateExpired = 45, "certificate_expired",
        refusal: false, identity_hint: false, verify_error: None;
    /// Some other problem with a certificate.
    CertificateUnknown = 46, "certificate_unknown",
        refusal: false, identity_hint: true, verify_error: None;
    /// A field was out of range.
    IllegalParameter = 47, "illegal_parameter",
        refusal: false, identity_hint: false, verify_error: None;
    /// A valid certificate that is not trusted: we send it for another node ID than the pinned
    /// one, or no certificate ("not the key I trust").
    UnknownCa = 48, "unknown_ca",
        refusal: true, identity_hint: true, verify_error: Some(openssl_sys::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    /// The peer's access control refused us.
    AccessDenied = 49, "access_denied",
        refusal: true, identity_hint: false, verify_error: None;
    /// A message could not be decoded.
    DecodeError = 50, "decode_error",
        refusal: false, identity_hint: false, verify_error: None;
    /// A signature or key exchange failed to verify: we send it for a damaged certificate,
    /// which the peer reads as noise and tries again.
    DecryptError = 51, "decrypt_error",
        refusal: false, identity_hint: false, verify_error: Some(openssl_sys::X509_V_ERR_CERT_SIGNATURE_FAILURE);
    /// No protocol version in common.
    ProtocolVersion = 70, "protocol_version",
        refusal: false, identity_hint: false, verify_error: None;
    /// The offered ciphers are too weak for the peer.
    InsufficientSecurity = 71, "insufficient_security",
        refusal: false, identity_hint: false, verify_error: None;
    /// A local fault: we send it when our own node-ID scheme fails.
    InternalError = 80, "internal_error",
        refusal: false, identity_hint: false, verify_error: Some(openssl_sys::X509_V_ERR_OUT_OF_MEM);
    /// A fallback the peer does not allow.
    InappropriateFallback = 86, "inappropriate_fallback",
        refusal: false, identity_hint: false, verify_error: None;
    /// The sender cancelled the handshake (gave up).
    UserCanceled = 90, "user_canceled",
        refusal: true, identity_hint: false, verify_error: None;
    /// Renegotiation refused.
    NoRenegotiation = 100, "no_renegotiation",
        refusal: false, identity_hint: false, verify_error: None;
    /// A required extension was missing.
    MissingExtension = 109, "missing_extension",
        refusal: false, identity_hint: false, verify_error: None;
    /// An extension that was not offered.
    UnsupportedExtension = 110, "unsupported_extension",
        refusal: false, identity_hint: false, verify_error: None;
    /// No application protocol in common (ALPN, RFC 7301): a server sends it when one side
    /// uses data channels ("webrtc") and the other does not (`policy`).
    NoApplicationProtocol = 120, "no_application_protocol",
        refusal: true, identity_hint: false, verify_error: None;
}

impl Alert {
    /// Its code on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// The registered name of a TLS alert code, for messages ("unknown alert" outside the table).
pub fn alert_name(code: u8) -> &'static str {
    match Alert::from_code(code) {
        Some(alert) => alert.name(),
        None => "unknown alert",
    }
}

/// OpenSSL's library code for its SSL errors (`ERR_LIB_SSL`; openssl-sys does not export it).
const ERR_LIB_SSL: c_int = 20;
/// `SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE` (sslerr.h; openssl-sys does not export it).
const SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: c_int = 199;
/// `SSL_R_NO_APPLICATION_PROTOCOL` (sslerr.h; openssl-sys does not export it).
const SSL_R_NO_APPLICATION_PROTOCOL: c_int = 235;
/// `SSL_R_READ_TIMEOUT_EXPIRED` (sslerr.h; openssl-sys does not export it).
const SSL_R_READ_TIMEOUT_EXPIRED: c_int = 312;

/// What the first error OpenSSL reported means to the engine, when it is one it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenSslReason {
    /// OpenSSL's own DTLS retry limit ran out.
    ReadTimeoutExpired,
    /// The peer sent no certificate; OpenSSL refuses it before our verify callback runs.
    PeerDidNotReturnACertificate,
    /// Our ALPN callback refused the client's offer (data channels on one side only).
    NoApplicationProtocol,
}

impl OpenSslReason {
    /// The reason for an error stack's first error, judged by library and reason code.
    pub(crate) fn of(errors: &ErrorStack) -> Option<Self> {
        let first = errors.errors().first()?;
        if first.library_code() != ERR_LIB_SSL {
            return None;
        }
        match first.reason_code() {
            SSL_R_READ_TIMEOUT_EXPIRED => Some(Self::ReadTimeoutExpired),
            SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE => Some(Self::PeerDidNotReturnACertificate),
            SSL_R_NO_APPLICATION_PROTOCOL => Some(Self::NoApplicationProtocol),
            _ => None,
        }
    }
}

/// The code of an alert the peer sent, if the error stack reports one (OpenSSL reports a
/// received alert as reason `SSL_AD_REASON_OFFSET` + the alert code).
pub(crate) fn received_alert(errors: &ErrorStack) -> Option<u8> {
    errors.errors().iter().find_map(|err| {
        let code = err.reason_code().checked_sub(openssl_sys::SSL_AD_REASON_OFFSET)?;
        u8::try_from(code).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &alert in Alert::ALL {
            assert_eq!(Alert::from_code(alert.code()), Some(alert));
            assert_eq!(alert_name(alert.code()), alert.name());
            assert!(seen.insert(alert.name()), "{} twice", alert.name());
        }
        assert_eq!(Alert::ALL.len(), 23);
        assert_eq!(alert_name(48), "unknown_ca");
        assert_eq!(alert_name(255), "unknown alert");
        assert_eq!(Alert::from_code(41), None);
    }

    #[test]
    fn refusals_are_the_identity_and_give_up_alerts() {
        let refusals: Vec<u8> = Alert::ALL.iter().filter(|a| a.is_refusal()).map(|a| a.code()).collect();
        assert_eq!(refusals, [0, 43, 48, 49, 90, 120]);
        let hints: Vec<u8> = Alert::ALL
            .iter()
            .filter(|a| a.may_reject_identity())
            .map(|a| a.code())
            .collect();
        assert_eq!(hints, [40, 42, 43, 46, 48]);
    }

    #[test]
    fn verify_errors_are_the_ones_openssl_turns_into_each_alert() {
        // OpenSSL's `ssl_verify_alarm_type` table (ssl/statem/statem_lib.c).
        let sent: Vec<(u8, c_int)> = Alert::ALL
            .iter()
            .filter_map(|a| Some((a.code(), a.verify_error()?)))
            .collect();
        assert_eq!(
            sent,
            [
                (43, openssl_sys::X509_V_ERR_INVALID_PURPOSE),
                (48, openssl_sys::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT),
                (51, openssl_sys::X509_V_ERR_CERT_SIGNATURE_FAILURE),
                (80, openssl_sys::X509_V_ERR_OUT_OF_MEM),
            ]
        );
    }

    /// OpenSSL's text for an SSL-library reason code.
    fn reason_text(reason: c_int) -> String {
        // SAFETY: ERR_reason_error_string takes any packed code and returns NULL or a pointer
        // to a static NUL-terminated string, which is copied out at once.
        #[allow(unsafe_code)]
        unsafe {
            openssl_sys::init();
            let text = openssl_sys::ERR_reason_error_string(openssl_sys::ERR_PACK(ERR_LIB_SSL, 0, reason));
            assert!(!text.is_null(), "no text for reason {reason}");
            std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    }

    #[test]
    fn reason_codes_are_the_ones_openssl_names() {
        // The codes are fixed by OpenSSL's ABI; this proves the constants copied from sslerr.h.
        assert_eq!(reason_text(SSL_R_READ_TIMEOUT_EXPIRED), "read timeout expired");
        assert_eq!(
            reason_text(SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE),
            "peer did not return a certificate"
        );
    }
}
