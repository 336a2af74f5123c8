//! Shared harness: a pair of engines joined by a scripted in-memory link.
#![allow(dead_code)]

pub mod datagram_ops;
pub mod lossy;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dtls_peer::{Config, Engine, Event, HandshakeFailure, Identity, Role, State};

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// What the link does to one flight (all datagrams one engine emitted in one drain).
pub type Script = Box<dyn FnMut(Dir, usize, Vec<Vec<u8>>) -> Vec<Vec<u8>>>;

/// Moves datagrams between two engines until both are quiet (bounded), waiting out timers.
pub fn exchange(a: &mut Engine, b: &mut Engine, events_a: &mut Vec<Event>, events_b: &mut Vec<Event>) {
    let limit = Instant::now() + Duration::from_secs(5);
    for _ in 0..1000 {
        let mut moved = false;
        while let Some(d) = a.poll_transmit() {
            b.handle_datagram(Instant::now(), &d);
            moved = true;
        }
        while let Some(d) = b.poll_transmit() {
            a.handle_datagram(Instant::now(), &d);
            moved = true;
        }
        events_a.extend(std::iter::from_fn(|| a.poll_event()));
        events_b.extend(std::iter::from_fn(|| b.poll_event()));
        if moved {
            continue;
        }
        let Some(at) = [a.poll_timeout(), b.poll_timeout()].into_iter().flatten().min() else {
            return;
        };
        if at > limit {
            return;
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        a.handle_timeout(Instant::now());
        b.handle_timeout(Instant::now());
    }
}

/// Settings that keep retransmission tests short in real time.
pub fn fast_config() -> Config {
    Config {
        initial_retransmit_timeout: Duration::from_millis(50),
        ..Config::default()
    }
}

/// The handshake failure among `events`, if any.
pub fn failure(events: &[Event]) -> Option<&HandshakeFailure> {
    events.iter().find_map(|e| match e {
        Event::HandshakeFailed(f) => Some(f),
        _ => None,
    })
}

pub struct Pair {
    pub client: Engine,
    pub server: Engine,
    pub client_id: Identity,
    pub server_id: Identity,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    pub to_server: VecDeque<Vec<u8>>,
    pub to_client: VecDeque<Vec<u8>>,
    /// Every datagram that entered the link, per direction, before the script ran.
    pub sent_to_server: Vec<Vec<u8>>,
    pub sent_to_client: Vec<Vec<u8>>,
    flights: [usize; 2],
    script: Script,
}

/// A client and a server engine of these identities, each pinned to the other's node ID.
pub fn pinned_engines(
    client_id: &Identity,
    server_id: &Identity,
    client_config: Config,
    server_config: Config,
) -> (Engine, Engine) {
    let pin = |id: &Identity| Some(id.node_id().to_owned());
    let client = Engine::new(Role::Client, client_id, pin(server_id), client_config).unwrap();
    let server = Engine::new(Role::Server, server_id, pin(client_id), server_config).unwrap();
    (client, server)
}

impl Pair {
    /// Two engines pinned to each other with `config`.
    pub fn new(config: Config) -> Self {
        Self::with_configs(config.clone(), config)
    }

    /// Two engines pinned to each other, each with its own settings.
    pub fn with_configs(client_config: Config, server_config: Config) -> Self {
        let client_id = Identity::generate().unwrap();
        let server_id = Identity::generate().unwrap();
        Self::with_identities(client_id, server_id, client_config, server_config)
    }

    /// Engines of the given identities, pinned to each other's node IDs.
    pub fn with_identities(
        client_id: Identity,
        server_id: Identity,
        client_config: Config,
        server_config: Config,
    ) -> Self {
        let (client, server) = pinned_engines(&client_id, &server_id, client_config, server_config);
        Self::from_engines(client, server, client_id, server_id)
    }

    pub fn from_engines(client: Engine, server: Engine, client_id: Identity, server_id: Identity) -> Self {
        Self {
            client,
            server,
            client_id,
            server_id,
            client_events: Vec::new(),
            server_events: Vec::new(),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            sent_to_server: Vec::new(),
            sent_to_client: Vec::new(),
            flights: [0, 0],
            script: Box::new(|_, _, flight| flight),
        }
    }

    pub fn with_script(mut self, script: impl FnMut(Dir, usize, Vec<Vec<u8>>) -> Vec<Vec<u8>> + 'static) -> Self {
        self.script = Box::new(script);
        self
    }

    pub fn start(&mut self) {
        let now = Instant::now();
        self.server.start(now);
        self.client.start(now);
        self.collect();
    }

    /// Moves transmits onto the link (through the script) and events into the logs.
    pub fn collect(&mut self) {
        for dir in [Dir::ToServer, Dir::ToClient] {
            let engine = match dir {
                Dir::ToServer => &mut self.client,
                Dir::ToClient => &mut self.server,
            };
            let flight: Vec<Vec<u8>> = std::iter::from_fn(|| engine.poll_transmit()).collect();
            if flight.is_empty() {
                continue;
            }
            let (log, queue, n) = match dir {
                Dir::ToServer => (&mut self.sent_to_server, &mut self.to_server, &mut self.flights[0]),
                Dir::ToClient => (&mut self.sent_to_client, &mut self.to_client, &mut self.flights[1]),
            };
            log.extend(flight.iter().cloned());
            let index = *n;
            *n += 1;
            queue.extend((self.script)(dir, index, flight));
        }
        self.client_events
            .extend(std::iter::from_fn(|| self.client.poll_event()));
        self.server_events
            .extend(std::iter::from_fn(|| self.server.poll_event()));
    }

    /// Delivers one queued datagram per direction; false when the link is empty.
    pub fn step(&mut self) -> bool {
        let now = Instant::now();
        let mut moved = false;
        if let Some(d) = self.to_server.pop_front() {
            self.server.handle_datagram(now, &d);
            moved = true;
        }
        if let Some(d) = self.to_client.pop_front() {
            self.client.handle_datagram(now, &d);
            moved = true;
        }
        self.collect();
        moved
    }

    /// Runs until `done` holds, both engines are idle with no timer, or 5 s / 10,000 steps
    /// pass. Timers are waited for in real time (see `lossy` for a link on a virtual clock).
    pub fn drive_until(&mut self, mut done: impl FnMut(&Self) -> bool) -> bool {
        let limit = Instant::now() + Duration::from_secs(5);
        for _ in 0..10_000 {
            if done(self) {
                return true;
            }
            if self.step() {
                continue;
            }
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(at) = next else { return done(self) };
            if at > limit {
                return done(self);
            }
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let now = Instant::now().max(at);
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
            self.collect();
        }
        done(self)
    }

    /// Drives until both sides report `Connected` (or a side fails).
    pub fn handshake(&mut self) -> bool {
        self.start();
        self.drive_until(|p| {
            p.both_connected() || p.client.state() == State::Failed || p.server.state() == State::Failed
        });
        self.both_connected()
    }

    pub fn both_connected(&self) -> bool {
        self.client_events.contains(&Event::Connected) && self.server_events.contains(&Event::Connected)
    }

    /// Sends `message` from the client, runs the link until it is empty, and returns every
    /// message the server has received so far.
    pub fn server_messages_after_sending(&mut self, message: &[u8]) -> Vec<Vec<u8>> {
        self.client.send(message).unwrap();
        self.collect();
        self.flush();
        Self::messages(&self.server_events)
    }

    /// Messages delivered so far to one side.
    pub fn messages(events: &[Event]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Runs the link until it is empty (bounded).
    pub fn flush(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("link never drained");
    }
}
