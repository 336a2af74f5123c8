//! OpenSSL's DTLS retransmission timer, held out of the way so the engine retransmits itself.
//!
//! OpenSSL decides whether its timer has expired against the wall clock, and it retransmits on
//! its own when a read finds the timer expired, so no schedule handed to OpenSSL can follow the
//! caller's clock. Through `DTLS_set_timer_cb` the engine gives OpenSSL a timer longer than any
//! handshake may last, so OpenSSL never retransmits by itself, and learns from the same
//! callback when a new flight starts; the engine keeps that flight's datagrams and sends them
//! again on its own schedule (see `flight`). openssl-sys exposes neither the callback nor the
//! `DTLSv1_get_timeout` control, hence the raw calls in this module, the only unsafe code in
//! the crate.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use foreign_types::ForeignTypeRef;
use libc::{c_int, c_uint, c_void};
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl_sys::SSL;

const DTLS_CTRL_GET_TIMEOUT: c_int = 73;

/// The timer OpenSSL gets for every flight, in microseconds: 4000 s, longer than the longest
/// `handshake_timeout` (3600 s), so OpenSSL's own retransmission never fires.
const HOLD_US: c_uint = 4_000_000_000;

extern "C" {
    // Present in OpenSSL >= 1.1.1 (we vendor 3.x); see openssl/ssl.h.
    fn DTLS_set_timer_cb(s: *mut SSL, cb: Option<unsafe extern "C" fn(*mut SSL, c_uint) -> c_uint>);
}

/// What OpenSSL did with its timer, shared with the C callback.
#[derive(Debug, Default)]
pub(crate) struct TimerState {
    /// Set when OpenSSL started its timer for a new flight since the engine last looked.
    flight_started: AtomicBool,
}

impl TimerState {
    /// Whether OpenSSL started a new flight since the last call.
    pub(crate) fn take_flight_start(&self) -> bool {
        self.flight_started.swap(false, Ordering::AcqRel)
    }
}

fn index() -> Index<Ssl, Arc<TimerState>> {
    static INDEX: OnceLock<Index<Ssl, Arc<TimerState>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index allocation"))
}

unsafe extern "C" fn timer_cb(ssl: *mut SSL, previous_us: c_uint) -> c_uint {
    // SAFETY: OpenSSL passes the live SSL the callback was installed on.
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    // OpenSSL passes 0 when a flight starts its timer, and the last duration when the timer
    // expired, which the hold keeps from happening.
    if previous_us == 0 {
        if let Some(state) = ssl.ex_data(index()) {
            state.flight_started.store(true, Ordering::Release);
        }
    }
    HOLD_US
}

/// Holds OpenSSL's timer out of the way on this connection and reports flights to `state`.
pub(crate) fn install(ssl: &mut SslRef, state: Arc<TimerState>) {
    ssl.set_ex_data(index(), state);
    // SAFETY: `ssl` is a valid SSL; the callback only reads ex_data set just above, which
    // lives as long as the SSL.
    unsafe { DTLS_set_timer_cb(ssl.as_ptr(), Some(timer_cb)) };
}

/// Whether OpenSSL's retransmission timer runs: it awaits the peer's answer to our flight.
pub(crate) fn is_running(ssl: &SslRef) -> bool {
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
    running == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_hold_outlasts_any_handshake() {
        assert!(Duration::from_micros(HOLD_US.into()) > crate::config::MAX_HANDSHAKE_TIMEOUT);
    }
}
