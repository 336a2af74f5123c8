//! Guards the sans-IO endpoint: many client engines, each at its own address, talking to one
//! endpoint over an in-memory network on a virtual clock. Interleaved handshakes, routing by
//! address, the bounds on incoming handshakes, the application's datagrams, a restarted peer,
//! and close.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtls_peer::endpoint::{ConnectionId, DatagramError, Endpoint, EndpointConfig, EndpointEvent};
use dtls_peer::trust::{AllowList, AllowPolicy};
use dtls_peer::{CloseReason, Engine, Event, HandshakeFailure, Identity, Role, State};

use crate::common::fast_config;

fn client_address(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, (i % 250) as u8 + 1], 10_000 + i as u16))
}

/// An endpoint and client engines joined by a lossless in-memory network.
pub struct Net {
    pub endpoint: Endpoint,
    pub server_id: Identity,
    pub clients: Vec<(SocketAddr, Engine, Vec<Event>)>,
    pub endpoint_events: Vec<EndpointEvent>,
    pub app_datagrams: Vec<(SocketAddr, Vec<u8>)>,
    pub now: Instant,
}

impl Net {
    pub fn new(config: EndpointConfig) -> Self {
        Self::allowing(config, None)
    }

    pub fn allowing(config: EndpointConfig, allow: Option<Arc<dyn AllowPolicy>>) -> Self {
        let server_id = Identity::generate().unwrap();
        Self {
            endpoint: Endpoint::new(&server_id, config, allow).unwrap(),
            server_id,
            clients: Vec::new(),
            endpoint_events: Vec::new(),
            app_datagrams: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Adds a client (at a fresh address) pinned to the endpoint's node ID and starts it.
    pub fn add_client(&mut self, identity: &Identity) -> usize {
        let i = self.clients.len();
        self.add_client_at(identity, client_address(i))
    }

    pub fn add_client_at(&mut self, identity: &Identity, address: SocketAddr) -> usize {
        let pin = Some(self.server_id.node_id().to_owned());
        let mut engine = Engine::new(Role::Client, identity, pin, fast_config()).unwrap();
        engine.start(self.now);
        self.clients.push((address, engine, Vec::new()));
        self.clients.len() - 1
    }

    /// Moves every datagram until nothing moves, then advances the clock to the next timer;
    /// stops when `done` holds or after `budget` of virtual time.
    pub fn run_until(&mut self, budget: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + budget;
        for _ in 0..100_000 {
            self.deliver();
            if done(self) {
                return true;
            }
            let next = (self.clients.iter().filter_map(|(_, e, _)| e.poll_timeout()))
                .chain(self.endpoint.poll_timeout())
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.endpoint.handle_timeout(self.now);
                    for (_, engine, _) in &mut self.clients {
                        engine.handle_timeout(self.now);
                    }
                }
                _ => return done(self),
            }
        }
        false
    }

    /// One round: what the endpoint sent reaches the clients, then what the clients sent
    /// reaches the endpoint. True if anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        let by_address: HashMap<SocketAddr, usize> =
            self.clients.iter().enumerate().map(|(i, (a, _, _))| (*a, i)).collect();
        while let Some(t) = self.endpoint.poll_transmit() {
            moved = true;
            if let Some(&i) = by_address.get(&t.destination) {
                self.clients[i].1.handle_datagram(self.now, &t.contents);
            }
        }
        for (address, engine, events) in &mut self.clients {
            while let Some(d) = engine.poll_transmit() {
                moved = true;
                self.endpoint.handle(self.now, *address, &d);
            }
            events.extend(std::iter::from_fn(|| engine.poll_event()));
        }
        self.endpoint_events
            .extend(std::iter::from_fn(|| self.endpoint.poll_event()));
        self.app_datagrams
            .extend(std::iter::from_fn(|| self.endpoint.poll_datagram()));
        moved
    }

    /// Delivers until quiet.
    pub fn deliver(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
    }

    /// The connection the endpoint announced for the client at `address`.
    pub fn incoming_id(&self, address: SocketAddr) -> Option<ConnectionId> {
        self.endpoint_events.iter().find_map(|e| match e {
            EndpointEvent::Incoming { id, remote } if *remote == address => Some(*id),
            _ => None,
        })
    }

    pub fn messages_for(&self, id: ConnectionId) -> Vec<Vec<u8>> {
        (self.endpoint_events.iter())
            .filter_map(|e| match e {
                EndpointEvent::Connection {
                    id: of,
                    event: Event::Message(m),
                } if *of == id => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn all_clients_connected(&self) -> bool {
        self.clients.iter().all(|(_, e, _)| e.state() == State::Established)
    }
}

fn client_messages(events: &[Event]) -> Vec<Vec<u8>> {
    (events.iter())
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn interleaved_handshakes_from_many_addresses_each_reach_their_own_connection() {
    let mut net = Net::new(EndpointConfig::default());
    let identities: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
    // Twenty clients (several sharing a node key, as one node behind several ports would)
    // start at once: their flights interleave at the endpoint.
    for i in 0..20 {
        net.add_client(&identities[i % 3]);
    }
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let stats = net.endpoint.stats();
    assert_eq!(stats.handshakes_accepted, 20);
    assert_eq!(stats.connections, 20);
    assert_eq!(stats.backlog, 20);
    assert_eq!(stats.hello_verify_requests, 20, "every first ClientHello is challenged");
    for i in 0..20 {
        let (address, engine, _) = &mut net.clients[i];
        let address = *address;
        engine.send(format!("hello from {i}").as_bytes()).unwrap();
        net.deliver();
        let id = net.incoming_id(address).expect("announced");
        assert_eq!(net.endpoint.remote(id), Some(address));
        let peer = net.endpoint.connection(id).unwrap().peer_node_id().unwrap().to_owned();
        assert_eq!(peer, identities[i % 3].node_id());
        assert_eq!(net.messages_for(id), vec![format!("hello from {i}").into_bytes()]);
        net.endpoint.send(id, format!("reply to {i}").as_bytes()).unwrap();
        net.deliver();
        assert_eq!(
            client_messages(&net.clients[i].2),
            vec![format!("reply to {i}").into_bytes()]
        );
    }
}

#[test]
fn incoming_handshakes_beyond_the_bound_are_dropped_and_counted() {
    let config = EndpointConfig {
        max_pending_handshakes: 3,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    let id = Identity::generate().unwrap();
    for _ in 0..5 {
        net.add_client(&id);
    }
    // Two rounds: the first ClientHellos get cookies, and the retried ones come back; the
    // first three take the slots.
    net.step();
    net.step();
    let stats = net.endpoint.stats();
    assert_eq!(stats.pending_handshakes, 3);
    assert_eq!(stats.dropped_over_limit, 2);
    assert_eq!(stats.connections, 3);
    // The refused clients retransmit; once the first three are done they get in too.
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    assert_eq!(net.endpoint.stats().handshakes_accepted, 5);
}

#[test]
fn the_connection_table_and_the_backlog_are_bounded() {
    let config = EndpointConfig {
        max_connections: 2,
        accept_backlog: 2,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    let id = Identity::generate().unwrap();
    for _ in 0..3 {
        net.add_client(&id);
    }
    net.run_until(Duration::from_secs(2), |_| false);
    let stats = net.endpoint.stats();
    assert_eq!(stats.handshakes_accepted, 2);
    assert_eq!(stats.connections, 2);
    assert!(stats.dropped_over_limit > 0);
    assert_eq!(
        net.clients
            .iter()
            .filter(|(_, e, _)| e.state() == State::Established)
            .count(),
        2
    );
    // A dial of our own is refused at the bound too, with an error that says so.
    let err = net
        .endpoint
        .connect(net.now, client_address(99), Role::Client, None)
        .unwrap_err();
    assert_eq!(err.to_string(), "the endpoint has max_connections=2 connections");
}

#[test]
fn datagrams_that_are_not_dtls_go_to_the_application_in_both_directions() {
    let config = EndpointConfig {
        datagram_queue: 2,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    let stranger = client_address(7);
    net.endpoint.handle(net.now, stranger, b"PUNCH 1");
    // A STUN binding request (first byte 0) is the application's too.
    net.endpoint.handle(net.now, stranger, &[0, 1, 0, 0]);
    net.endpoint.handle(net.now, stranger, b"PUNCH 3");
    assert_eq!(net.endpoint.poll_datagram(), Some((stranger, b"PUNCH 1".to_vec())));
    assert_eq!(net.endpoint.poll_datagram(), Some((stranger, vec![0, 1, 0, 0])));
    assert_eq!(net.endpoint.poll_datagram(), None);
    assert_eq!(net.endpoint.stats().dropped_datagram_queue_full, 1);

    net.endpoint.send_datagram(stranger, b"PUNCH back").unwrap();
    let t = net.endpoint.poll_transmit().unwrap();
    assert_eq!((t.destination, t.contents), (stranger, b"PUNCH back".to_vec()));
    assert_eq!(net.endpoint.send_datagram(stranger, b""), Err(DatagramError::Empty));
    // A first byte in RFC 7983's DTLS range would be taken for a record by the peer.
    assert_eq!(
        net.endpoint.send_datagram(stranger, &[22, 254, 253]),
        Err(DatagramError::LooksLikeDtls(22))
    );
    assert_eq!(
        net.endpoint.send_datagram(stranger, &vec![b'x'; 65_508]),
        Err(DatagramError::TooLarge(65_508))
    );
    assert_eq!(net.endpoint.stats().app_datagrams_out, 1);
}

#[test]
fn a_probe_from_a_connected_peer_is_the_applications_and_leaves_the_session_alone() {
    let mut net = Net::new(EndpointConfig::default());
    let client = Identity::generate().unwrap();
    net.add_client(&client);
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let address = net.clients[0].0;
    net.endpoint.handle(net.now, address, b"PUNCH");
    net.deliver();
    assert_eq!(net.app_datagrams, vec![(address, b"PUNCH".to_vec())]);
    let id = net.incoming_id(address).unwrap();
    net.clients[0].1.send(b"still here").unwrap();
    net.deliver();
    assert_eq!(net.messages_for(id), vec![b"still here".to_vec()]);
}

#[test]
fn a_dtls_record_from_an_unknown_address_that_is_not_a_client_hello_is_dropped() {
    let mut net = Net::new(EndpointConfig::default());
    // An application-data record header (type 23, DTLS 1.2, epoch 1) and a body.
    let mut record = vec![23, 254, 253, 0, 1, 0, 0, 0, 0, 0, 1, 0, 24];
    record.extend([0u8; 24]);
    net.endpoint.handle(net.now, client_address(3), &record);
    assert_eq!(net.endpoint.poll_transmit(), None);
    assert_eq!(net.endpoint.poll_datagram(), None);
    let stats = net.endpoint.stats();
    assert_eq!((stats.dropped_unknown_source, stats.connections), (1, 0));
}

#[test]
fn an_endpoint_that_does_not_accept_answers_no_client_hello() {
    let config = EndpointConfig {
        accept: false,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    net.add_client(&Identity::generate().unwrap());
    net.run_until(Duration::from_secs(1), |_| false);
    let stats = net.endpoint.stats();
    assert_eq!(stats.connections, 0);
    assert_eq!(stats.hello_verify_requests, 0);
    assert!(stats.dropped_unknown_source > 0);
}

#[test]
fn an_endpoint_dials_peers_from_its_one_address_and_talks_to_each() {
    let mut net = Net::new(EndpointConfig::default());
    let server_ids: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
    let mut ids = Vec::new();
    // Each dialled peer is a server engine at its own address, pinned to the endpoint.
    for (i, peer) in server_ids.iter().enumerate() {
        let address = client_address(50 + i);
        let pin = Some(net.server_id.node_id().to_owned());
        let mut engine = Engine::new(Role::Server, peer, pin, fast_config()).unwrap();
        engine.start(net.now);
        net.clients.push((address, engine, Vec::new()));
        let id = net
            .endpoint
            .connect(net.now, address, Role::Client, Some(peer.node_id().to_owned()))
            .unwrap();
        ids.push(id);
    }
    let dup = net.endpoint.connect(net.now, client_address(50), Role::Client, None);
    assert_eq!(
        dup.unwrap_err().to_string(),
        format!("the endpoint already has a connection to {}", client_address(50))
    );
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    for (i, id) in ids.iter().enumerate() {
        let connected = (net.endpoint_events.iter())
            .any(|e| matches!(e, EndpointEvent::Connection { id: of, event: Event::Connected } if of == id));
        assert!(connected, "dial {i} reports Connected");
        net.endpoint.send(*id, format!("to {i}").as_bytes()).unwrap();
    }
    net.deliver();
    for i in 0..3 {
        assert_eq!(client_messages(&net.clients[i].2), vec![format!("to {i}").into_bytes()]);
    }
    // Dialled connections never enter the accept backlog, and need no cookie.
    let stats = net.endpoint.stats();
    assert_eq!(
        (stats.backlog, stats.hello_verify_requests, stats.connections),
        (0, 0, 3)
    );
}

#[test]
fn closing_the_endpoint_ends_every_session_with_close_notify() {
    let mut net = Net::new(EndpointConfig::default());
    let id = Identity::generate().unwrap();
    for _ in 0..4 {
        net.add_client(&id);
    }
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    net.endpoint.close();
    net.deliver();
    for (_, engine, events) in &net.clients {
        assert_eq!(engine.state(), State::Closed);
        assert!(events.contains(&Event::Closed(CloseReason::PeerClosed)));
    }
    assert_eq!(net.endpoint.stats().connections, 0);
    let err = net.endpoint.connect(net.now, client_address(9), Role::Client, None);
    assert_eq!(err.unwrap_err().to_string(), "the endpoint is closed");
    assert_eq!(
        net.endpoint.send_datagram(client_address(9), b"x"),
        Err(DatagramError::Closed)
    );
}

#[test]
fn a_closed_peer_frees_its_address_for_a_new_handshake() {
    let mut net = Net::new(EndpointConfig::default());
    let client = Identity::generate().unwrap();
    net.add_client(&client);
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let address = net.clients[0].0;
    let first = net.incoming_id(address).unwrap();
    net.clients[0].1.close();
    net.deliver();
    assert_eq!(net.endpoint.stats().connections, 0);
    assert_eq!(net.endpoint.connection(first).unwrap().state(), State::Closed);
    // The same peer comes back from the same address: a new connection, a new id.
    net.clients.clear();
    net.add_client_at(&client, address);
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let ids: Vec<ConnectionId> = (net.endpoint_events.iter())
        .filter_map(|e| match e {
            EndpointEvent::Incoming { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    net.endpoint.release(first);
    assert!(net.endpoint.connection(first).is_none());
}

#[test]
fn a_restarted_peer_on_the_same_address_takes_over_its_connection() {
    let mut net = Net::new(EndpointConfig::default());
    let client = Identity::generate().unwrap();
    net.add_client(&client);
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let address = net.clients[0].0;
    let id = net.incoming_id(address).unwrap();
    // The peer's application restarts: a new engine, same key, same address, no close_notify.
    net.clients.clear();
    net.add_client_at(&client, address);
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    net.clients[0].1.send(b"after restart").unwrap();
    net.deliver();
    assert_eq!(net.messages_for(id), vec![b"after restart".to_vec()]);
    net.endpoint.send(id, b"welcome back").unwrap();
    net.deliver();
    assert_eq!(client_messages(&net.clients[0].2), vec![b"welcome back".to_vec()]);
    assert_eq!(net.endpoint.stats().connections, 1);
}

/// An established peer whose NAT mapping changes: its next datagram comes from a new port.
fn rebind(allow_migration: bool) -> (Net, ConnectionId, SocketAddr) {
    let config = EndpointConfig {
        allow_migration,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    let id = Identity::generate().unwrap();
    for _ in 0..3 {
        net.add_client(&id);
    }
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let old = net.clients[1].0;
    let conn = net.incoming_id(old).unwrap();
    let new = SocketAddr::from(([127, 0, 9, 9], 40_000));
    net.clients[1].0 = new;
    net.clients[1].1.send(b"from my new port").unwrap();
    net.deliver();
    (net, conn, new)
}

#[test]
fn with_migration_allowed_an_authenticated_record_from_a_new_address_moves_the_peer() {
    let (mut net, conn, new) = rebind(true);
    assert_eq!(net.messages_for(conn), vec![b"from my new port".to_vec()]);
    assert_eq!(net.endpoint.remote(conn), Some(new));
    net.endpoint.send(conn, b"found you").unwrap();
    net.deliver();
    assert_eq!(client_messages(&net.clients[1].2), vec![b"found you".to_vec()]);
    let stats = net.endpoint.stats();
    assert_eq!((stats.migrations, stats.connections), (1, 3));
    // The other peers are where they were, untouched by the trial decryptions.
    for i in [0, 2] {
        let id = net.incoming_id(net.clients[i].0).unwrap();
        assert_eq!(net.endpoint.connection(id).unwrap().stats().dropped_invalid, 0);
        net.clients[i].1.send(b"still here").unwrap();
        net.deliver();
        assert_eq!(net.messages_for(id), vec![b"still here".to_vec()]);
    }
}

#[test]
fn without_migration_a_record_from_a_new_address_is_dropped() {
    let (net, conn, _) = rebind(false);
    assert!(net.messages_for(conn).is_empty());
    assert_eq!(net.endpoint.remote(conn), Some(client_address(1)));
    let stats = net.endpoint.stats();
    assert_eq!((stats.migrations, stats.dropped_unknown_source), (0, 1));
}

#[test]
fn a_forged_record_from_a_new_address_moves_no_one() {
    let config = EndpointConfig {
        allow_migration: true,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    net.add_client(&Identity::generate().unwrap());
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    let address = net.clients[0].0;
    let conn = net.incoming_id(address).unwrap();
    // An application-data record in epoch 1 with a body that authenticates under no key.
    let mut record = vec![23, 254, 253, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40];
    record.extend([7u8; 40]);
    net.endpoint
        .handle(net.now, SocketAddr::from(([127, 0, 6, 6], 5000)), &record);
    assert_eq!(net.endpoint.remote(conn), Some(address));
    let stats = net.endpoint.stats();
    assert_eq!((stats.migrations, stats.dropped_unknown_source), (0, 1));
    // The trial left no trace on the session's counters.
    assert_eq!(net.endpoint.connection(conn).unwrap().stats().dropped_invalid, 0);
}

#[test]
fn the_allow_list_refuses_an_unlisted_peer_inside_the_handshake() {
    let friend = Identity::generate().unwrap();
    let stranger = Identity::generate().unwrap();
    let allow: Arc<dyn AllowPolicy> = Arc::new(AllowList::from_iter([friend.node_id().to_owned()]));
    let mut net = Net::allowing(EndpointConfig::default(), Some(allow));
    net.add_client(&stranger);
    net.add_client(&friend);
    net.run_until(Duration::from_secs(5), |net| {
        net.clients
            .iter()
            .all(|(_, e, _)| matches!(e.state(), State::Established | State::Failed))
    });
    // The stranger learns it was refused (unknown_ca) and never gets a session.
    let (stranger_address, stranger_engine, stranger_events) = &net.clients[0];
    assert_eq!(stranger_engine.state(), State::Failed);
    assert!(stranger_events.contains(&Event::HandshakeFailed(HandshakeFailure::AlertReceived(48))));
    assert!(net.incoming_id(*stranger_address).is_none());
    // The friend is in.
    let friend_address = net.clients[1].0;
    let id = net.incoming_id(friend_address).expect("the listed peer is announced");
    assert_eq!(
        net.endpoint.connection(id).unwrap().peer_node_id(),
        Some(friend.node_id())
    );
    let stats = net.endpoint.stats();
    assert_eq!(
        (stats.handshakes_accepted, stats.handshakes_refused, stats.connections),
        (1, 1, 1)
    );
}

/// A dial in the server role: the endpoint waits for `client`'s ClientHello at its address,
/// pinned to `expected`; `hello_first` lets the client's first ClientHello arrive (and be
/// answered with a cookie) before the endpoint's `connect`.
fn server_dial(hello_first: bool, expected: &Identity, client: &Identity) -> (Net, ConnectionId) {
    let config = EndpointConfig {
        // Even an endpoint that accepts no one can wait for a peer it dials.
        accept: !hello_first,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(config);
    let config_accepts = net.endpoint.config().accept;
    net.add_client(client);
    let address = net.clients[0].0;
    if hello_first {
        assert!(!config_accepts);
        // Not accepting, the endpoint drops it; the client will send it again.
        net.step();
    }
    let id = net
        .endpoint
        .connect(net.now, address, Role::Server, Some(expected.node_id().to_owned()))
        .unwrap();
    net.run_until(Duration::from_secs(5), |net| {
        net.clients[0].1.state() != State::Handshaking
    });
    (net, id)
}

#[test]
fn a_server_role_dial_takes_its_peer_through_the_cookie_exchange_in_either_order() {
    for hello_first in [false, true] {
        let client = Identity::generate().unwrap();
        let (mut net, id) = server_dial(hello_first, &client, &client);
        assert_eq!(
            net.clients[0].1.state(),
            State::Established,
            "hello_first={hello_first}"
        );
        let connected = (net.endpoint_events.iter())
            .any(|e| matches!(e, EndpointEvent::Connection { id: of, event: Event::Connected } if *of == id));
        assert!(connected, "hello_first={hello_first}");
        let stats = net.endpoint.stats();
        assert_eq!(
            (stats.hello_verify_requests, stats.backlog),
            (1, 0),
            "hello_first={hello_first}"
        );
        net.clients[0].1.send(b"to the dialler").unwrap();
        net.deliver();
        assert_eq!(net.messages_for(id), vec![b"to the dialler".to_vec()]);
    }
}

#[test]
fn a_server_role_dial_refuses_another_peer_at_that_address() {
    let expected = Identity::generate().unwrap();
    let impostor = Identity::generate().unwrap();
    let (net, id) = server_dial(false, &expected, &impostor);
    assert_eq!(net.clients[0].1.state(), State::Failed);
    let failed = (net.endpoint_events.iter()).any(|e| {
        matches!(e, EndpointEvent::Connection { id: of, event: Event::HandshakeFailed(HandshakeFailure::PeerVerification(_)) } if *of == id)
    });
    assert!(failed, "{:?}", net.endpoint_events);
}

/// A client whose handshake with the endpoint starts before the endpoint dials it in the
/// server role (both sides of a hole punch connect at once): `rounds` of the exchange happen
/// first, then `connect(Role::Server)` with `expected`.
fn claimed_dial(rounds: usize, expected: &Identity, client: &Identity) -> (Net, Result<ConnectionId, String>) {
    let allow: Arc<dyn AllowPolicy> = Arc::new(AllowList::from_iter([client.node_id().to_owned()]));
    let mut net = Net::allowing(EndpointConfig::default(), Some(allow));
    net.add_client(client);
    for _ in 0..rounds {
        net.step();
    }
    let address = net.clients[0].0;
    let dial = net
        .endpoint
        .connect(net.now, address, Role::Server, Some(expected.node_id().to_owned()))
        .map_err(|e| e.to_string());
    net.run_until(Duration::from_secs(5), |net| {
        net.clients[0].1.state() != State::Handshaking
    });
    net.deliver();
    (net, dial)
}

#[test]
fn a_server_role_dial_takes_over_the_handshake_its_peer_started_first() {
    // After 2 rounds the handshake is under way; after 20 it is established in the backlog.
    for rounds in [2, 20] {
        let client = Identity::generate().unwrap();
        let (mut net, dial) = claimed_dial(rounds, &client, &client);
        let id = dial.unwrap_or_else(|e| panic!("rounds={rounds}: {e}"));
        assert_eq!(net.clients[0].1.state(), State::Established, "rounds={rounds}");
        assert_eq!(
            net.endpoint.connection(id).unwrap().peer_node_id(),
            Some(client.node_id())
        );
        let stats = net.endpoint.stats();
        assert_eq!(
            (stats.backlog, stats.pending_handshakes, stats.connections),
            (0, 0, 1),
            "rounds={rounds}"
        );
        if rounds == 2 {
            let connected = (net.endpoint_events.iter())
                .any(|e| matches!(e, EndpointEvent::Connection { id: of, event: Event::Connected } if *of == id));
            assert!(connected);
        }
        net.clients[0].1.send(b"to the dial").unwrap();
        net.deliver();
        assert_eq!(net.messages_for(id), vec![b"to the dial".to_vec()]);
    }
}

#[test]
fn a_server_role_dial_refuses_another_node_that_dialled_first() {
    let expected = Identity::generate().unwrap();
    let other = Identity::generate().unwrap();
    // Still handshaking when claimed: verified, found to be another node, closed.
    let (net, dial) = claimed_dial(2, &expected, &other);
    let id = dial.unwrap();
    let refused = (net.endpoint_events.iter()).any(|e| {
        matches!(e, EndpointEvent::Connection { id: of, event: Event::HandshakeFailed(HandshakeFailure::PeerVerification(_)) } if *of == id)
    });
    assert!(refused, "{:?}", net.endpoint_events);
    assert_eq!(net.clients[0].1.state(), State::Closed);
    assert_eq!(net.endpoint.stats().connections, 0);
    // Established and waiting in the backlog: another node stays for accept().
    let (net, dial) = claimed_dial(20, &expected, &other);
    assert!(dial
        .unwrap_err()
        .starts_with("the endpoint already has a connection to"));
    assert_eq!(net.endpoint.stats().backlog, 1);
}

#[test]
fn a_one_peer_endpoint_keeps_an_early_hello_until_started_and_counts_strangers() {
    let mut net = Net::new(EndpointConfig::one_peer(fast_config()));
    let client_id = Identity::generate().unwrap();
    let peer = net.add_client(&client_id);
    let address = net.clients[peer].0;
    let id = (net.endpoint)
        .connect_idle(net.now, address, Role::Server, Some(client_id.node_id().to_owned()))
        .unwrap();
    // The client's ClientHello arrives before the handshake is asked for: kept, not answered.
    net.deliver();
    assert_eq!(net.endpoint.connection(id).unwrap().state(), State::Idle);
    assert_eq!(net.endpoint.stats().datagrams_out, 0);
    // Strangers, DTLS or not, are nobody's: counted, never queued for the application.
    net.endpoint.handle(net.now, client_address(7), b"PUNCH");
    net.endpoint.handle(net.now, client_address(8), &[22, 254, 253, 0, 0]);
    assert_eq!(net.endpoint.stats().dropped_unknown_source, 2);
    assert_eq!(net.endpoint.poll_datagram(), None);
    net.endpoint.start(net.now, id);
    assert!(net.run_until(Duration::from_secs(5), Net::all_clients_connected));
    assert!(net.endpoint_events.contains(&EndpointEvent::Connection {
        id,
        event: Event::Connected
    }));
    // What is not DTLS from the peer's own address is its engine's to count.
    net.endpoint.handle(net.now, address, b"PUNCH");
    assert_eq!(net.endpoint.connection(id).unwrap().stats().dropped_not_dtls, 1);
    assert_eq!(net.endpoint.poll_datagram(), None);
    // Only that one peer: no second dial, no incoming handshakes.
    let other = client_address(9);
    assert!(net.endpoint.connect(net.now, other, Role::Client, None).is_err());
}
