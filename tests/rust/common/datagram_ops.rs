//! Turns a byte string into datagrams to inject: raw bytes, or a genuine datagram with some
//! bytes overwritten, or one cut short. Shared by the randomized test (bytes from a seeded
//! RNG) and the fuzz target (bytes from libFuzzer), so both reach OpenSSL's parsers with
//! datagrams that are almost right.
#![allow(dead_code)]

use dtls_peer::{Engine, Event};

/// Reads operations from `data`; `genuine` are datagrams to start edits from.
pub struct Ops<'a> {
    pub data: &'a [u8],
    pub genuine: &'a [Vec<u8>],
}

impl Ops<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(usize::from(self.byte()?) << 8 | usize::from(self.byte()?))
    }

    fn pick(&mut self) -> Option<Vec<u8>> {
        let i = usize::from(self.byte()?) % self.genuine.len().max(1);
        self.genuine.get(i).cloned()
    }
}

impl Iterator for Ops<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        match self.byte()? % 3 {
            0 => {
                let len = (self.u16()? % 1500).min(self.data.len());
                let (d, rest) = self.data.split_at(len);
                self.data = rest;
                Some(d.to_vec())
            }
            1 => {
                let mut d = self.pick()?;
                for _ in 0..self.byte()? % 8 {
                    let at = self.u16()?;
                    let value = self.byte()?;
                    if !d.is_empty() {
                        let at = at % d.len();
                        d[at] = value;
                    }
                }
                Some(d)
            }
            _ => {
                let mut d = self.pick()?;
                d.truncate(self.u16()?);
                Some(d)
            }
        }
    }
}

/// What every run must keep, whatever it injected: no message before Connected, and a
/// connected engine reports the pinned peer.
pub fn check_events(events: &[Event], engine: &Engine, pinned: &str) {
    let connected = events.iter().position(|e| *e == Event::Connected);
    if let Some(first) = events.iter().position(|e| matches!(e, Event::Message(_))) {
        assert!(
            connected.is_some_and(|c| c < first),
            "message before Connected: {events:?}"
        );
    }
    if connected.is_some() {
        assert_eq!(engine.peer_node_id(), Some(pinned));
    }
}
