//! dtls_peer: authenticated, encrypted DTLS 1.2 channels over already hole-punched UDP paths.
//!
//! - [`engine`]: a sans-IO DTLS engine. Feed it datagrams and the current time; after every
//!   call drain `poll_transmit` (datagrams to send) and `poll_event` (connected, messages,
//!   failures), then sleep until `poll_timeout` and call `handle_timeout`.
//! - [`endpoint`]: a sans-IO endpoint: many peers on one socket, with cookies, bounds and
//!   the application's own datagrams.
//! - [`alert`]: the TLS alerts sent and recognised, and what each means to the engine.
//! - [`driver`]: runs an engine over a real UDP socket on tokio.
//! - [`identity`]: node identities (P-256, Ed25519, RSA or secp256k1 node keys) and their
//!   certificates.
//! - [`trust`]: the peer's node key and node ID (SHA-256, libp2p or the application's
//!   scheme), judged inside the handshake.
//! - `bindings` (feature `python`): the `dtls_peer._native` extension module.

pub mod alert;
pub mod channels;
pub mod config;
pub mod driver;
pub mod endpoint;
pub mod engine;
pub mod identity;
mod policy;
pub mod trust;

pub use alert::Alert;
pub use config::{ChannelsConfig, Config, ConfigError, Role};
pub use engine::{
    is_keepalive, CloseReason, Engine, Event, HandshakeFailure, SendError, State, Stats, VerificationFailure,
    EXPORTER_LABEL, KEEPALIVE_LEN,
};
pub use identity::{Identity, IdentityError};
pub use trust::{KeyType, Libp2p, NodeIdScheme, Sha256};

#[cfg(feature = "python")]
mod bindings;
