//! What the engine reports: events, failure reasons, send errors, state and counters.

use std::fmt;
use std::time::Duration;

pub use crate::alert::alert_name;
use crate::alert::Alert;
pub use crate::trust::VerificationFailure;

/// Something the caller must act on, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished and the peer passed verification; messages may flow.
    Connected,
    /// The handshake failed; the engine is finished (drain `poll_transmit` for the alert).
    HandshakeFailed(HandshakeFailure),
    /// One decrypted application message from the peer.
    Message(Vec<u8>),
    /// An established session ended; no more messages will arrive.
    Closed(CloseReason),
}

/// Why a handshake failed. Only `PeerVerification` says anything about the peer's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// No completed handshake within `handshake_timeout` (or OpenSSL's retry limit).
    Timeout,
    /// This side rejected the peer's certificate.
    PeerVerification(VerificationFailure),
    /// The peer aborted with this fatal alert (e.g. 40 handshake_failure when it rejected us).
    AlertReceived(u8),
    /// OpenSSL refused the exchange (no shared cipher or version, malformed message, ...).
    Protocol(String),
    /// `close` was called before the handshake finished.
    Closed,
}

/// Why an established session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent close_notify.
    PeerClosed,
    /// `close` was called here.
    LocalClose,
    /// The peer sent this fatal alert.
    AlertReceived(u8),
    /// OpenSSL reported a fatal error on the session.
    Protocol(String),
    /// No authenticated datagram from the peer for this long (`Config::idle_timeout`).
    IdleTimeout(Duration),
}

/// Why `send` refused a message. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The handshake has not completed.
    NotEstablished,
    /// The session is closed or failed.
    Closed,
    /// DTLS carries no empty application records through OpenSSL.
    Empty,
    /// The message does not fit one datagram.
    TooLarge {
        /// Size of the refused message.
        size: usize,
        /// Largest size accepted.
        max: usize,
    },
}

/// Where the engine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created; datagrams are kept until `start`.
    Idle,
    /// Handshake in progress.
    Handshaking,
    /// Verified session; messages flow.
    Established,
    /// Handshake failed.
    Failed,
    /// Session closed (by either side) after being established, or closed before it was.
    Closed,
}

/// Counters a user can read to see what happened on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub datagrams_in: u64,
    /// Bytes in those datagrams.
    pub bytes_in: u64,
    /// Datagrams the engine produced.
    pub datagrams_out: u64,
    /// Bytes in those datagrams.
    pub bytes_out: u64,
    /// Handshake flights sent again: after a timeout, or at once when the peer repeated its
    /// own. The second copy of each flight the engine sends once it has seen loss is not
    /// counted.
    pub retransmissions: u64,
    /// Application messages delivered.
    pub messages_in: u64,
    /// Application messages sent.
    pub messages_out: u64,
    /// Datagrams that were not DTLS records (late hole-punch packets, noise).
    pub dropped_not_dtls: u64,
    /// Datagrams an established session discarded: bad MAC, replay, truncation, forged or
    /// stale records of any type (a ClientHello, a duplicate handshake flight).
    pub dropped_invalid: u64,
    /// Datagrams that arrived before `start` beyond what is kept.
    pub dropped_early: u64,
    /// Datagrams that arrived after the session ended.
    pub dropped_after_close: u64,
    /// Datagrams from an abandoned handshake attempt, a server's ClientHellos other than the
    /// one its attempt answers (a replayed one, say), and records of a session this side no
    /// longer has (answered with our alert or a HelloRequest, bounded).
    pub dropped_stale_handshake: u64,
    /// Datagrams of a new handshake that arrived on an established session (a restarted
    /// peer's, or a forged one; see `successor`): they go to that handshake, not the session.
    pub dropped_new_handshake: u64,
    /// Times the peer restarted and its new, verified handshake replaced the session.
    pub peer_restarts: u64,
    /// Handshake attempts so far (more than 1 when a corrupted or aborted attempt was
    /// started again; see `HandshakeFailure`).
    pub handshake_attempts: u64,
    /// Time from `start` to `Connected`.
    pub handshake_duration: Option<Duration>,
    /// Round trip seen by the handshake: from our last flight to the peer's answer, peer
    /// processing included; `None` when that flight was retransmitted (see `liveness`).
    pub handshake_rtt: Option<Duration>,
    /// Keepalives sent (see `Config::keepalive_interval`).
    pub keepalives_out: u64,
    /// Authenticated keepalives received from the peer.
    pub keepalives_in: u64,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("handshake timed out"),
            Self::PeerVerification(v) => write!(f, "peer verification failed: {v}"),
            Self::AlertReceived(code) => write!(
                f,
                "the peer aborted the handshake with alert {code} ({}){}",
                alert_name(*code),
                if Alert::from_code(*code).is_some_and(Alert::may_reject_identity) {
                    "; if the peer pins node IDs it may have rejected ours, otherwise check its ciphers and certificate"
                } else if Alert::from_code(*code) == Some(Alert::NoApplicationProtocol) {
                    "; this side asked for data channels (channels=True) and the peer has them off"
                } else {
                    ""
                }
            ),
            Self::Protocol(why) => write!(f, "handshake failed: {why}"),
            Self::Closed => f.write_str("the connection was closed during the handshake"),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("the peer closed the connection"),
            Self::LocalClose => f.write_str("the connection was closed"),
            Self::AlertReceived(code) => write!(f, "the peer sent fatal alert {code} ({})", alert_name(*code)),
            Self::Protocol(why) => write!(f, "the session failed: {why}"),
            Self::IdleTimeout(d) => write!(
                f,
                "idle timeout: no authenticated datagram from the peer for {} s",
                d.as_secs_f64()
            ),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEstablished => f.write_str("the handshake has not completed; await handshake() first"),
            Self::Closed => f.write_str("the connection is closed"),
            Self::Empty => f.write_str("cannot send an empty message"),
            Self::TooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds max_message_size {max} (one datagram per message)"
                )
            }
        }
    }
}

impl std::error::Error for SendError {}
