//! What the endpoint does with a datagram from an address that has no connection: the
//! stateless cookie exchange of RFC 6347 §4.2.1.
//!
//! A ClientHello without a valid cookie gets a HelloVerifyRequest and leaves nothing behind
//! (no allocation outlives the call but the answer), so forged source addresses cost a little
//! CPU and no memory. Only a ClientHello that returns a cookie made for its address, which
//! takes receiving at that address, creates state: a server engine.

use std::net::SocketAddr;
use std::time::Instant;

use openssl::ssl::SslContext;

use super::cookie::{ClientHello, CookieSecrets};
use crate::config::{Config, ConfigError};
use crate::engine::{Cookies, Engine, Listening};
use crate::identity::Identity;
use crate::policy;
use crate::trust::Pin;

/// What a datagram from an address without a connection led to.
#[derive(Debug)]
pub enum Hello {
    /// A ClientHello with a valid cookie: a server engine that has taken it in and started its
    /// handshake at `now`; its answer waits in `poll_transmit`. The endpoint registers it.
    Accepted(Box<Engine>),
    /// A HelloVerifyRequest to send back to the sender.
    Answer(Vec<u8>),
    /// Not a ClientHello we answer (another record, a later epoch, a fragment, malformed):
    /// dropped, for the endpoint to count.
    Ignored,
}

/// Answers ClientHellos statelessly and makes a server engine for each that returns a valid
/// cookie.
#[derive(Debug)]
pub struct Listener {
    listening: Listening,
    secrets: CookieSecrets,
}

impl Listener {
    /// A listener whose engines authenticate as `identity` and accept the peer `pin` names
    /// (as [`Engine::new`] does for a server).
    pub fn new(identity: &Identity, expected_node_id: Option<String>, config: Config) -> Result<Self, ConfigError> {
        let context = policy::context(identity, &config)?;
        Self::from_context(context, config, Pin::new(expected_node_id, identity.scheme().clone()))
    }

    /// A listener on the endpoint's context (the identity and policy are in it).
    pub(crate) fn from_context(context: SslContext, config: Config, pin: Pin) -> Result<Self, ConfigError> {
        Ok(Self {
            listening: Listening::new(context, config, pin)?,
            secrets: CookieSecrets::new().map_err(|e| ConfigError::OpenSsl(e.to_string()))?,
        })
    }

    /// Handles one datagram from `from`, which has no connection; `now` also rotates the
    /// cookie secret (see [`super::COOKIE_ROTATION`]).
    pub fn hello(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Hello {
        self.hello_pinned(now, from, datagram, None)
    }

    /// As `hello`, but an accepted engine accepts whom `pin` names, when given, instead of
    /// the listener's own pin (a peer the endpoint dialled as the server and waits for).
    pub(crate) fn hello_pinned(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], pin: Option<&Pin>) -> Hello {
        let Some(hello) = ClientHello::parse(datagram) else {
            return Hello::Ignored;
        };
        // Without a secret (OpenSSL's random generator failed) nothing can be answered safely.
        if self.secrets.rotate(now).is_err() {
            return Hello::Ignored;
        }
        let Ok((issue, previous)) = self.secrets.cookies(from, &hello) else {
            return Hello::Ignored;
        };
        let cookies = Cookies { issue, previous };
        let outcome = if cookies.accepts(hello.cookie) {
            self.listening
                .accept(now, datagram, cookies, pin)
                .map(|e| Hello::Accepted(Box::new(e)))
        } else {
            self.listening.verify_request(datagram, cookies).map(Hello::Answer)
        };
        outcome.unwrap_or(Hello::Ignored)
    }
}

// The endpoint moves its listener into the task that owns the socket.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Listener>();
};
