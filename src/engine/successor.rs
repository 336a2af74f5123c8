//! A new handshake from the peer while a session is established: its application restarted
//! (a phone app killed and reopened on the same address) and lost the old session.
//!
//! The new handshake runs beside the live session in an engine of its own, pinned to the node
//! ID the session verified. Only when it completes does it replace the session; messages not yet read are kept
//! in order. Until then the old session carries on untouched, so a forged ClientHello (which
//! anyone who can spoof the address can send) costs a little work and nothing else.
//!
//! A restarted *server* waits for a ClientHello that the old client has no reason to send.
//! When it receives records of a later epoch before any ClientHello, it answers with a
//! HelloRequest. Our established client takes that as the cue to run a new handshake beside
//! its session. Other DTLS stacks drop an epoch-0 HelloRequest on an established session.

use std::time::{Duration, Instant};

use super::phase::{Handshake, HelloStage, Phase, ServerHellos, Session, Successor};
use super::{records, Engine, Event, State, HELLO_REQUESTS};
use crate::config::Role;

impl Engine {
    /// Takes `datagram` if it belongs to a new handshake with the peer; false if it is for
    /// the established session.
    /// Every datagram it takes is counted in `dropped_new_handshake`: none of them reaches the
    /// session, whether or not the new handshake later replaces it.
    pub(super) fn route_new_handshake(&mut self, now: Instant, datagram: &[u8]) -> bool {
        let taken = self.take_new_handshake(now, datagram);
        if taken {
            self.stats.dropped_new_handshake += 1;
        }
        taken
    }

    fn take_new_handshake(&mut self, now: Instant, datagram: &[u8]) -> bool {
        let opens = match self.role {
            Role::Server => records::starts_with_client_hello(datagram),
            Role::Client => records::is_hello_request(datagram),
        };
        if opens {
            let hello = records::client_hello_random(datagram);
            let same = self
                .session_mut()
                .and_then(|s| s.successor.as_ref())
                .is_some_and(|s| s.opened_by == hello);
            if !same && !self.begin_successor(now, hello) {
                return true;
            }
            if self.role == Role::Client {
                // The HelloRequest only asked for the ClientHello the new engine has sent.
                return true;
            }
        }
        let Some(successor) = self.session_mut().and_then(|s| s.successor.as_mut()) else {
            return opens;
        };
        if !records::is_handshake_traffic(datagram) {
            return false;
        }
        successor.engine.process(now, datagram.to_vec());
        self.settle_successor(now);
        true
    }

    /// Starts a new handshake beside the session, unless one started too recently (each
    /// costs a key exchange and, for a server, a flight sent to the peer's address).
    fn begin_successor(&mut self, now: Instant, opened_by: Option<[u8; 32]>) -> bool {
        let spacing = self.config.initial_retransmit_timeout.max(Duration::from_millis(100));
        let Some(session) = self.session() else {
            return false;
        };
        if session.successor_started.is_some_and(|t| now < t + spacing) {
            return false;
        }
        // Only the node this session verified may replace it: an allow policy (or an unpinned
        // engine) would otherwise let another node take over the session mid-stream, and the
        // application would be talking to someone else under the same connection.
        let pin = self.expected_node_id.only(&session.peer.node_id);
        let Ok(mut engine) = Self::from_context(self.context.clone(), self.role, pin, self.config.clone()) else {
            return false;
        };
        engine.start(now);
        let Some(session) = self.session_mut() else {
            return false;
        };
        session.successor_started = Some(now);
        session.successor = Some(Successor {
            engine: Box::new(engine),
            opened_by,
        });
        true
    }

    /// Lets the new handshake's timers run.
    pub(super) fn successor_timeout(&mut self, now: Instant) {
        if let Some(successor) = self.session_mut().and_then(|s| s.successor.as_mut()) {
            successor.engine.handle_timeout(now);
            self.settle_successor(now);
        }
    }

    /// Adopts the new handshake once it completed, or forgets it once it failed.
    fn settle_successor(&mut self, now: Instant) {
        let Phase::Established(Session {
            successor: Some(successor),
            ..
        }) = &mut self.phase
        else {
            return;
        };
        match successor.engine.state() {
            State::Handshaking => {}
            State::Established => self.adopt_successor(now),
            State::Idle | State::Failed | State::Closed => {
                // Its alert still goes out: the peer (or forger) learns it was refused.
                for datagram in successor.engine.tls.stream.get_mut().take_outgoing() {
                    self.tls.stream.get_mut().push_outgoing(datagram);
                }
                if let Some(session) = self.session_mut() {
                    session.successor = None;
                }
            }
        }
    }

    /// The new handshake completed: its session, OpenSSL state, last flight and liveness
    /// replace ours whole. Only the engine-wide counters and events carry over.
    fn adopt_successor(&mut self, now: Instant) {
        let Some(Successor { engine, .. }) = self.session_mut().and_then(|s| s.successor.take()) else {
            return;
        };
        let Self {
            mut tls,
            phase: Phase::Established(session),
            flight,
            earlier_retransmissions,
            liveness,
            stats,
            events,
            ..
        } = *engine
        else {
            return;
        };
        // Everything queued goes out in order: ours, then its own answers (the final flight).
        let mut pending = self.tls.stream.get_mut().take_outgoing();
        pending.extend(tls.stream.get_mut().take_outgoing());
        self.tls = tls;
        for datagram in pending {
            self.tls.stream.get_mut().push_outgoing(datagram);
        }
        // The new session's final flight answers its peer's repeats from now on.
        self.forget_flight();
        self.flight = flight;
        self.earlier_retransmissions += earlier_retransmissions;
        // A successor has no successor of its own: it is adopted the moment it is established.
        self.phase = Phase::Established(Session {
            successor_started: Some(now),
            ..session
        });
        self.stats.handshake_duration = stats.handshake_duration;
        self.adopt_liveness(liveness, now);
        self.stats.peer_restarts += 1;
        // Messages that came with its final flight follow the ones not read yet.
        self.events
            .extend(events.into_iter().filter(|e| *e != Event::Connected));
    }

    /// A peer sends records of a session we no longer have: we restarted, it did not.
    /// Ask it for a new handshake (bounded; see `successor`).
    pub(super) fn ask_for_new_handshake(&mut self) {
        self.stats.dropped_stale_handshake += 1;
        let Phase::Handshaking(Handshake {
            hellos:
                Some(ServerHellos {
                    stage: HelloStage::Unseen { hello_requests_left },
                    ..
                }),
            ..
        }) = &mut self.phase
        else {
            return;
        };
        if *hello_requests_left > 0 {
            *hello_requests_left -= 1;
            let seq = u64::from(HELLO_REQUESTS - *hello_requests_left);
            self.tls.stream.get_mut().push_outgoing(records::hello_request(seq));
        }
    }
}
