//! A server engine that begins from a ClientHello OpenSSL's `DTLSv1_listen` accepted.
//!
//! `DTLSv1_listen` answers a ClientHello without a valid cookie with a HelloVerifyRequest
//! (right record sequence, message_seq 0) and keeps nothing; for one with a valid cookie it
//! leaves the SSL exactly where a server stands after the cookie exchange (message_seq 1,
//! hello_verify_done, the ClientHello buffered), so `SSL_accept` just goes on. openssl-sys
//! does not bind it, hence the raw calls here.
//!
//! OpenSSL's cookie callbacks see neither the client's address nor the ClientHello, so the
//! caller computes the cookies for this ClientHello first (see `endpoint::cookie`) and the
//! callbacks read them from a thread-local for the length of the call.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::Instant;

use foreign_types::ForeignTypeRef;
use libc::c_int;
use openssl::error::ErrorStack;
use openssl::ssl::{SslContext, SslRef};
use openssl_sys::{BIO_ADDR, SSL};

use super::phase::{Handshake, HelloStage};
use super::{records, Engine, Tls};
use crate::config::{Config, ConfigError, Role};
use crate::trust::Pin;

/// Bytes in the cookies the callbacks hand out and accept (an HMAC-SHA256).
pub(crate) const LISTEN_COOKIE_LEN: usize = 32;

extern "C" {
    // Present in OpenSSL >= 1.1.0 (we vendor 3.x); see openssl/ssl.h and openssl/bio.h.
    fn DTLSv1_listen(s: *mut SSL, client: *mut BIO_ADDR) -> c_int;
    fn BIO_ADDR_new() -> *mut BIO_ADDR;
    fn BIO_ADDR_free(addr: *mut BIO_ADDR);
}

/// The cookies valid for the ClientHello being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cookies {
    /// The one a HelloVerifyRequest hands out (the current secret's).
    pub(crate) issue: [u8; LISTEN_COOKIE_LEN],
    /// The previous secret's, still accepted.
    pub(crate) previous: Option<[u8; LISTEN_COOKIE_LEN]>,
}

impl Cookies {
    /// Whether `cookie` is one of them, compared in constant time.
    pub(crate) fn accepts(&self, cookie: &[u8]) -> bool {
        let same = |valid: &[u8; LISTEN_COOKIE_LEN]| cookie.len() == valid.len() && openssl::memcmp::eq(cookie, valid);
        same(&self.issue) | self.previous.as_ref().is_some_and(same)
    }
}

thread_local! {
    /// The cookies of the ClientHello a `Listening` call is handling on this thread.
    static COOKIES: Cell<Option<Cookies>> = const { Cell::new(None) };
}

/// Sets `COOKIES` for as long as it lives (cleared on unwind too).
struct CookieScope;

impl CookieScope {
    fn enter(cookies: Cookies) -> Self {
        COOKIES.set(Some(cookies));
        Self
    }
}

impl Drop for CookieScope {
    fn drop(&mut self) {
        COOKIES.set(None);
    }
}

/// The context's cookie-generation callback: outside a `Listening` call it fails, so no
/// other path (a server engine has no `COOKIE_EXCHANGE`) hands out a cookie.
pub(crate) fn generate_cookie(_: &mut SslRef, out: &mut [u8]) -> Result<usize, ErrorStack> {
    match (COOKIES.get(), out.get_mut(..LISTEN_COOKIE_LEN)) {
        (Some(cookies), Some(out)) => {
            out.copy_from_slice(&cookies.issue);
            Ok(LISTEN_COOKIE_LEN)
        }
        _ => Err(ErrorStack::get()),
    }
}

/// The context's cookie-verification callback (called by `DTLSv1_listen`, and again by
/// `SSL_accept` when it reads the ClientHello `DTLSv1_listen` buffered).
pub(crate) fn verify_cookie(_: &mut SslRef, cookie: &[u8]) -> bool {
    COOKIES.get().is_some_and(|cookies| cookies.accepts(cookie))
}

/// The server side's listening session: one SSL reused for every ClientHello from an
/// address without a connection (`DTLSv1_listen` starts with `SSL_clear`), handed to the new
/// engine when it accepts.
pub(crate) struct Listening {
    context: SslContext,
    config: Config,
    pin: Pin,
    session: Tls,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening").finish_non_exhaustive()
    }
}

impl Listening {
    /// Server engines made by `accept` run on `context` with `config`, pinned by `pin`.
    pub(crate) fn new(context: SslContext, config: Config, pin: Pin) -> Result<Self, ConfigError> {
        config.validate()?;
        u32::try_from(config.mtu).map_err(|_| ConfigError::Mtu(config.mtu))?;
        let session = Self::session(&context, &config, &pin)?;
        Ok(Self {
            context,
            config,
            pin,
            session,
        })
    }

    fn session(context: &SslContext, config: &Config, pin: &Pin) -> Result<Tls, ConfigError> {
        Engine::attempt_session(context, Role::Server, config, pin).map_err(|e| ConfigError::OpenSsl(e.to_string()))
    }

    /// The HelloVerifyRequest for `hello` (a ClientHello without a valid cookie), carrying
    /// `cookies.issue`; `None` if OpenSSL did not answer it.
    pub(crate) fn verify_request(&mut self, hello: &[u8], cookies: Cookies) -> Option<Vec<u8>> {
        let _scope = CookieScope::enter(cookies);
        self.session.stream.get_mut().push_incoming(hello.to_vec());
        let listened = listen(&mut self.session);
        let pipe = self.session.stream.get_mut();
        pipe.clear_incoming();
        let answer = pipe.pop_outgoing();
        // Nothing else OpenSSL wrote belongs anywhere.
        pipe.take_outgoing();
        (listened == 0).then_some(answer)?
    }

    /// A server engine for `hello`, a ClientHello carrying one of `cookies`, that has taken
    /// it in and started its handshake at `now`; `None` if OpenSSL did not accept it.
    /// With `pin`, the engine accepts whom that pin names instead of the listener's own pin
    /// (a peer the endpoint waits for by address).
    pub(crate) fn accept(&mut self, now: Instant, hello: &[u8], cookies: Cookies, pin: Option<&Pin>) -> Option<Engine> {
        // The engine numbers the peer's epoch-0 records itself (see `records`); the ones in
        // this datagram are the first it gets.
        let mut datagram = hello.to_vec();
        let mut next_epoch_zero_record = 0;
        records::renumber_epoch_zero(&mut datagram, &mut next_epoch_zero_record);
        let mut session = match pin {
            // The verifier is set on the session when it is made, so another pin needs its own.
            Some(pin) => Self::session(&self.context, &self.config, pin).ok()?,
            None => {
                let fresh = Self::session(&self.context, &self.config, &self.pin).ok()?;
                std::mem::replace(&mut self.session, fresh)
            }
        };
        // The scope also covers `start`: SSL_accept checks the cookie once more.
        let _scope = CookieScope::enter(cookies);
        session.stream.get_mut().push_incoming(datagram);
        if listen(&mut session) != 1 {
            return None;
        }
        let mut engine = Engine::from_session(
            self.context.clone(),
            Role::Server,
            pin.unwrap_or(&self.pin).clone(),
            self.config.clone(),
            session,
        );
        // What `process` notes for a ClientHello, which this one did not pass through.
        engine.stats.datagrams_in += 1;
        engine.stats.bytes_in += hello.len() as u64;
        engine.flight.hear(records::repeat_key(hello));
        let mut handshake = Handshake::new(Role::Server, now, now + engine.config.handshake_timeout);
        handshake.next_epoch_zero_record = next_epoch_zero_record;
        if let Some(hellos) = &mut handshake.hellos {
            hellos.stage = HelloStage::Seen;
            hellos.answering = records::client_hello_random(hello);
        }
        engine.begin(now, handshake);
        Some(engine)
    }
}

/// Runs `DTLSv1_listen` on the datagram queued in `session`: 1 when it accepted a cookie,
/// 0 when it answered or dropped the datagram, below 0 on an OpenSSL error. Leaves the
/// thread's error queue empty.
fn listen(session: &mut Tls) -> c_int {
    // SAFETY: plain allocation; null is checked.
    let client = unsafe { BIO_ADDR_new() };
    if client.is_null() {
        return -1;
    }
    // SAFETY: the SSL is live and its BIO is our pipe; `client` is a valid BIO_ADDR that
    // DTLSv1_listen fills or clears, freed right after.
    let result = unsafe {
        let result = DTLSv1_listen(session.stream.ssl().as_ptr(), client);
        BIO_ADDR_free(client);
        result
    };
    // A dropped datagram leaves its reason queued; it must not show up as a later call's error.
    drop(ErrorStack::get());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_accepted_by_value_and_length_only() {
        let cookies = Cookies {
            issue: [1; LISTEN_COOKIE_LEN],
            previous: Some([2; LISTEN_COOKIE_LEN]),
        };
        assert!(cookies.accepts(&[1; LISTEN_COOKIE_LEN]) && cookies.accepts(&[2; LISTEN_COOKIE_LEN]));
        assert!(!cookies.accepts(&[3; LISTEN_COOKIE_LEN]));
        assert!(!cookies.accepts(&[1; LISTEN_COOKIE_LEN - 1]) && !cookies.accepts(&[]));
        let current_only = Cookies {
            previous: None,
            ..cookies
        };
        assert!(!current_only.accepts(&[2; LISTEN_COOKIE_LEN]));
    }

    #[test]
    fn the_callbacks_answer_only_inside_a_scope() {
        let cookies = Cookies {
            issue: [5; LISTEN_COOKIE_LEN],
            previous: None,
        };
        assert_eq!(COOKIES.get(), None);
        {
            let _scope = CookieScope::enter(cookies);
            assert_eq!(COOKIES.get(), Some(cookies));
        }
        assert_eq!(COOKIES.get(), None);
    }
}
