//! OpenSSL's DTLS retransmission timer, steered by the engine's schedule.
//!
//! OpenSSL decides whether its timer has expired against the wall clock, and it also
//! retransmits on its own when a read finds the timer expired, so the timer cannot simply be
//! shrunk to hand control to the caller's clock. Instead the engine hands OpenSSL its schedule
//! (initial timeout, doubling, cap) through `DTLS_set_timer_cb`, and learns through the same
//! callback when a flight's timer starts or a retransmission happens, so its own deadline
//! follows the `now` it is given. openssl-sys exposes neither the callback nor the
//! `DTLSv1_get_timeout`/`DTLSv1_handle_timeout` controls, hence the raw calls in this module,
//! the only unsafe code in the crate.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use foreign_types::ForeignTypeRef;
use libc::{c_int, c_long, c_uint, c_void};
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl_sys::SSL;

const DTLS_CTRL_GET_TIMEOUT: c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;

extern "C" {
    // Present in OpenSSL >= 1.1.1 (we vendor 3.x); see openssl/ssl.h.
    fn DTLS_set_timer_cb(s: *mut SSL, cb: Option<unsafe extern "C" fn(*mut SSL, c_uint) -> c_uint>);
}

/// The schedule and what OpenSSL did with it, shared with the C callback.
#[derive(Debug)]
pub(crate) struct TimerState {
    initial_us: u32,
    max_us: u32,
    /// Duration OpenSSL was last given, in microseconds.
    last_us: AtomicU32,
    /// Set whenever OpenSSL (re)started its timer since the engine last looked.
    restarted: AtomicBool,
    retransmissions: AtomicU64,
}

impl TimerState {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        Self {
            initial_us: us(initial),
            max_us: us(max),
            last_us: AtomicU32::new(0),
            restarted: AtomicBool::new(false),
            retransmissions: AtomicU64::new(0),
        }
    }

    /// The timer duration OpenSSL started since the last call, if it (re)started one.
    pub(crate) fn take_restart(&self) -> Option<Duration> {
        self.restarted
            .swap(false, Ordering::AcqRel)
            .then(|| Duration::from_micros(self.last_us.load(Ordering::Acquire).into()))
    }

    pub(crate) fn retransmissions(&self) -> u64 {
        self.retransmissions.load(Ordering::Relaxed)
    }

    fn next(&self, previous_us: u32) -> u32 {
        if previous_us == 0 {
            self.initial_us
        } else {
            self.retransmissions.fetch_add(1, Ordering::Relaxed);
            previous_us.saturating_mul(2).min(self.max_us)
        }
    }
}

fn index() -> Index<Ssl, Arc<TimerState>> {
    static INDEX: OnceLock<Index<Ssl, Arc<TimerState>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index allocation"))
}

unsafe extern "C" fn timer_cb(ssl: *mut SSL, previous_us: c_uint) -> c_uint {
    // SAFETY: OpenSSL passes the live SSL the callback was installed on.
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    match ssl.ex_data(index()) {
        Some(state) => {
            let next = state.next(previous_us);
            state.last_us.store(next, Ordering::Release);
            state.restarted.store(true, Ordering::Release);
            next
        }
        // Unreachable by construction (installed together); fall back to OpenSSL's 1 s.
        None => 1_000_000,
    }
}

/// Makes OpenSSL use `state`'s schedule on this connection.
pub(crate) fn install(ssl: &mut SslRef, state: Arc<TimerState>) {
    ssl.set_ex_data(index(), state);
    // SAFETY: `ssl` is a valid SSL; the callback only reads ex_data set just above, which
    // lives as long as the SSL.
    unsafe { DTLS_set_timer_cb(ssl.as_ptr(), Some(timer_cb)) };
}

/// Whether OpenSSL's retransmission timer is running, and its wall-clock time left.
pub(crate) fn time_left(ssl: &SslRef) -> Option<Duration> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: DTLS_CTRL_GET_TIMEOUT writes one `struct timeval` through the pointer.
    let running = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_GET_TIMEOUT,
            0,
            (&mut tv as *mut libc::timeval).cast::<c_void>(),
        )
    };
    (running == 1).then(|| {
        Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
    })
}

/// What `DTLSv1_handle_timeout` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimeoutOutcome {
    /// OpenSSL's timer had not expired yet; nothing was sent.
    NotDue,
    /// The buffered flight was sent again.
    Retransmitted,
    /// OpenSSL gave up (too many retransmissions) or failed to resend.
    Failed,
}

/// Asks OpenSSL to retransmit the current flight if its timer has expired.
pub(crate) fn handle_timeout(ssl: &SslRef) -> TimeoutOutcome {
    // SAFETY: DTLS_CTRL_HANDLE_TIMEOUT takes no argument.
    let r: c_long = unsafe { openssl_sys::SSL_ctrl(ssl.as_ptr(), DTLS_CTRL_HANDLE_TIMEOUT, 0, std::ptr::null_mut()) };
    match r {
        0 => TimeoutOutcome::NotDue,
        r if r > 0 => TimeoutOutcome::Retransmitted,
        _ => TimeoutOutcome::Failed,
    }
}
