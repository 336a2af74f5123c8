//! Where an engine is in its life, each phase holding the data that exists only in it, so a
//! combination no phase has (a peer identity while handshaking, a successor before the
//! session exists) cannot be written. [`State`] is what callers see of it.

use std::time::Instant;

use super::{Engine, State};

/// The engine's phase and what belongs to it.
pub(super) enum Phase {
    /// Created; not started.
    Idle,
    /// A handshake is under way.
    Handshaking,
    /// A verified session.
    Established(Session),
    /// The handshake failed.
    Failed,
    /// Ended: after a session (whose peer stays readable), or before one was started.
    Closed { peer: Option<Peer> },
}

/// The verified peer of a session.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) node_id: String,
    /// DER SubjectPublicKeyInfo of its node key.
    pub(super) public_key: Vec<u8>,
    /// Its certificate (DER).
    pub(super) certificate: Vec<u8>,
}

/// An established session.
pub(super) struct Session {
    pub(super) peer: Peer,
    /// The shortest encrypted record body the negotiated suite allows (see `records`).
    pub(super) min_record_body: usize,
    /// A new handshake the peer started while this session is established (`successor`).
    pub(super) successor: Option<Box<Engine>>,
    /// When the last successor started (or was adopted), to space them out.
    pub(super) successor_started: Option<Instant>,
}

impl Phase {
    /// What callers see of the phase.
    pub(super) fn state(&self) -> State {
        match self {
            Self::Idle => State::Idle,
            Self::Handshaking => State::Handshaking,
            Self::Established(_) => State::Established,
            Self::Failed => State::Failed,
            Self::Closed { .. } => State::Closed,
        }
    }

    /// The verified peer: of the session, or of the session that closed.
    pub(super) fn peer(&self) -> Option<&Peer> {
        match self {
            Self::Established(session) => Some(&session.peer),
            Self::Closed { peer } => peer.as_ref(),
            Self::Idle | Self::Handshaking | Self::Failed => None,
        }
    }
}
