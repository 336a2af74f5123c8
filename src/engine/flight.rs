//! Our current handshake flight, kept so the engine sends it again itself, on its own schedule
//! and by the `now` it is given (OpenSSL's timer is held out of the way, see `timer`).
//!
//! Copies are byte-identical to the first transmission. That is harmless in DTLS 1.2: a copy
//! of a record the peer already took is dropped by its replay window (our engine numbers
//! epoch-0 records afresh on receipt, see `records`, and handshake messages carry their own
//! sequence numbers against duplicates), and a copy of a lost one is what the peer needs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// After a timeout shows the path loses datagrams, each retransmission goes out twice, the
/// copy this fraction of the initial timeout later (apart, so a short burst of loss does not
/// take both).
const COPY_GAP_DIVISOR: u32 = 4;

/// Keys of the peer's datagrams remembered per attempt (a handshake is a handful of flights).
const HEARD: usize = 16;

/// The flight and its retransmission schedule.
#[derive(Debug, Default)]
pub(super) struct Flight {
    /// The datagrams OpenSSL wrote for the flight.
    datagrams: Vec<Vec<u8>>,
    /// The current retransmission timeout (doubles up to the cap).
    interval: Duration,
    /// When the flight goes out again, while the peer's answer is awaited.
    retransmit_at: Option<Instant>,
    /// When the second copy of the last retransmission goes out.
    copy_at: Option<Instant>,
    /// The spacing of that copy.
    copy_gap: Duration,
    /// When it last went out in full.
    sent_at: Option<Instant>,
    retransmissions: u64,
    /// This attempt has seen loss (a timeout, or a repeat from the peer): every flight and
    /// answer from now on goes out twice.
    lossy: bool,
    /// Keys (`records::repeat_key`) of the datagrams the peer sent for this attempt.
    heard: VecDeque<u64>,
}

impl Flight {
    /// OpenSSL wrote a new flight at `now` and awaits the peer's answer.
    pub(super) fn start(&mut self, now: Instant, datagrams: Vec<Vec<u8>>, initial: Duration) {
        self.datagrams = datagrams;
        self.interval = initial;
        self.retransmit_at = Some(now + initial);
        self.copy_gap = initial / COPY_GAP_DIVISOR;
        self.copy_at = self.lossy.then(|| now + self.copy_gap);
        self.sent_at = Some(now);
    }

    /// Our last flight, which needs no answer: kept only to answer the peer's repeats.
    pub(super) fn last(&mut self, now: Instant, datagrams: Vec<Vec<u8>>, initial: Duration) {
        self.datagrams = datagrams;
        self.answered();
        self.copy_gap = initial / COPY_GAP_DIVISOR;
        self.sent_at = Some(now);
    }

    /// Records a datagram from the peer; true if the same one came before (a repeat).
    pub(super) fn hear(&mut self, key: u64) -> bool {
        if self.heard.contains(&key) {
            self.lossy = true;
            return true;
        }
        if self.heard.len() == HEARD {
            self.heard.pop_front();
        }
        self.heard.push_back(key);
        false
    }

    /// Whether the peer sent this datagram before.
    pub(super) fn heard(&self, key: u64) -> bool {
        self.heard.contains(&key)
    }

    /// Whether a copy of what went out last is still to follow.
    pub(super) fn copy_pending(&self) -> bool {
        self.copy_at.is_some()
    }

    /// Whether the peer's answer to the flight is awaited.
    pub(super) fn awaits_answer(&self) -> bool {
        self.retransmit_at.is_some()
    }

    /// The datagrams to send again at once because the peer repeated its own flight (it
    /// missed ours). Each of the peer's spaced copies gets an answer, so the answer goes out
    /// as often and as spaced as the repeat; a copy the link duplicated (arriving within half
    /// that spacing) does not.
    pub(super) fn answer(&mut self, now: Instant) -> Option<Vec<Vec<u8>>> {
        let spacing = self.copy_gap / 2;
        if self.datagrams.is_empty() || self.sent_at.is_some_and(|at| now < at + spacing) {
            return None;
        }
        self.sent_at = Some(now);
        self.retransmissions += 1;
        Some(self.datagrams.clone())
    }

    /// Moves the count of flights sent again out (to the engine's total).
    pub(super) fn take_retransmissions(&mut self) -> u64 {
        std::mem::take(&mut self.retransmissions)
    }

    /// The peer answered (OpenSSL stopped its timer): nothing more to send on a schedule.
    pub(super) fn answered(&mut self) {
        self.retransmit_at = None;
        self.copy_at = None;
    }

    /// When `due` must next be called.
    pub(super) fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.copy_at].into_iter().flatten().min()
    }

    /// The datagrams to send again at `now`, if a retransmission or its copy is due; the
    /// timeout doubles up to `cap`.
    pub(super) fn due(&mut self, now: Instant, cap: Duration) -> Option<Vec<Vec<u8>>> {
        if self.copy_at.is_some_and(|at| now >= at) {
            self.copy_at = None;
            return Some(self.datagrams.clone());
        }
        if self.retransmit_at.is_none_or(|at| now < at) {
            return None;
        }
        self.lossy = true;
        self.copy_at = Some(now + self.copy_gap);
        self.interval = (self.interval * 2).min(cap);
        self.retransmit_at = Some(now + self.interval);
        self.retransmissions += 1;
        self.sent_at = Some(now);
        Some(self.datagrams.clone())
    }

    /// Flights sent again so far.
    pub(super) fn retransmissions(&self) -> u64 {
        self.retransmissions
    }
}
