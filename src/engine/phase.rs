//! Where an engine is in its life, each phase holding the data that exists only in it, so a
//! combination no phase has (a peer identity while handshaking, a successor before the
//! session exists) cannot be written. [`State`] is what callers see of it.

use std::collections::VecDeque;
use std::time::Instant;

use super::output::HandshakeFailure;
use super::restart::MAX_ATTEMPTS;
use super::{Engine, Role, State, HELLO_REQUESTS};

/// The engine's phase and what belongs to it.
pub(super) enum Phase {
    /// Created; not started. The peer may start first: its datagrams wait here (bounded,
    /// `EARLY_DATAGRAMS`) and are taken in by `start`.
    Idle { early: VecDeque<Vec<u8>> },
    /// A handshake is under way.
    Handshaking(Handshake),
    /// A verified session.
    Established(Session),
    /// The handshake failed.
    Failed,
    /// Ended: after a session (whose peer stays readable), or before one was started.
    Closed { peer: Option<Peer> },
}

/// A handshake under way: its deadline and what its failed attempts left behind (see
/// `restart`). The attempt count itself is `Stats::handshake_attempts`, which outlives it.
pub(super) struct Handshake {
    pub(super) started_at: Instant,
    pub(super) deadline: Instant,
    /// The last attempt's failure and how many attempts in a row failed that way.
    pub(super) last_failure: Option<(HandshakeFailure, u32)>,
    /// Our fatal alert from the last failed attempt and how often it may still be repeated.
    pub(super) abort: Vec<Vec<u8>>,
    pub(super) abort_resends_left: u32,
    /// When the current attempt started, if it is not the first and the peer has sent
    /// nothing for it yet.
    pub(super) unanswered_since: Option<Instant>,
    /// Datagrams that ended earlier attempts.
    pub(super) fatal_inputs: VecDeque<Vec<u8>>,
    /// The sequence number given to the next epoch-0 record from the peer (see `records`).
    pub(super) next_epoch_zero_record: u64,
    /// A server's view of the ClientHellos; `None` for a client.
    pub(super) hellos: Option<ServerHellos>,
}

/// What a server knows of the ClientHellos of its handshake.
pub(super) struct ServerHellos {
    pub(super) stage: HelloStage,
    /// The client random of the ClientHello the current attempt answers.
    pub(super) answering: Option<[u8; 32]>,
    /// Those of the attempts it abandoned (see `restart::admits_client_hello`).
    pub(super) abandoned: VecDeque<[u8; 32]>,
}

/// Where a server is in waiting for a ClientHello.
///
/// An attempt that fails moves the server to `AwaitingRetry` whether or not a ClientHello was
/// seen before (a fresh server fails too, on an epoch-0 record that is no ClientHello): the
/// ClientHello that ends the wait is the first one seen either way.
pub(super) enum HelloStage {
    /// None taken in yet: later-epoch records come from a session the peer still has with our
    /// previous incarnation, and each costs one of these HelloRequests (see `successor`).
    Unseen { hello_requests_left: u32 },
    /// An attempt failed: only a new ClientHello starts the next; anything else the peer
    /// sends belongs to the abandoned attempt.
    AwaitingRetry,
    /// A ClientHello was taken in.
    Seen,
}

impl Handshake {
    /// A handshake started at `started_at` that must finish by `deadline`.
    pub(super) fn new(role: Role, started_at: Instant, deadline: Instant) -> Self {
        Self {
            started_at,
            deadline,
            last_failure: None,
            abort: Vec::new(),
            abort_resends_left: 0,
            unanswered_since: None,
            fatal_inputs: VecDeque::new(),
            next_epoch_zero_record: 0,
            hellos: (role == Role::Server).then(|| ServerHellos {
                stage: HelloStage::Unseen {
                    hello_requests_left: HELLO_REQUESTS,
                },
                answering: None,
                abandoned: VecDeque::new(),
            }),
        }
    }
}

impl ServerHellos {
    /// The current attempt failed: its ClientHello is never answered again, and the next
    /// attempt waits for a new one.
    pub(super) fn abandon_attempt(&mut self) {
        if let Some(random) = self.answering.take() {
            if self.abandoned.len() == MAX_ATTEMPTS as usize {
                self.abandoned.pop_front();
            }
            self.abandoned.push_back(random);
        }
        self.stage = HelloStage::AwaitingRetry;
    }
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
    pub(super) successor: Option<Successor>,
    /// When the last successor started (or was adopted), to space them out.
    pub(super) successor_started: Option<Instant>,
}

/// A new handshake beside an established session, in an engine of its own.
pub(super) struct Successor {
    pub(super) engine: Box<Engine>,
    /// The ClientHello random that opened it (none when our client answers a HelloRequest).
    pub(super) opened_by: Option<[u8; 32]>,
}

impl Phase {
    /// What callers see of the phase.
    pub(super) fn state(&self) -> State {
        match self {
            Self::Idle { .. } => State::Idle,
            Self::Handshaking(_) => State::Handshaking,
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
            Self::Idle { .. } | Self::Handshaking(_) | Self::Failed => None,
        }
    }
}
