//! Two `Channels` wired back to back in memory (no DTLS): the association, DCEP and the
//! channel rules by themselves. Over real engines, with loss: tests/rust/channels.rs.

use std::time::{Duration, Instant};

use super::*;

struct Wire {
    client: Channels,
    server: Channels,
    now: Instant,
}

impl Wire {
    fn new(config: ChannelsConfig) -> Self {
        let now = Instant::now();
        let mut wire = Self {
            client: Channels::new(now, true, 1163, config),
            server: Channels::new(now, false, 1163, config),
            now,
        };
        wire.run(|w| w.client.is_connected() && w.server.is_connected());
        wire
    }

    /// Moves packets both ways and runs timers until `done` or 10,000 steps.
    fn run(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            let mut moved = false;
            while let Some(p) = self.client.poll_packet() {
                assert!(p.len() <= 1163, "packet of {} bytes", p.len());
                self.server.handle_packet(self.now, &p);
                moved = true;
            }
            while let Some(p) = self.server.poll_packet() {
                assert!(p.len() <= 1163, "packet of {} bytes", p.len());
                self.client.handle_packet(self.now, &p);
                moved = true;
            }
            if !moved {
                let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                self.now = next.map_or(self.now + Duration::from_millis(10), |t| t.max(self.now));
                self.client.handle_timeout(self.now);
                self.server.handle_timeout(self.now);
            }
        }
        panic!("not done after 10,000 steps");
    }
}

fn accept_one(wire: &mut Wire) -> ChannelId {
    let mut got = None;
    wire.run(|w| {
        got = got.or_else(|| w.server.accept());
        got.is_some()
    });
    got.unwrap()
}

#[test]
fn a_channel_opens_in_band_and_carries_both_kinds_both_ways() {
    let mut wire = Wire::new(ChannelsConfig::default());
    let id = wire.client.open(ChannelOptions::reliable("chat")).unwrap();
    assert_eq!(id % 2, 0, "the DTLS client opens even stream ids");
    assert_eq!(wire.client.send(id, b"early", false), Err(ChannelError::NotOpen(id)));
    let theirs = accept_one(&mut wire);
    assert_eq!(theirs, id);
    assert_eq!(wire.server.options(id).unwrap().label, "chat");
    wire.run(|w| w.client.is_open(id));
    assert!(wire.client.send(id, b"hello", false).unwrap());
    assert!(wire.client.send(id, "wörld".as_bytes(), true).unwrap());
    assert!(wire.client.send(id, b"", true).unwrap());
    let mut got = Vec::new();
    wire.run(|w| {
        while let Ok(Some(m)) = w.server.recv(id) {
            got.push(m);
        }
        got.len() == 3
    });
    assert_eq!(
        got[0],
        Message {
            data: b"hello".to_vec(),
            text: false
        }
    );
    assert_eq!(
        got[1],
        Message {
            data: "wörld".as_bytes().to_vec(),
            text: true
        }
    );
    assert_eq!(
        got[2],
        Message {
            data: Vec::new(),
            text: true
        }
    );
    assert!(wire.server.send(id, b"back", false).unwrap());
    let mut back = None;
    wire.run(|w| {
        back = back.take().or_else(|| w.client.recv(id).unwrap());
        back.is_some()
    });
    assert_eq!(back.unwrap().data, b"back");
}

#[test]
fn the_server_opens_odd_ids_and_a_peer_cannot_open_on_ours() {
    let mut wire = Wire::new(ChannelsConfig::default());
    let id = wire.server.open(ChannelOptions::reliable("s")).unwrap();
    assert_eq!(id % 2, 1);
    let mut got = None;
    wire.run(|w| {
        got = got.or_else(|| w.client.accept());
        got.is_some()
    });
    assert_eq!(got, Some(id));
    // A DCEP open on the receiver's own parity is refused (its stream is reset).
    let (_, association) = wire.client.association.as_mut().unwrap();
    let open = dcep::encode_open(&ChannelOptions::reliable("bad")).unwrap();
    let mut stream = association.open_stream(3, Ppi::Binary).unwrap();
    stream.write_sctp(&Bytes::from(open), Ppi::Dcep).unwrap();
    wire.client.drive();
    wire.run(|w| w.server.stats().dropped_no_channel > 0);
    assert_eq!(wire.server.accept(), None);
}

#[test]
fn large_messages_arrive_whole_and_oversize_is_refused() {
    let config = ChannelsConfig {
        max_message_size: 3 << 20,
        buffer_high_water: 1 << 20,
    };
    let mut wire = Wire::new(config);
    let id = wire.client.open(ChannelOptions::reliable("files")).unwrap();
    accept_one(&mut wire);
    wire.run(|w| w.client.is_open(id));
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    assert!(wire.client.send(id, &big, false).unwrap());
    assert_eq!(
        wire.client.send(id, &vec![0; (3 << 20) + 1], false),
        Err(ChannelError::TooLarge {
            size: (3 << 20) + 1,
            max: 3 << 20
        })
    );
    // Above the high-water mark: asked to wait, then told when there is room.
    assert_eq!(wire.client.send(id, b"next", false), Ok(false));
    let mut got = None;
    wire.run(|w| {
        got = got.take().or_else(|| w.server.recv(id).unwrap());
        got.is_some()
    });
    assert_eq!(got.unwrap().data, big);
    let mut writable = false;
    wire.run(|w| {
        while let Some(e) = w.client.poll_event() {
            writable |= e == ChannelEvent::Writable(id);
        }
        writable
    });
    assert!(wire.client.send(id, b"next", false).unwrap());
}

#[test]
fn closing_a_channel_closes_it_on_both_sides_after_its_messages() {
    let mut wire = Wire::new(ChannelsConfig::default());
    let id = wire.client.open(ChannelOptions::reliable("c")).unwrap();
    accept_one(&mut wire);
    wire.run(|w| w.client.is_open(id));
    assert!(wire.client.send(id, b"last words", false).unwrap());
    wire.client.close(id);
    assert_eq!(wire.client.send(id, b"more", false), Err(ChannelError::Closed(id)));
    let mut closed = false;
    wire.run(|w| {
        while let Some(e) = w.server.poll_event() {
            closed |= e == ChannelEvent::Closed(id);
        }
        closed
    });
    assert_eq!(wire.server.recv(id).unwrap().unwrap().data, b"last words");
    assert_eq!(wire.server.recv(id), Err(ChannelError::Closed(id)));
}

#[test]
fn everything_sent_is_acknowledged_before_buffered_total_reaches_zero() {
    let mut wire = Wire::new(ChannelsConfig::default());
    let id = wire.client.open(ChannelOptions::reliable("c")).unwrap();
    accept_one(&mut wire);
    wire.run(|w| w.client.is_open(id));
    let big = vec![7u8; 200_000];
    assert!(wire.client.send(id, &big, false).unwrap());
    assert!(wire.client.buffered_total() >= big.len());
    wire.run(|w| w.client.buffered_total() == 0);
    // Acknowledged means the peer's SCTP has it whole: the session may end now.
    wire.server.session_ended("closed by the peer");
    assert_eq!(wire.server.recv(id).unwrap().unwrap().data, big);
    assert!(matches!(wire.server.recv(id), Err(ChannelError::Ended(_))));
}
