//! Engine tests: two engines (or an engine and a raw OpenSSL peer) over in-memory links.
#![allow(unreachable_pub)]
mod allow;
mod channels;
mod common;
mod cookie;
mod corruption;
mod driver;
mod endpoint;
mod faults;
mod garbage;
mod handshake;
mod identity_keys;
mod liveness;
mod loss;
mod pinning;
mod policy;
mod random_input;
mod replayed_hello;
mod restarted_peer;
