//! The sans-IO DTLS engine: datagrams and the current time in; datagrams, events and the next
//! deadline out. No sockets, no threads, no clock reads of its own.
//!
//! Call order, after `new` and after every `start`, `handle_datagram`, `handle_timeout`,
//! `send` or `close`: drain `poll_transmit` and send each datagram, drain `poll_event`, then
//! arrange to call `handle_timeout` at `poll_timeout`.
//!
//! Time is only what the caller passes as `now`: the engine keeps each handshake flight and
//! retransmits it itself on its schedule (see [`crate::config::Config`] and `flight`), with
//! OpenSSL's own wall-clock timer held out of the way (`timer`).

mod buffers;
mod flight;
mod listened;
mod liveness;
mod migration;
mod output;
mod phase;
mod pipe;
mod records;
mod restart;
mod successor;
mod timer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream};

pub(crate) use listened::{generate_cookie, verify_cookie, Cookies, Listening, LISTEN_COOKIE_LEN};
pub use liveness::{is_keepalive, EXPORTER_LABEL, KEEPALIVE_LEN};
pub use output::{alert_name, CloseReason, Event, HandshakeFailure, SendError, State, Stats, VerificationFailure};
pub(crate) use records::starts_with_client_hello;

use crate::alert::{self, OpenSslReason};
use crate::config::{Config, ConfigError, Role};
use crate::identity::Identity;
use crate::policy;
use crate::trust::verifier::{self, Verifier};
use crate::trust::Pin;
use flight::Flight;
use liveness::Liveness;
use phase::{Handshake, HelloStage, Peer, Phase, Session};
use pipe::DatagramPipe;
use timer::TimerState;

/// One attempt's OpenSSL session with the verifier and timer state its callbacks share: a
/// new attempt, or an adopted successor, replaces all three at once.
struct Tls {
    stream: SslStream<DatagramPipe>,
    pin: Arc<Verifier>,
    timer: Arc<TimerState>,
}

/// Datagrams kept while `Idle` (the peer may start before we do).
const EARLY_DATAGRAMS: usize = 64;
/// HelloRequests a restarted server sends to a peer still using the old session.
const HELLO_REQUESTS: u32 = 8;
/// Largest DTLS record plaintext.
const MAX_PLAINTEXT: usize = 16_384;

thread_local! {
    /// Where records are decrypted before each message is copied out at its own size. One
    /// per thread rather than per engine: a connection then costs no 18 KiB buffer of its own.
    static READ_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; MAX_PLAINTEXT + 2048].into_boxed_slice());
}

/// Whether a datagram can be a DTLS 1.x record (RFC 7983: first byte 20..=63 is DTLS; we
/// also require the 13-byte header and a DTLS version major byte).
pub fn looks_like_dtls(datagram: &[u8]) -> bool {
    datagram.len() >= 13 && (20..=25).contains(&datagram[0]) && datagram[1] == 0xfe
}

/// One DTLS 1.2 association with one peer.
pub struct Engine {
    /// The current attempt's OpenSSL session (or the adopted successor's).
    tls: Tls,
    role: Role,
    config: Config,
    /// Where the engine is in its life, with the data that exists only there (see `phase`).
    phase: Phase,
    context: SslContext,
    /// Whom this engine accepts, and the scheme that names the peer.
    expected_node_id: Pin,
    /// Retransmissions counted by the timers of earlier attempts.
    earlier_retransmissions: u64,
    events: VecDeque<Event>,
    /// Our current flight and its retransmission schedule.
    flight: Flight,
    /// Counters over the engine's life; `handshake_attempts` is also what `restart` counts.
    stats: Stats,
    liveness: Liveness,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("peer_node_id", &self.peer_node_id())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A new engine that will authenticate as `identity` and accept only a peer whose node ID
    /// under `identity`'s scheme is `expected_node_id` (normalised by the scheme's `parse`:
    /// lowercase hex for SHA-256; `None` accepts any valid certificate).
    pub fn new(
        role: Role,
        identity: &Identity,
        expected_node_id: Option<String>,
        config: Config,
    ) -> Result<Self, ConfigError> {
        let pin = Pin::new(expected_node_id, identity.scheme().clone());
        Self::with_pin(role, identity, pin, config)
    }

    /// A new engine that will authenticate as `identity` and accept the peers `pin` accepts
    /// (one node ID, any, or those an allow policy lets in; see [`Pin`]), checked during the
    /// handshake. `pin`'s scheme should be `identity`'s: it names the peer's key.
    pub fn with_pin(role: Role, identity: &Identity, pin: Pin, config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        u32::try_from(config.mtu).map_err(|_| ConfigError::Mtu(config.mtu))?;
        let context = policy::context(identity, &config)?;
        Self::from_context(context, role, pin, config)
    }

    /// An engine on an existing context (the identity and policy are in it), for a caller that
    /// shares one context among many engines. `config` must pass the checks `with_pin` makes.
    pub(crate) fn from_context(
        context: SslContext,
        role: Role,
        expected_node_id: Pin,
        config: Config,
    ) -> Result<Self, ConfigError> {
        let tls = Self::attempt_session(&context, role, &config, &expected_node_id)
            .map_err(|e| ConfigError::OpenSsl(e.to_string()))?;
        Ok(Self::from_session(context, role, expected_node_id, config, tls))
    }

    /// An engine whose first attempt runs on `tls` (made by `attempt_session`).
    fn from_session(context: SslContext, role: Role, expected_node_id: Pin, config: Config, tls: Tls) -> Self {
        Self {
            tls,
            role,
            config,
            phase: Phase::Idle { early: VecDeque::new() },
            context,
            expected_node_id,
            earlier_retransmissions: 0,
            events: VecDeque::new(),
            flight: Flight::default(),
            stats: Stats {
                handshake_attempts: 1,
                ..Stats::default()
            },
            liveness: Liveness::default(),
        }
    }

    /// A fresh OpenSSL session for one handshake attempt, with its own pin verdict and timer.
    fn attempt_session(
        context: &SslContext,
        role: Role,
        config: &Config,
        expected_node_id: &Pin,
    ) -> Result<Tls, openssl::error::ErrorStack> {
        let mut ssl = Ssl::new(context)?;
        // `new` checked that the MTU fits.
        ssl.set_mtu(u32::try_from(config.mtu).unwrap_or(u32::MAX))?;
        match role {
            Role::Client => ssl.set_connect_state(),
            Role::Server => ssl.set_accept_state(),
        }
        if role == Role::Client && config.channels.is_some() {
            // Data channels are WebRTC's application protocol (RFC 8833); a server without
            // them refuses during the handshake instead of taking SCTP for messages.
            ssl.set_alpn_protos(crate::policy::ALPN_WEBRTC)?;
        }
        let timer = Arc::new(TimerState::default());
        timer::install(&mut ssl, timer.clone());
        let pin = Arc::new(Verifier::new(expected_node_id.clone()));
        verifier::install(&mut ssl, pin.clone());
        let stream = SslStream::new(ssl, DatagramPipe::default())?;
        Ok(Tls { stream, pin, timer })
    }

    /// Begins the handshake; the handshake timeout counts from `now`. Datagrams received
    /// while idle are processed now. Calling it again has no effect.
    pub fn start(&mut self, now: Instant) {
        let handshake = Handshake::new(self.role, now, now + self.config.handshake_timeout);
        self.begin(now, handshake);
    }

    /// Leaves `Idle` for `handshake` (which starts at `now`); no effect in any other phase.
    fn begin(&mut self, now: Instant, handshake: Handshake) {
        if self.state() != State::Idle {
            return;
        }
        let Phase::Idle { early } = std::mem::replace(&mut self.phase, Phase::Handshaking(handshake)) else {
            return;
        };
        self.drive_handshake(now);
        for datagram in early {
            self.process(now, datagram);
        }
    }

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        if self.take_keepalive(now, datagram) {
            return;
        }
        if !looks_like_dtls(datagram) {
            self.stats.dropped_not_dtls += 1;
            return;
        }
        if let Phase::Idle { early } = &mut self.phase {
            if early.len() < EARLY_DATAGRAMS {
                early.push_back(datagram.to_vec());
            } else {
                self.stats.dropped_early += 1;
            }
            return;
        }
        self.process(now, datagram.to_vec());
    }

    fn process(&mut self, now: Instant, datagram: Vec<u8>) {
        match &self.phase {
            Phase::Handshaking(_) => self.process_handshake(now, datagram),
            Phase::Established(_) => {
                if self.route_new_handshake(now, &datagram) {
                    return;
                }
                if records::is_handshake_traffic(&datagram) && self.flight.heard(records::repeat_key(&datagram)) {
                    // The peer repeats its last flight: it missed our final one. Anything
                    // else it repeats (or a repeat too soon after our answer) is dropped.
                    if !self.answer_repeat(now) {
                        self.stats.dropped_invalid += 1;
                    }
                    return;
                }
                let min_record_body = self.session().map_or(0, |s| s.min_record_body);
                if records::has_short_encrypted_record(&datagram, min_record_body) {
                    self.stats.dropped_invalid += 1;
                    return;
                }
                self.tls.stream.get_mut().push_incoming(datagram);
                let answers = self.tls.stream.get_ref().outgoing_len();
                let delivered = self.read_records();
                if delivered > 0 {
                    self.liveness.heard(now);
                    // The peer is established: our final flight is no longer needed.
                    self.forget_flight();
                }
                // Delivered nothing, ended nothing and needed no answer (a genuine repeat of the
                // peer's last flight gets ours again): OpenSSL discarded it, whatever its type.
                if delivered == 0
                    && self.state() == State::Established
                    && self.tls.stream.get_ref().outgoing_len() == answers
                {
                    self.stats.dropped_invalid += 1;
                }
            }
            Phase::Idle { .. } | Phase::Failed | Phase::Closed { .. } => self.stats.dropped_after_close += 1,
        }
    }

    fn process_handshake(&mut self, now: Instant, mut datagram: Vec<u8>) {
        if !self.admits_client_hello(&datagram) {
            return self.repeat_abort();
        }
        let Phase::Handshaking(handshake) = &mut self.phase else {
            return;
        };
        if let Some(hellos) = &mut handshake.hellos {
            match hellos.stage {
                HelloStage::AwaitingRetry => {
                    if !records::starts_with_client_hello(&datagram) {
                        return self.repeat_abort();
                    }
                    hellos.stage = HelloStage::Seen;
                    handshake.abort_resends_left = 0;
                }
                HelloStage::Unseen { .. } => {
                    if !records::is_epoch_zero(&datagram) {
                        return self.ask_for_new_handshake();
                    }
                    if records::starts_with_client_hello(&datagram) {
                        hellos.stage = HelloStage::Seen;
                    }
                }
                HelloStage::Seen => {}
            }
        }
        if records::has_impossible_epoch_zero_record(&datagram) {
            self.stats.dropped_invalid += 1;
            return;
        }
        // A copy of what ended an earlier attempt (the peer repeating its alert, or the
        // link duplicating it) must not end this one too. A peer that sends its flight
        // again may have missed our alert and still run that attempt: tell it again
        // (bounded). A server waiting for a ClientHello does that above; this is where a
        // client does, which a server answering a replayed ClientHello relies on.
        if handshake.fatal_inputs.contains(&datagram) {
            return self.repeat_abort();
        }
        handshake.unanswered_since = None;
        let attempt = self.stats.handshake_attempts;
        let original = datagram.clone();
        let repeat = self.flight.hear(records::repeat_key(&original));
        let unsent = self.tls.stream.get_ref().outgoing_len();
        if let Some(hellos) = &mut handshake.hellos {
            if hellos.answering.is_none() {
                hellos.answering = records::client_hello_random(&datagram);
            }
        }
        records::renumber_epoch_zero(&mut datagram, &mut handshake.next_epoch_zero_record);
        // A repeat still goes to OpenSSL: the first copy may have come too early to
        // be used (a ChangeCipherSpec before the messages it follows is dropped).
        self.tls.stream.get_mut().push_incoming(datagram);
        self.drive_handshake(now);
        // The peer sent this before and OpenSSL had nothing new to say: the peer
        // repeats its flight because ours, which answered it, was lost. Sending ours
        // now saves the rest of our own timeout. (OpenSSL answers only a repeated
        // Finished, and only from a peer that renumbered it.)
        let progressed = self.tls.stream.get_ref().outgoing_len() != unsent;
        let restarted = self.stats.handshake_attempts != attempt;
        if repeat && !progressed && !restarted && self.flight.awaits_answer() {
            let _ = self.answer_repeat(now);
        }
        if let (true, Phase::Handshaking(handshake)) = (restarted, &mut self.phase) {
            if handshake.fatal_inputs.len() == restart::MAX_ATTEMPTS as usize {
                handshake.fatal_inputs.pop_front();
            }
            handshake.fatal_inputs.push_back(original);
        }
    }

    /// Retransmits or gives up when a deadline from `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state() == State::Established {
            self.successor_timeout(now);
            return self.liveness_timeout(now);
        }
        let Phase::Handshaking(handshake) = &mut self.phase else {
            return;
        };
        if handshake
            .unanswered_restart_ends(&self.config)
            .is_some_and(|at| now >= at)
        {
            // The peer did not take part in the new attempt: it gave up after the last
            // one (a one-shot peer such as OpenSSL's tools does), so report why that failed.
            if let Some((failure, _)) = handshake.last_failure.take() {
                return self.end_handshake(failure);
            }
        }
        if now >= handshake.deadline {
            return self.end_handshake(HandshakeFailure::Timeout);
        }
        if let Some(datagrams) = self.flight.due(now, self.config.max_retransmit_timeout) {
            for datagram in datagrams {
                self.tls.stream.get_mut().push_outgoing(datagram);
            }
            self.liveness.flight_sent(now, true);
        }
    }

    /// Encrypts one message into one datagram (collect it with `poll_transmit`).
    pub fn send(&mut self, message: &[u8]) -> Result<(), SendError> {
        match self.state() {
            State::Established => {}
            State::Idle | State::Handshaking => return Err(SendError::NotEstablished),
            State::Failed | State::Closed => return Err(SendError::Closed),
        }
        let max = self.max_message_size();
        if message.len() > max {
            return Err(SendError::TooLarge {
                size: message.len(),
                max,
            });
        }
        if message.is_empty() {
            return Err(SendError::Empty);
        }
        match self.tls.stream.ssl_write(message) {
            Ok(_) => {
                self.stats.messages_out += 1;
                Ok(())
            }
            Err(e) => {
                self.close_with(CloseReason::Protocol(describe(&e)));
                Err(SendError::Closed)
            }
        }
    }

    /// Sends close_notify (if a session exists) and ends the engine. Idempotent.
    pub fn close(&mut self) {
        match self.state() {
            State::Idle => self.phase = Phase::Closed { peer: None },
            State::Handshaking => {
                let _ = self.tls.stream.shutdown();
                self.end_handshake(HandshakeFailure::Closed);
            }
            State::Established => {
                let _ = self.tls.stream.shutdown();
                self.close_with(CloseReason::LocalClose);
            }
            State::Failed | State::Closed => {}
        }
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let datagram = match self.tls.stream.get_mut().pop_outgoing() {
            Some(datagram) => datagram,
            None => match &mut self.phase {
                Phase::Established(session) => {
                    (session.successor.as_mut()?.engine.tls.stream.get_mut()).pop_outgoing()?
                }
                _ => return None,
            },
        };
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += datagram.len() as u64;
        Some(datagram)
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Phase::Established(session) = &self.phase {
            let successor = session.successor.as_ref().and_then(|s| s.engine.poll_timeout());
            return [successor, self.liveness_deadline()].into_iter().flatten().min();
        }
        let Phase::Handshaking(handshake) = &self.phase else {
            return None;
        };
        [
            self.flight.deadline(),
            Some(handshake.deadline),
            handshake.unanswered_restart_ends(&self.config),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Where the engine is in its life.
    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// The role this engine plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Largest message `send` accepts.
    pub fn max_message_size(&self) -> usize {
        self.config.max_message_size()
    }

    /// The verified peer's node ID, once connected.
    pub fn peer_node_id(&self) -> Option<&str> {
        self.phase.peer().map(|p| p.node_id.as_str())
    }

    /// DER SubjectPublicKeyInfo of the verified peer's node key, once connected.
    pub fn peer_public_key(&self) -> Option<&[u8]> {
        self.phase.peer().map(|p| p.public_key.as_slice())
    }

    /// The peer's certificate (DER), once connected.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.phase.peer().map(|p| p.certificate.as_slice())
    }

    /// The negotiated cipher suite (OpenSSL name), once connected.
    pub fn cipher(&self) -> Option<&'static str> {
        (self.state() == State::Established).then(|| self.tls.stream.ssl().current_cipher().map(|c| c.name()))?
    }

    /// The shortest valid encrypted record body for the negotiated suite: AES-GCM carries an
    /// 8-byte explicit nonce and a 16-byte tag, ChaCha20-Poly1305 only the tag. Read once at
    /// connection, not per datagram.
    fn negotiated_min_record_body(&self) -> usize {
        match self.tls.stream.ssl().current_cipher().map(|c| c.name()) {
            Some(name) if name.contains("GCM") => 24,
            _ => 16,
        }
    }

    /// The negotiated protocol version ("DTLSv1.2"), once connected.
    pub fn protocol_version(&self) -> Option<&'static str> {
        (self.state() == State::Established).then(|| self.tls.stream.ssl().version_str())
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            retransmissions: self.retransmissions(),
            ..self.stats.clone()
        }
    }

    fn drive_handshake(&mut self, now: Instant) {
        let unsent = self.tls.stream.get_ref().outgoing_len();
        match self.tls.stream.do_handshake() {
            Ok(()) => self.connected(now, unsent),
            Err(e) if e.code() == ErrorCode::WANT_READ => self.sync_timer(now, unsent),
            Err(e) => {
                let failure = self.classify(&e);
                self.fail(now, failure);
            }
        }
    }

    fn connected(&mut self, now: Instant, unsent: usize) {
        // The verify callback decided during the handshake; this re-check only guards against
        // OpenSSL skipping it, which would otherwise let an unverified peer through.
        let der = self.tls.stream.ssl().peer_certificate().and_then(|c| c.to_der().ok());
        let verdict = match (der, self.tls.pin.verdict()) {
            (None, _) => Err(VerificationFailure::NoCertificate),
            (Some(der), Some(Ok(_)) | None) => self.tls.pin.verdict_for(&der).map(|peer| (peer, der)),
            (Some(_), Some(Err(failure))) => Err(failure),
        };
        match verdict {
            Ok((peer, certificate)) => {
                let started_at = match &self.phase {
                    Phase::Handshaking(handshake) => Some(handshake.started_at),
                    _ => None,
                };
                self.phase = Phase::Established(Session {
                    peer: Peer {
                        node_id: peer.node_id,
                        public_key: peer.public_key_der,
                        certificate,
                    },
                    min_record_body: self.negotiated_min_record_body(),
                    successor: None,
                    successor_started: None,
                });
                // What this call wrote is our final flight (a server's ChangeCipherSpec and
                // Finished): kept to answer the peer if it repeats its flight, having missed ours.
                self.earlier_retransmissions += self.flight.take_retransmissions();
                let last = self.tls.stream.get_ref().outgoing_since(unsent);
                self.flight.last(now, last, self.config.initial_retransmit_timeout);
                self.stats.handshake_duration = started_at.map(|t| now.saturating_duration_since(t));
                self.liveness_established(now);
                self.events.push_back(Event::Connected);
                // Records that arrived with the final flight.
                self.read_records();
            }
            Err(failure) => {
                let _ = self.tls.stream.shutdown();
                self.fail(now, HandshakeFailure::PeerVerification(failure));
            }
        }
    }

    /// Decrypts whatever is queued; returns the number of messages delivered.
    fn read_records(&mut self) -> usize {
        READ_BUFFER.with_borrow_mut(|buffer| self.read_records_into(buffer))
    }

    fn read_records_into(&mut self, buffer: &mut [u8]) -> usize {
        let mut delivered = 0;
        loop {
            match self.tls.stream.ssl_read(buffer) {
                Ok(0) => {}
                Ok(n) => {
                    delivered += 1;
                    self.stats.messages_in += 1;
                    self.events.push_back(Event::Message(buffer[..n].to_vec()));
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    // Answer close_notify with ours, as RFC 5246 7.2.1 asks.
                    let _ = self.tls.stream.shutdown();
                    self.close_with(CloseReason::PeerClosed);
                    break;
                }
                Err(e) => {
                    let reason = match alert_received(&e) {
                        Some(code) => CloseReason::AlertReceived(code),
                        None => CloseReason::Protocol(describe(&e)),
                    };
                    self.close_with(reason);
                    break;
                }
            }
        }
        self.tls.stream.get_mut().clear_incoming();
        buffers::release(self.tls.stream.ssl());
        delivered
    }

    /// Takes note of what OpenSSL did in one call, after the first `unsent` datagrams queued:
    /// a new flight to keep and schedule, or an answer from the peer that ends the schedule.
    fn sync_timer(&mut self, now: Instant, unsent: usize) {
        if self.tls.timer.take_flight_start() {
            let datagrams = self.tls.stream.get_ref().outgoing_since(unsent);
            self.flight
                .start(now, datagrams, self.config.initial_retransmit_timeout);
            // A flight sent twice from the start (the attempt has seen loss) gives no sample.
            self.liveness.flight_sent(now, self.flight.copy_pending());
        }
        if !timer::is_running(self.tls.stream.ssl()) {
            self.flight.answered();
        }
    }

    /// Flights sent again, in all attempts.
    fn retransmissions(&self) -> u64 {
        self.earlier_retransmissions + self.flight.retransmissions()
    }

    /// Drops the flight (the attempt ended), keeping its count of retransmissions.
    fn forget_flight(&mut self) {
        self.earlier_retransmissions += self.flight.take_retransmissions();
        self.flight = Flight::default();
    }

    /// Sends our flight again at once: the peer repeated its own, so it missed ours. False
    /// when there is nothing to send or it just went out.
    fn answer_repeat(&mut self, now: Instant) -> bool {
        let Some(datagrams) = self.flight.answer(now) else {
            return false;
        };
        for datagram in datagrams {
            self.tls.stream.get_mut().push_outgoing(datagram);
        }
        self.liveness.flight_sent(now, true);
        true
    }

    fn classify(&self, e: &openssl::ssl::Error) -> HandshakeFailure {
        if let Some(Err(failure)) = self.tls.pin.verdict() {
            return HandshakeFailure::PeerVerification(failure);
        }
        if let Some(code) = alert_received(e) {
            return HandshakeFailure::AlertReceived(code);
        }
        match e.ssl_error().and_then(OpenSslReason::of) {
            Some(OpenSslReason::ReadTimeoutExpired) => HandshakeFailure::Timeout,
            Some(OpenSslReason::PeerDidNotReturnACertificate) => {
                HandshakeFailure::PeerVerification(VerificationFailure::NoCertificate)
            }
            Some(OpenSslReason::NoApplicationProtocol) => {
                HandshakeFailure::Protocol(if self.config.channels.is_some() {
                    "the peer offered another application protocol than data channels (ALPN \"webrtc\")".into()
                } else {
                    "the peer wants data channels (ALPN \"webrtc\") and this side was made without channels=True".into()
                })
            }
            None => HandshakeFailure::Protocol(describe(e)),
        }
    }

    fn end_handshake(&mut self, failure: HandshakeFailure) {
        self.phase = Phase::Failed;
        self.forget_flight();
        self.tls.stream.get_mut().clear_incoming();
        self.events.push_back(Event::HandshakeFailed(failure));
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.state() != State::Established {
            return;
        }
        let Phase::Established(session) = std::mem::replace(&mut self.phase, Phase::Closed { peer: None }) else {
            return;
        };
        // A successor's datagrams still queued go out after ours, as they did while the
        // session (and with it the successor) was kept after closing.
        if let Some(mut successor) = session.successor {
            for datagram in successor.engine.tls.stream.get_mut().take_outgoing() {
                self.tls.stream.get_mut().push_outgoing(datagram);
            }
        }
        self.phase = Phase::Closed {
            peer: Some(session.peer),
        };
        self.events.push_back(Event::Closed(reason));
    }

    /// The established session, if there is one.
    fn session(&self) -> Option<&Session> {
        match &self.phase {
            Phase::Established(session) => Some(session),
            _ => None,
        }
    }

    fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.phase {
            Phase::Established(session) => Some(session),
            _ => None,
        }
    }
}

/// The alert the peer sent, if that is what ended the call.
fn alert_received(e: &openssl::ssl::Error) -> Option<u8> {
    alert::received_alert(e.ssl_error()?)
}

fn describe(e: &openssl::ssl::Error) -> String {
    match e.ssl_error().and_then(|s| s.errors().first()) {
        Some(err) => err.reason().unwrap_or("unknown OpenSSL error").to_owned(),
        None => e.to_string(),
    }
}
