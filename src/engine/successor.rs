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
            let same = self.successor.as_ref().is_some_and(|s| s.opened_by == hello);
            if !same && !self.begin_successor(now, hello) {
                return true;
            }
            if self.role == Role::Client {
                // The HelloRequest only asked for the ClientHello the new engine has sent.
                return true;
            }
        }
        let Some(successor) = self.successor.as_mut() else {
            return opens;
        };
        if !records::is_handshake_traffic(datagram) {
            return false;
        }
        successor.process(now, datagram.to_vec());
        self.settle_successor(now);
        true
    }

    /// Starts a new handshake beside the session, unless one started too recently (each
    /// costs a key exchange and, for a server, a flight sent to the peer's address).
    fn begin_successor(&mut self, now: Instant, opened_by: Option<[u8; 32]>) -> bool {
        let spacing = self.config.initial_retransmit_timeout.max(Duration::from_millis(100));
        if self.successor_started.is_some_and(|t| now < t + spacing) {
            return false;
        }
        // Only the node this session verified may replace it: an allow policy (or an unpinned
        // engine) would otherwise let another node take over the session mid-stream, and the
        // application would be talking to someone else under the same connection.
        let pin = match &self.peer_node_id {
            Some(node_id) => self.expected_node_id.only(node_id),
            None => self.expected_node_id.clone(),
        };
        let Ok(mut next) = Self::from_context(self.context.clone(), self.role, pin, self.config.clone()) else {
            return false;
        };
        next.opened_by = opened_by;
        next.start(now);
        self.successor_started = Some(now);
        self.successor = Some(Box::new(next));
        true
    }

    /// Lets the new handshake's timers run.
    pub(super) fn successor_timeout(&mut self, now: Instant) {
        if let Some(successor) = self.successor.as_mut() {
            successor.handle_timeout(now);
            self.settle_successor(now);
        }
    }

    /// Adopts the new handshake once it completed, or forgets it once it failed.
    fn settle_successor(&mut self, now: Instant) {
        let Some(successor) = self.successor.as_mut() else {
            return;
        };
        match successor.state {
            State::Handshaking => {}
            State::Established => self.adopt_successor(now),
            State::Idle | State::Failed | State::Closed => {
                // Its alert still goes out: the peer (or forger) learns it was refused.
                for datagram in successor.stream.get_mut().take_outgoing() {
                    self.stream.get_mut().push_outgoing(datagram);
                }
                self.successor = None;
            }
        }
    }

    fn adopt_successor(&mut self, now: Instant) {
        let Some(mut next) = self.successor.take().map(|s| *s) else {
            return;
        };
        // Its own answers (the final flight) still go out, after anything already queued.
        while let Some(datagram) = next.stream.get_mut().pop_outgoing() {
            self.stream.get_mut().push_outgoing(datagram);
        }
        let mut pending = self.stream.get_mut().take_outgoing();
        std::mem::swap(&mut self.stream, &mut next.stream);
        for datagram in pending.drain(..) {
            self.stream.get_mut().push_outgoing(datagram);
        }
        // The new session's final flight answers its peer's repeats from now on.
        self.forget_flight();
        self.flight = std::mem::take(&mut next.flight);
        self.earlier_retransmissions += next.earlier_retransmissions;
        self.pin = next.pin;
        self.timer = next.timer;
        self.peer_node_id = next.peer_node_id;
        self.peer_public_key = next.peer_public_key;
        self.peer_certificate = next.peer_certificate;
        self.min_record_body = next.min_record_body;
        self.stats.handshake_duration = next.stats.handshake_duration;
        self.adopt_liveness(next.liveness, now);
        self.stats.peer_restarts += 1;
        self.successor_started = Some(now);
        // Messages that came with its final flight follow the ones not read yet.
        self.events
            .extend(next.events.into_iter().filter(|e| *e != Event::Connected));
    }

    /// A peer sends records of a session we no longer have: we restarted, it did not.
    /// Ask it for a new handshake (bounded; see `successor`).
    pub(super) fn ask_for_new_handshake(&mut self) {
        self.stats.dropped_stale_handshake += 1;
        if self.hello_requests_left > 0 {
            self.hello_requests_left -= 1;
            let seq = u64::from(HELLO_REQUESTS - self.hello_requests_left);
            self.stream.get_mut().push_outgoing(records::hello_request(seq));
        }
    }
}
