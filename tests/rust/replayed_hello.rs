//! Guards a server's handshake against a stranger who replays a captured ClientHello from the
//! client's address, as tests/python/test_hostile_peers.py does with a flood. Here the replay
//! arrives before each of the client's datagrams (it wins every race a flood can win), in
//! memory and on a virtual clock, so every run is the same.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dtls_peer::{Config, Engine, Event, Identity, Role, State};

use crate::common::Pair;

/// How often the stranger replays its ClientHello, besides just before each client datagram.
const REPLAY_EVERY: Duration = Duration::from_millis(2);
/// The record content type of an alert.
const ALERT: u8 = 21;

/// A genuine ClientHello from a throwaway engine of `id`, as a stranger would capture it.
fn captured_client_hello(id: &Identity, server: &Identity, now: Instant) -> Vec<u8> {
    let mut engine = Engine::new(Role::Client, id, Some(server.node_id().to_owned()), Config::default()).unwrap();
    engine.start(now);
    engine.poll_transmit().expect("a ClientHello")
}

/// A client and a server joined by a link with a constant one-way delay, on a virtual clock,
/// and a stranger who sends a replayed ClientHello to the server from the client's address.
struct Replayed {
    client: Engine,
    server: Engine,
    client_id: Identity,
    server_id: Identity,
    replay: Vec<u8>,
    now: Instant,
    /// The stranger is silent until then.
    replay_from: Instant,
    next_replay: Instant,
    delay: Duration,
    /// (arrival, to the server, datagram), in arrival order.
    link: VecDeque<(Instant, bool, Vec<u8>)>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Alerts from the client still to be lost on the way.
    lose_client_alerts: usize,
    /// Datagrams the server had sent when it connected.
    server_sent_until_connected: Option<u64>,
}

impl Replayed {
    /// Default settings on both ends; the stranger starts `replay_from` after them.
    fn new(delay: Duration, replay_from: Duration) -> Self {
        let (client_id, server_id, stranger) = (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        );
        let now = Instant::now();
        let engine = |role, id: &Identity, peer: &Identity| {
            Engine::new(role, id, Some(peer.node_id().to_owned()), Config::default()).unwrap()
        };
        Self {
            client: engine(Role::Client, &client_id, &server_id),
            server: engine(Role::Server, &server_id, &client_id),
            replay: captured_client_hello(&stranger, &server_id, now),
            client_id,
            server_id,
            now,
            replay_from: now + replay_from,
            next_replay: now + replay_from,
            delay,
            link: VecDeque::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            lose_client_alerts: 0,
            server_sent_until_connected: None,
        }
    }

    fn replay_to_server(&mut self) {
        if self.now >= self.replay_from {
            self.server.handle_datagram(self.now, &self.replay.clone());
            self.collect();
        }
    }

    /// Delivers one datagram from the link, the stranger's copy first when it goes to the server.
    fn deliver(&mut self, to_server: bool, datagram: &[u8]) {
        if to_server {
            self.replay_to_server();
            self.server.handle_datagram(self.now, datagram);
        } else {
            self.client.handle_datagram(self.now, datagram);
        }
        self.collect();
    }

    fn collect(&mut self) {
        let at = self.now + self.delay;
        while let Some(d) = self.client.poll_transmit() {
            if d[0] == ALERT && self.lose_client_alerts > 0 {
                self.lose_client_alerts -= 1;
                continue;
            }
            self.link.push_back((at, true, d));
        }
        while let Some(d) = self.server.poll_transmit() {
            self.link.push_back((at, false, d));
        }
        self.client_events
            .extend(std::iter::from_fn(|| self.client.poll_event()));
        self.server_events
            .extend(std::iter::from_fn(|| self.server.poll_event()));
        if self.server_sent_until_connected.is_none() && self.server_events.contains(&Event::Connected) {
            self.server_sent_until_connected = Some(self.server.stats().datagrams_out);
        }
    }

    fn connected(&self) -> bool {
        self.client_events.contains(&Event::Connected) && self.server_events.contains(&Event::Connected)
    }

    fn failed(&self) -> bool {
        self.client.state() == State::Failed || self.server.state() == State::Failed
    }

    /// Starts both ends, the server first (so a replay due at once reaches it before the
    /// client's ClientHello), and runs until both are connected or one failed; at most 15 s
    /// of virtual time (the handshake timeout is 10 s).
    fn run(&mut self) {
        self.server.start(self.now);
        let limit = self.now + Duration::from_secs(15);
        let mut client_started = false;
        for _ in 0..100_000 {
            if self.now >= self.next_replay {
                self.next_replay = self.now + REPLAY_EVERY;
                self.replay_to_server();
            }
            if !client_started {
                client_started = true;
                self.client.start(self.now);
                self.collect();
            }
            while self.link.front().is_some_and(|d| d.0 <= self.now) {
                let (_, to_server, d) = self.link.pop_front().expect("checked");
                self.deliver(to_server, &d);
            }
            for engine in [&mut self.client, &mut self.server] {
                if engine.poll_timeout().is_some_and(|t| t <= self.now) {
                    engine.handle_timeout(self.now);
                }
            }
            self.collect();
            if self.connected() || self.failed() {
                return;
            }
            let next = [
                self.link.front().map(|d| d.0),
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                Some(self.next_replay),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("the replay is always due");
            if next > limit {
                return;
            }
            self.now = self.now.max(next);
        }
    }

    fn assert_connected(&self) {
        assert!(
            self.connected(),
            "client {:?} {:?}\nserver {:?} {:?}",
            self.client_events,
            self.client.stats(),
            self.server_events,
            self.server.stats()
        );
        assert_eq!(self.server.peer_node_id(), Some(self.client_id.node_id()));
        assert_eq!(self.client.peer_node_id(), Some(self.server_id.node_id()));
    }

    /// One message each way, the stranger still replaying; returns what each end received.
    fn exchange(&mut self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        self.client.send(b"from the client").unwrap();
        self.server.send(b"from the server").unwrap();
        self.collect();
        for _ in 0..100 {
            let Some((at, to_server, d)) = self.link.pop_front() else {
                break;
            };
            self.now = self.now.max(at);
            self.deliver(to_server, &d);
        }
        (Pair::messages(&self.client_events), Pair::messages(&self.server_events))
    }
}

#[test]
fn a_replayed_client_hello_from_the_client_address_costs_the_client_one_attempt_at_most() {
    let mut r = Replayed::new(Duration::from_millis(5), Duration::ZERO);
    r.run();
    r.assert_connected();
    // The server answered the replay (it came first), so the client's first attempt failed on
    // a ServerKeyExchange signed over another client random. Its second one completes: the
    // replay no longer opens an attempt, however often it wins the race.
    assert_eq!(r.client.stats().handshake_attempts, 2, "{:?}", r.client.stats());
    assert_eq!(r.server.stats().handshake_attempts, 2, "{:?}", r.server.stats());
    let (to_client, to_server) = r.exchange();
    assert_eq!(to_client, vec![b"from the server".to_vec()]);
    assert_eq!(to_server, vec![b"from the client".to_vec()]);
}

#[test]
fn a_client_whose_alert_was_lost_tells_a_server_answering_a_replay_again() {
    // The server, still answering the replay, drops the client's new ClientHello and sends
    // its flight again; the client answers that copy with its alert once more.
    let mut r = Replayed::new(Duration::from_millis(5), Duration::ZERO);
    r.lose_client_alerts = 1;
    r.run();
    r.assert_connected();
    assert!(r.client.stats().dropped_stale_handshake >= 1, "{:?}", r.client.stats());
}

#[test]
fn a_replay_during_the_handshake_gets_no_answer() {
    // The client's ClientHello arrives first (50 ms); the replay follows from 51 ms on, while
    // the server waits 100 ms for the client's next flight.
    let mut r = Replayed::new(Duration::from_millis(50), Duration::from_millis(51));
    r.run();
    r.assert_connected();
    let stats = r.server.stats();
    assert_eq!(stats.handshake_attempts, 1, "{stats:?}");
    // Its flight and its final flight, nothing sent again for the stranger. (Once connected,
    // the replay opens a new handshake beside the session, as a restarted client's would.)
    assert_eq!(r.server_sent_until_connected, Some(2), "{stats:?}");
    assert_eq!(stats.retransmissions, 0, "{stats:?}");
    assert!(stats.dropped_stale_handshake >= 40, "{stats:?}");
}
