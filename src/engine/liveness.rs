//! Liveness on an established session: keepalives that hold NAT bindings open, the idle
//! timeout, and the round-trip estimate the handshake gives.
//!
//! **What a keepalive is.** A STUN Binding Indication (RFC 8489), 56 bytes, the datagram ICE
//! sends to keep NAT bindings alive (RFC 8445 §11), carrying one MESSAGE-INTEGRITY-SHA256
//! attribute. Its transaction ID holds a counter, and the attribute is an HMAC-SHA256 of the
//! header under a key exported from the DTLS session (RFC 5705, label
//! [`EXPORTER_LABEL`]), one key per direction.
//!
//! **Why any peer ignores it.** Its first byte is 0x00, which no DTLS record starts with
//! (RFC 7983 §7 demultiplexes 0..=3 to STUN and 20..=63 to DTLS). A DTLS stack reads its
//! header as a record of an unknown version and discards it, as RFC 6347 §4.1.2.7 asks for
//! invalid records (OpenSSL does so silently; tested against `openssl s_server`/`s_client`). A
//! WebRTC stack hands it to STUN, which answers no indication. The engine itself counts a
//! non-STUN, non-DTLS datagram in `dropped_not_dtls` as before.
//!
//! **Why it is authenticated.** Only the two ends of this session know the exported keys, so
//! a valid keepalive proves the peer is alive; the counter must grow, so a replayed one is
//! refused (`dropped_invalid`), and each direction has its own key, so our own keepalive
//! reflected back is refused too. That lets `idle_timeout` count the peer's keepalives as
//! authenticated traffic: two idle dtls_peer ends with `keepalive_interval` set keep each
//! other's idle timeout from firing, while a vanished peer is noticed.
//!
//! **When one is sent.** The check runs every `keepalive_interval`; a keepalive goes out only
//! if nothing else was sent since the previous check, so outgoing datagrams are never more
//! than two intervals apart while the session is idle, and a busy session sends none.
//!
//! **Round trip.** Neither keepalives (one-way) nor application messages (no acknowledgement)
//! measure a round trip, so the estimate is the handshake's: from our last flight to the
//! peer's answer that completed the handshake. It includes the peer's processing of that
//! flight (one ECDH and ECDSA operation), and it is left out, as Karn's rule says, when that
//! flight was retransmitted.

use std::time::Instant;

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::{CloseReason, Engine, State};
use crate::config::Role;

/// RFC 5705 exporter label for the keepalive keys.
pub const EXPORTER_LABEL: &str = "EXPORTER-dtls_peer-keepalive";

const BINDING_INDICATION: [u8; 2] = [0x00, 0x11];
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const MESSAGE_INTEGRITY_SHA256: [u8; 2] = [0x00, 0x1c];
/// Marks the transaction ID as ours, ahead of the 8-byte counter.
const TRANSACTION_TAG: [u8; 4] = *b"dtlp";
const HEADER: usize = 20;
const MAC: usize = 32;
/// Length of a keepalive on the wire.
pub const KEEPALIVE_LEN: usize = HEADER + 4 + MAC;

/// Keys for one session, one per direction.
#[derive(Clone)]
struct Keys {
    send: [u8; MAC],
    receive: [u8; MAC],
}

/// Liveness state of one engine.
#[derive(Clone, Default)]
pub(super) struct Liveness {
    keys: Option<Keys>,
    /// Last authenticated datagram from the peer (or the moment the session was established).
    last_heard: Option<Instant>,
    next_check: Option<Instant>,
    /// `datagrams_out` at the last keepalive check.
    sent_at_check: u64,
    sent: u64,
    highest_received: u64,
    /// Our latest handshake flight: when it went out and whether it was a retransmission.
    flight: Option<(Instant, bool)>,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Liveness")
            .field("last_heard", &self.last_heard)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Liveness {
    /// Our handshake flight went out at `now`; `again` when it had gone out before (a
    /// retransmission, a copy or an answer to the peer's repeat: the answer may be to either).
    pub(super) fn flight_sent(&mut self, now: Instant, again: bool) {
        self.flight = Some((now, again));
    }

    /// An authenticated datagram from the peer.
    pub(super) fn heard(&mut self, now: Instant) {
        // Set once established: nothing heard during the handshake counts.
        if self.last_heard.is_some() {
            self.last_heard = Some(now);
        }
    }
}

impl Engine {
    /// The session was established at `now`: start the clocks and take the handshake's
    /// round-trip sample. The keepalive keys are derived when first needed (`keys`): most
    /// sessions never send or receive a keepalive, and the export costs a PRF run.
    pub(super) fn liveness_established(&mut self, now: Instant) {
        let live = &mut self.liveness;
        // A new session (the peer restarted) numbers its keepalives from 1 again, under keys
        // of its own.
        live.sent = 0;
        live.highest_received = 0;
        live.keys = None;
        live.last_heard = Some(now);
        live.next_check = self.config.keepalive_interval.map(|i| now + i);
        live.sent_at_check = self.stats.datagrams_out + self.tls.stream.get_ref().outgoing_len() as u64;
        self.stats.handshake_rtt = match live.flight {
            Some((at, false)) => Some(now.saturating_duration_since(at)),
            _ => None,
        };
    }

    /// This session's keepalive keys, exported (RFC 5705) on first use; None before the
    /// session is established or if OpenSSL cannot export.
    fn keys(&mut self) -> Option<&Keys> {
        if self.state() != State::Established {
            return None;
        }
        if self.liveness.keys.is_none() {
            let mut material = [0u8; 2 * MAC];
            self.tls
                .stream
                .ssl()
                .export_keying_material(&mut material, EXPORTER_LABEL, None)
                .ok()?;
            let (client, server) = material.split_at(MAC);
            let (mut send, mut receive) = ([0u8; MAC], [0u8; MAC]);
            let (ours, theirs) = match self.role {
                Role::Client => (client, server),
                Role::Server => (server, client),
            };
            send.copy_from_slice(ours);
            receive.copy_from_slice(theirs);
            self.liveness.keys = Some(Keys { send, receive });
        }
        self.liveness.keys.as_ref()
    }

    /// The peer restarted and `theirs` belongs to its new, now adopted session.
    pub(super) fn adopt_liveness(&mut self, theirs: Liveness, now: Instant) {
        self.liveness = theirs;
        self.liveness_established(now);
    }

    /// Takes `datagram` if it is a keepalive (valid or not); false if it is something else.
    pub(super) fn take_keepalive(&mut self, now: Instant, datagram: &[u8]) -> bool {
        if !is_keepalive(datagram) {
            return false;
        }
        let counter = u64::from_be_bytes(datagram[12..HEADER].try_into().unwrap_or_default());
        let valid = counter > self.liveness.highest_received
            && self.keys().is_some_and(|k| {
                mac(&k.receive, &datagram[..HEADER])
                    .is_some_and(|expected| openssl::memcmp::eq(&expected, &datagram[HEADER + 4..]))
            });
        if valid {
            self.liveness.highest_received = counter;
            self.liveness.heard(now);
            self.stats.keepalives_in += 1;
        } else {
            self.stats.dropped_invalid += 1;
        }
        true
    }

    /// When liveness needs `handle_timeout` next, while established.
    pub(super) fn liveness_deadline(&self) -> Option<Instant> {
        if self.state() != State::Established {
            return None;
        }
        let idle = self
            .config
            .idle_timeout
            .zip(self.liveness.last_heard)
            .map(|(timeout, heard)| heard + timeout);
        [idle, self.liveness.next_check].into_iter().flatten().min()
    }

    /// Closes an idle session, or sends a keepalive when one is due.
    pub(super) fn liveness_timeout(&mut self, now: Instant) {
        if self.state() != State::Established {
            return;
        }
        if let (Some(timeout), Some(heard)) = (self.config.idle_timeout, self.liveness.last_heard) {
            if now >= heard + timeout {
                // close_notify tells a peer that is alive but silent that we gave up.
                let _ = self.tls.stream.shutdown();
                return self.close_with(CloseReason::IdleTimeout(timeout));
            }
        }
        let (Some(interval), Some(at)) = (self.config.keepalive_interval, self.liveness.next_check) else {
            return;
        };
        if now < at {
            return;
        }
        if self.datagrams_sent() == self.liveness.sent_at_check {
            if let Some(keepalive) = self.next_keepalive() {
                self.tls.stream.get_mut().push_outgoing(keepalive);
                self.stats.keepalives_out += 1;
            }
        }
        self.liveness.sent_at_check = self.datagrams_sent();
        self.liveness.next_check = Some(now + interval);
    }

    /// Datagrams sent or queued to send (`poll_transmit` counts them only when collected).
    fn datagrams_sent(&self) -> u64 {
        self.stats.datagrams_out + self.tls.stream.get_ref().outgoing_len() as u64
    }

    fn next_keepalive(&mut self) -> Option<Vec<u8>> {
        let send = self.keys()?.send;
        let live = &mut self.liveness;
        live.sent += 1;
        let mut datagram = Vec::with_capacity(KEEPALIVE_LEN);
        datagram.extend_from_slice(&BINDING_INDICATION);
        // The length counts the attributes, here the integrity attribute alone (RFC 8489 §14.6).
        datagram.extend_from_slice(&u16::try_from(4 + MAC).unwrap_or_default().to_be_bytes());
        datagram.extend_from_slice(&MAGIC_COOKIE);
        datagram.extend_from_slice(&TRANSACTION_TAG);
        datagram.extend_from_slice(&live.sent.to_be_bytes());
        let tag = mac(&send, &datagram)?;
        datagram.extend_from_slice(&MESSAGE_INTEGRITY_SHA256);
        datagram.extend_from_slice(&u16::try_from(MAC).unwrap_or_default().to_be_bytes());
        datagram.extend_from_slice(&tag);
        Some(datagram)
    }
}

/// Whether `datagram` has the shape of our keepalive (its integrity is checked separately).
pub fn is_keepalive(datagram: &[u8]) -> bool {
    datagram.len() == KEEPALIVE_LEN
        && datagram[..2] == BINDING_INDICATION
        && datagram[4..8] == MAGIC_COOKIE
        && datagram[8..12] == TRANSACTION_TAG
        && datagram[HEADER..HEADER + 2] == MESSAGE_INTEGRITY_SHA256
}

fn mac(key: &[u8; MAC], data: &[u8]) -> Option<Vec<u8>> {
    let key = PKey::hmac(key).ok()?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key).ok()?;
    signer.update(data).ok()?;
    signer.sign_to_vec().ok()
}
