//! Trying a datagram from an unknown address on an established session, for NAT rebinding
//! (the endpoint's opt-in `allow_migration`). DTLS 1.2 through OpenSSL has no Connection ID,
//! so the only proof that a datagram from a new address is the peer's is that it
//! authenticates under the session's keys.

use std::time::Instant;

use super::{Engine, State};
use crate::engine::is_keepalive;

/// Record type of application data.
const APPLICATION_DATA: u8 = 23;

impl Engine {
    /// Feeds a datagram that came from another address than the peer's and says whether it
    /// proved to be this session's: it carried a message that decrypted, or a keepalive whose
    /// MAC verified. One that did not leaves no trace (no counter moves: the endpoint chose to
    /// try it here, the peer sent nothing wrong). Only application data and keepalives are
    /// tried; a handshake or alert record from a new address is never the peer's.
    pub fn try_from_new_address(&mut self, now: Instant, datagram: &[u8]) -> bool {
        let candidate = (datagram.first() == Some(&APPLICATION_DATA) && datagram.get(3..5) != Some(&[0, 0]))
            || is_keepalive(datagram);
        if self.state() != State::Established || !candidate {
            return false;
        }
        let before = self.stats.clone();
        self.handle_datagram(now, datagram);
        let proved = self.stats.messages_in > before.messages_in || self.stats.keepalives_in > before.keepalives_in;
        if !proved {
            self.stats = before;
        }
        proved
    }
}
