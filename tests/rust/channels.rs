//! Guards data channels end to end in memory: two endpoints with `Config::channels`, one
//! dialling the other, over a link that loses, duplicates and reorders datagrams, on a
//! virtual clock. Reliable channels deliver everything whole and in order; a partially
//! reliable one delivers a subset, nothing altered or twice; stream ids follow the DTLS roles.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dtls_peer::channels::{ChannelEvent, ChannelId, ChannelOptions, Message, Reliability};
use dtls_peer::endpoint::{ConnectionId, Endpoint, EndpointConfig, EndpointEvent};
use dtls_peer::{ChannelsConfig, Config, Identity, Role};

use crate::common::fast_config;
use crate::common::lossy::Rng;

const A: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 4001);
const B: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)), 4002);

/// What the link does to each datagram, each way.
#[derive(Clone, Copy)]
struct Impairment {
    loss: f64,
    duplicate: f64,
    /// Extra delay drawn from 0..jitter: datagrams overtake each other.
    jitter: Duration,
}

const CLEAN: Impairment = Impairment {
    loss: 0.0,
    duplicate: 0.0,
    jitter: Duration::ZERO,
};

/// Endpoint `a` (the DTLS client) and endpoint `b`, one connection between them.
struct Net {
    a: Endpoint,
    b: Endpoint,
    a_conn: ConnectionId,
    b_conn: Option<ConnectionId>,
    now: Instant,
    rng: Rng,
    link: Impairment,
    /// (deliver at, to b, datagram)
    flying: Vec<(Instant, bool, Vec<u8>)>,
    a_events: Vec<ChannelEvent>,
    b_events: Vec<ChannelEvent>,
}

fn channel_config() -> Config {
    Config {
        channels: Some(ChannelsConfig {
            max_message_size: 1 << 20,
            buffer_high_water: 256 << 10,
        }),
        ..fast_config()
    }
}

impl Net {
    fn new(link: Impairment, seed: u64) -> Self {
        let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let config = EndpointConfig {
            peer: channel_config(),
            ..EndpointConfig::default()
        };
        let now = Instant::now();
        let mut a = Endpoint::new(&ia, config.clone(), None).unwrap();
        let b = Endpoint::new(&ib, config, None).unwrap();
        let a_conn = a.connect(now, B, Role::Client, Some(ib.node_id().to_owned())).unwrap();
        let mut net = Self {
            a,
            b,
            a_conn,
            b_conn: None,
            now,
            rng: Rng(seed),
            link,
            flying: Vec::new(),
            a_events: Vec::new(),
            b_events: Vec::new(),
        };
        net.run(Duration::from_secs(60), |n| {
            n.a_events.contains(&ChannelEvent::Connected) && n.b_events.contains(&ChannelEvent::Connected)
        });
        net
    }

    fn send_from(&mut self, from_a: bool) {
        loop {
            let endpoint = if from_a { &mut self.a } else { &mut self.b };
            let Some(t) = endpoint.poll_transmit().or_else(|| endpoint.poll_channel_transmit()) else {
                break;
            };
            let copies = if self.rng.chance(self.link.loss) {
                0
            } else if self.rng.chance(self.link.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = self.link.jitter.mul_f64((self.rng.next() % 1000) as f64 / 1000.0);
                let at = self.now + Duration::from_millis(2) + jitter;
                self.flying.push((at, from_a, t.contents.clone()));
            }
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.a.poll_event() {
            if let EndpointEvent::Channel { event, .. } = e {
                self.a_events.push(event);
            }
        }
        while let Some(e) = self.b.poll_event() {
            match e {
                EndpointEvent::Incoming { id, .. } => {
                    self.b.accepted(id);
                    self.b_conn = Some(id);
                }
                EndpointEvent::Channel { event, .. } => self.b_events.push(event),
                EndpointEvent::Connection { .. } => {}
            }
        }
    }

    /// Runs the link and the timers until `done` (checked between steps) or `limit` of
    /// virtual time; panics on the limit.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let end = self.now + limit;
        for _ in 0..2_000_000 {
            self.send_from(true);
            self.send_from(false);
            self.events();
            if done(self) {
                return;
            }
            let next_delivery = self.flying.iter().map(|f| f.0).min();
            let next = [next_delivery, self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            // Nothing scheduled: time still passes (a test may wait for a moment).
            let next = next.unwrap_or(self.now + Duration::from_millis(100));
            assert!(next <= end, "not done within {limit:?} of virtual time");
            self.now = self.now.max(next);
            let (due, later): (Vec<_>, Vec<_>) = self.flying.drain(..).partition(|f| f.0 <= self.now);
            self.flying = later;
            for (_, to_b, datagram) in due {
                let (endpoint, from) = if to_b { (&mut self.b, A) } else { (&mut self.a, B) };
                endpoint.handle(self.now, from, &datagram);
            }
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
        }
        panic!("too many steps");
    }

    fn a_channels<R>(&mut self, f: impl FnOnce(&mut dtls_peer::channels::Channels) -> R) -> R {
        self.a.with_channels(self.now, self.a_conn, f).expect("a has channels")
    }

    fn b_channels<R>(&mut self, f: impl FnOnce(&mut dtls_peer::channels::Channels) -> R) -> R {
        let id = self.b_conn.expect("b accepted");
        self.b.with_channels(self.now, id, f).expect("b has channels")
    }

    /// `a` opens a channel and `b` accepts it.
    fn open(&mut self, options: ChannelOptions) -> ChannelId {
        let id = self.a_channels(|c| c.open(options)).unwrap();
        let mut accepted = None;
        self.run(Duration::from_secs(60), |n| {
            accepted = accepted.or_else(|| n.b_channels(|c| c.accept()));
            accepted.is_some() && n.a_channels(|c| c.is_open(id))
        });
        assert_eq!(accepted, Some(id));
        id
    }
}

/// A message that says which it is: its index in the first 4 bytes, then a pattern.
fn message(index: u32, size: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8)
        .collect();
    if size >= 4 {
        m[..4].copy_from_slice(&index.to_be_bytes());
    }
    m
}

/// Sends `messages` from a on `id` (waiting for room as a user would) until b has read
/// `expect` of them or the link has been quiet long enough; returns what b read.
fn transfer(net: &mut Net, id: ChannelId, messages: &[Vec<u8>], expect: usize, limit: Duration) -> Vec<Message> {
    let mut next = 0;
    let mut got = Vec::new();
    net.run(limit, |n| {
        while next < messages.len() && n.a_channels(|c| c.send(id, &messages[next], false)).unwrap() {
            next += 1;
        }
        while let Some(m) = n.b_channels(|c| c.recv(id)).unwrap() {
            got.push(m);
        }
        got.len() >= expect
    });
    got
}

#[test]
fn reliable_ordered_channel_delivers_everything_exactly_through_loss_duplication_and_reordering() {
    let link = Impairment {
        loss: 0.05,
        duplicate: 0.03,
        jitter: Duration::from_millis(15),
    };
    for seed in 1..=3 {
        let mut net = Net::new(link, seed);
        let id = net.open(ChannelOptions::reliable("files"));
        let sizes = [1usize, 1000, 1163, 5000, 64 << 10, 90_000, 300_000, 1 << 20, 3];
        let messages: Vec<Vec<u8>> = (0..60u32)
            .map(|i| message(i, sizes[i as usize % sizes.len()]))
            .collect();
        let got = transfer(&mut net, id, &messages, messages.len(), Duration::from_secs(600));
        assert!(got.iter().all(|m| !m.text));
        let got: Vec<Vec<u8>> = got.into_iter().map(|m| m.data).collect();
        assert_eq!(got.len(), messages.len(), "seed {seed}");
        assert!(got == messages, "seed {seed}: a message was altered, lost or reordered");
    }
}

#[test]
fn an_unordered_channel_without_retransmissions_delivers_a_subset_unaltered_and_once() {
    let link = Impairment {
        loss: 0.2,
        duplicate: 0.05,
        jitter: Duration::from_millis(10),
    };
    let mut net = Net::new(link, 7);
    let id = net.open(ChannelOptions {
        label: "telemetry".into(),
        protocol: String::new(),
        ordered: false,
        reliability: Reliability::MaxRetransmits(0),
    });
    assert_eq!(
        net.b_channels(|c| c.options(id).cloned()).unwrap().reliability,
        Reliability::MaxRetransmits(0)
    );
    let messages: Vec<Vec<u8>> = (0..400u32).map(|i| message(i, 200)).collect();
    // Give the link time to deliver what it will: nothing is retransmitted, so some never come.
    let mut sent = 0;
    let mut got = Vec::new();
    let deadline = net.now + Duration::from_secs(20);
    net.run(Duration::from_secs(60), |n| {
        while sent < messages.len() && n.a_channels(|c| c.send(id, &messages[sent], false)).unwrap() {
            sent += 1;
        }
        while let Some(m) = n.b_channels(|c| c.recv(id)).unwrap() {
            got.push(m.data);
        }
        n.now >= deadline
    });
    assert_eq!(sent, messages.len());
    let mut indexes: Vec<u32> = got
        .iter()
        .map(|m| u32::from_be_bytes(m[..4].try_into().unwrap()))
        .collect();
    for m in &got {
        let index = u32::from_be_bytes(m[..4].try_into().unwrap());
        assert_eq!(m, &messages[index as usize], "message {index} altered");
    }
    let received = indexes.len();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), received, "a message was delivered twice");
    assert!(
        received < messages.len(),
        "20% loss with no retransmission lost nothing"
    );
    assert!(received > messages.len() / 2, "only {received} of 400 arrived");
}

#[test]
fn both_sides_open_channels_at_once_on_their_own_stream_ids() {
    let mut net = Net::new(CLEAN, 3);
    let ours: Vec<ChannelId> = (0..5)
        .map(|i| {
            net.a_channels(|c| c.open(ChannelOptions::reliable(&format!("a{i}"))))
                .unwrap()
        })
        .collect();
    let theirs: Vec<ChannelId> = (0..5)
        .map(|i| {
            net.b_channels(|c| c.open(ChannelOptions::reliable(&format!("b{i}"))))
                .unwrap()
        })
        .collect();
    assert!(
        ours.iter().all(|id| id % 2 == 0),
        "the DTLS client's ids are even: {ours:?}"
    );
    assert!(
        theirs.iter().all(|id| id % 2 == 1),
        "the DTLS server's ids are odd: {theirs:?}"
    );
    let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
    net.run(Duration::from_secs(10), |n| {
        at_b.extend(std::iter::from_fn(|| n.b_channels(|c| c.accept())));
        at_a.extend(std::iter::from_fn(|| n.a_channels(|c| c.accept())));
        at_a.len() == 5 && at_b.len() == 5
    });
    assert_eq!(at_b, ours);
    assert_eq!(at_a, theirs);
    assert_eq!(net.b_channels(|c| c.options(ours[2]).unwrap().label.clone()), "a2");
    assert_eq!(net.a_channels(|c| c.options(theirs[4]).unwrap().label.clone()), "b4");
}

#[test]
fn an_unread_channel_does_not_stop_another() {
    let mut net = Net::new(CLEAN, 5);
    let slow = net.open(ChannelOptions::reliable("slow"));
    let fast = net.open(ChannelOptions::reliable("fast"));
    // More than the slow channel's high-water mark (256 KiB) waits unread on it.
    let mut queued = 0;
    net.run(Duration::from_secs(10), |n| {
        while queued < 8
            && n.a_channels(|c| c.send(slow, &message(queued, 100_000), false))
                .unwrap()
        {
            queued += 1;
        }
        queued == 8
    });
    let messages: Vec<Vec<u8>> = (0..50u32).map(|i| message(i, 20_000)).collect();
    let got = transfer(&mut net, fast, &messages, messages.len(), Duration::from_secs(60));
    assert_eq!(got.into_iter().map(|m| m.data).collect::<Vec<_>>(), messages);
    // The slow channel's messages are all there, in order, once it is read.
    let mut slow_got = Vec::new();
    net.run(Duration::from_secs(60), |n| {
        while let Some(m) = n.b_channels(|c| c.recv(slow)).unwrap() {
            slow_got.push(m.data);
        }
        slow_got.len() == 8
    });
    assert_eq!(slow_got, (0..8).map(|i| message(i, 100_000)).collect::<Vec<_>>());
}
