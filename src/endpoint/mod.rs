//! Many peers on one UDP socket (issue 11): the sans-IO endpoint's parts.
//!
//! - `cookie`: stateless cookies (RFC 6347 §4.2.1) and the ClientHello fields they cover.
//! - `listen`: the [`Listener`] that answers ClientHellos from addresses without a connection.

mod cookie;
mod listen;

pub use cookie::{COOKIE_LEN, COOKIE_ROTATION};
pub use listen::{Hello, Listener};
