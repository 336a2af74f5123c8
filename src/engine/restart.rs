//! Which failed handshake attempts are worth a fresh attempt within the same deadline.
//!
//! Epoch-0 handshake messages carry no integrity protection until Finished, and OpenSSL aborts
//! an attempt on one bad byte in them (a corrupted certificate, a signature that no longer
//! verifies, a length that does not add up) and on any fatal alert, which anyone able to spoof
//! the peer's address can send. None of that says the peer is the wrong one, so such an attempt
//! is started again from a fresh ClientHello while the handshake deadline allows. What does say
//! something about the peer — a valid certificate with another node ID, an unacceptable key, no
//! certificate, or the peer telling us it refused ours — ends the handshake at once.

use std::time::Instant;

use super::output::{HandshakeFailure, VerificationFailure};
use super::phase::{Handshake, Phase};
use super::{records, Engine, Role};
use crate::alert::Alert;
use crate::config::Config;
use crate::trust::CertificateProblem;

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
        // A refusal of who we are (or the peer giving up), see `Alert::is_refusal`.
        HandshakeFailure::AlertReceived(code) => !Alert::from_code(*code).is_some_and(Alert::is_refusal),
        HandshakeFailure::Protocol(_) => true,
    }
}

impl Engine {
    /// An attempt failed: start another one if `restart` allows it, or end the handshake.
    pub(super) fn fail(&mut self, now: Instant, failure: HandshakeFailure) {
        let Phase::Handshaking(handshake) = &self.phase else {
            return self.end_handshake(failure);
        };
        let streak = match &handshake.last_failure {
            Some((last, n)) if *last == failure => n + 1,
            _ => 1,
        };
        let attempt = self.stats.handshake_attempts;
        // An attempt needs at least a couple of retransmission periods to have a chance.
        let time_left = handshake.deadline.saturating_duration_since(now);
        let retry = is_retryable(&failure)
            && attempt < u64::from(MAX_ATTEMPTS)
            && streak < SAME_FAILURE_LIMIT
            && time_left > 2 * self.config.initial_retransmit_timeout;
        if !retry {
            return self.end_handshake(failure);
        }
        match Self::attempt_session(&self.context, self.role, &self.config, &self.expected_node_id) {
            Ok(tls) => {
                let mut old = std::mem::replace(&mut self.tls, tls).stream;
                // The old attempt's fatal alert still goes out, first; it tells the peer to
                // start again too. Anything else it left unsent belongs to a dead attempt.
                let mut abort: Vec<Vec<u8>> = (old.get_mut().take_outgoing().into_iter())
                    .filter(|d| d.first() == Some(&records::ALERT))
                    .collect();
                // Every attempt's session numbers its records from 0, so two attempts' alerts
                // would be byte-identical; a peer drops repeats of an alert it already acted on
                // (see `process`), so each attempt's alert carries the attempt in its number.
                let mut tag = attempt << 32;
                for datagram in &mut abort {
                    records::renumber_epoch_zero(datagram, &mut tag);
                }
                for datagram in &abort {
                    self.tls.stream.get_mut().push_outgoing(datagram.clone());
                }
                self.stats.handshake_attempts += 1;
                if let Phase::Handshaking(handshake) = &mut self.phase {
                    handshake.abort = abort;
                    handshake.abort_resends_left = ABORT_RESENDS;
                    handshake.last_failure = Some((failure, streak));
                    handshake.unanswered_since = Some(now);
                    handshake.next_epoch_zero_record = 0;
                    if let Some(hellos) = &mut handshake.hellos {
                        hellos.abandon_attempt();
                    }
                }
                self.forget_flight();
                if self.role == Role::Client {
                    self.drive_handshake(now);
                }
            }
            Err(e) => self.end_handshake(HandshakeFailure::Protocol(e.to_string())),
        }
    }

    /// The peer missed our alert and still sends the old attempt: tell it again (bounded).
    pub(super) fn repeat_abort(&mut self) {
        self.stats.dropped_stale_handshake += 1;
        let Phase::Handshaking(handshake) = &mut self.phase else {
            return;
        };
        if handshake.abort_resends_left == 0 {
            return;
        }
        handshake.abort_resends_left -= 1;
        for datagram in &handshake.abort {
            self.tls.stream.get_mut().push_outgoing(datagram.clone());
        }
    }

    /// Whether a server lets `datagram` into its handshake: anything but a ClientHello, the
    /// first ClientHello of an attempt, and copies of that one (the client repeats it when our
    /// answer is lost). Refused: a ClientHello that opened an attempt we abandoned and, while
    /// an attempt is under way, any other ClientHello.
    ///
    /// Anyone who can send from the client's address can replay a ClientHello it captured, and
    /// a server without cookies answers whichever ClientHello comes first. When that is the
    /// replay, the real client fails (our ServerKeyExchange is signed over another client
    /// random), starts again with a new ClientHello, and its alert makes us start again too;
    /// a replay sent far more often would win that race every time, until the same failure
    /// three times in a row ended the handshake. Answering a ClientHello of an abandoned
    /// attempt again cannot help: a genuine client that started again sent a new one (with a
    /// new random), and a replayer cannot finish (it lacks the key). So it is treated like the
    /// rest of that attempt's datagrams, and one replayed ClientHello costs the client one
    /// attempt at most. OpenSSL ignores another ClientHello during an attempt (it expects the
    /// next message), but our repeat detection would answer each repeat of it with our flight,
    /// sending copies of a flight meant for someone else to the client's address.
    pub(super) fn admits_client_hello(&self, datagram: &[u8]) -> bool {
        let Phase::Handshaking(Handshake {
            hellos: Some(hellos), ..
        }) = &self.phase
        else {
            return true;
        };
        let Some(random) = records::client_hello_random(datagram) else {
            return true;
        };
        !hellos.abandoned.contains(&random) && !matches!(hellos.answering, Some(r) if r != random)
    }
}

impl Handshake {
    /// While the peer has sent nothing for the current attempt: when to stop waiting for it.
    /// A peer that restarts too answers within three of its retransmission periods.
    pub(super) fn unanswered_restart_ends(&self, config: &Config) -> Option<Instant> {
        let grace = config.initial_retransmit_timeout * ANSWER_PERIODS;
        let ends = self.unanswered_since? + grace;
        Some(self.deadline.min(ends))
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
        for refused in [
            VerificationFailure::NotAllowed { actual: "b".into() },
            VerificationFailure::Policy("allow raised".into()),
        ] {
            assert!(!is_retryable(&HandshakeFailure::PeerVerification(refused)));
        }
        assert!(!is_retryable(&HandshakeFailure::AlertReceived(48)));
        assert!(!is_retryable(&HandshakeFailure::Timeout));
        assert!(is_retryable(&HandshakeFailure::PeerVerification(
            VerificationFailure::Certificate(CertificateProblem::BadSelfSignature)
        )));
        assert!(is_retryable(&HandshakeFailure::AlertReceived(51)));
        assert!(is_retryable(&HandshakeFailure::Protocol("length mismatch".into())));
    }
}
