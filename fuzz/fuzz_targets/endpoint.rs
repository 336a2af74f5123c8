//! Arbitrary datagrams from many source addresses fed to an endpoint with small bounds,
//! while a genuine client dials it. The input's first byte picks the options (migration on
//! or off, cookies on or off); the rest is a list of operations from `datagram_ops`, each sent
//! from one of six addresses (the genuine client's among them).
//!
//! Beyond "no panic", it checks what a user relies on: the tables never exceed their bounds,
//! no connection is announced for anyone but the genuine client, and the genuine client
//! still connects and is heard when no injected datagram used its address (with cookies on).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dtls_peer::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use dtls_peer::{Config, Engine, Event, Identity, Role, State};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/rust/common/datagram_ops.rs"]
mod datagram_ops;
use datagram_ops::Ops;

const GENUINE: usize = 0;

struct Fixture {
    client: Identity,
    server: Identity,
    /// What a genuine client sent to an endpoint in one clean handshake and a message.
    to_server: Vec<Vec<u8>>,
}

fn address(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + i as u8], 5000 + i as u16))
}

fn config(options: u8) -> EndpointConfig {
    EndpointConfig {
        peer: Config::default(),
        max_pending_handshakes: 2,
        max_connections: 3,
        accept_backlog: 2,
        datagram_queue: 4,
        allow_migration: options & 1 == 1,
        require_cookie: options & 2 == 0,
        ..EndpointConfig::default()
    }
}

fn client(fx_client: &Identity, server: &Identity, now: Instant) -> Engine {
    let mut c = Engine::new(Role::Client, fx_client, Some(server.node_id().to_owned()), Config::default()).unwrap();
    c.start(now);
    c
}

/// Moves datagrams between the endpoint and the genuine client for `rounds` rounds; the
/// endpoint's datagrams to other addresses are dropped, as on a network.
fn exchange(ep: &mut Endpoint, c: &mut Engine, now: Instant, rounds: usize, log: &mut Vec<Vec<u8>>) -> Vec<EndpointEvent> {
    let mut events = Vec::new();
    for _ in 0..rounds {
        let mut moved = false;
        while let Some(t) = ep.poll_transmit() {
            if t.destination == address(GENUINE) {
                c.handle_datagram(now, &t.contents);
                moved = true;
            }
        }
        while let Some(d) = c.poll_transmit() {
            ep.handle(now, address(GENUINE), &d);
            log.push(d);
            moved = true;
        }
        events.extend(std::iter::from_fn(|| ep.poll_event()));
        while ep.poll_datagram().is_some() {}
        if !moved {
            break;
        }
    }
    events
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let client_id = Identity::generate().unwrap();
        let server = Identity::generate().unwrap();
        let now = Instant::now();
        let mut ep = Endpoint::new(&server, config(0), None).unwrap();
        let mut c = client(&client_id, &server, now);
        let mut log = Vec::new();
        exchange(&mut ep, &mut c, now, 20, &mut log);
        assert_eq!(c.state(), State::Established);
        c.send(b"client record").unwrap();
        exchange(&mut ep, &mut c, now, 4, &mut log);
        Fixture {
            client: client_id,
            server,
            to_server: log,
        }
    })
}

fn check_bounds(ep: &Endpoint) {
    let stats = ep.stats();
    let config = ep.config();
    assert!(stats.connections <= config.max_connections as u64);
    assert!(stats.pending_handshakes <= config.max_pending_handshakes as u64);
    assert!(stats.backlog <= config.accept_backlog as u64);
}

fn check_announced(events: &[EndpointEvent], ep: &Endpoint, fx: &Fixture) {
    for event in events {
        if let EndpointEvent::Incoming { id, .. } = event {
            let peer = ep.connection(*id).and_then(Engine::peer_node_id);
            assert_eq!(peer, Some(fx.client.node_id()), "an injected handshake was announced");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, data)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let mut now = Instant::now();
    let mut ep = Endpoint::new(&fx.server, config(options), None).unwrap();
    let mut c = client(&fx.client, &fx.server, now);
    let mut log = Vec::new();
    let mut events = Vec::new();
    let mut genuine_address_used = false;
    let ops = Ops {
        data,
        genuine: &fx.to_server,
    };
    for (n, d) in ops.take(300).enumerate() {
        let from = (d.len() + n) % 6;
        genuine_address_used |= from == GENUINE;
        ep.handle(now, address(from), &d);
        events.extend(exchange(&mut ep, &mut c, now, 1, &mut log));
        check_bounds(&ep);
        if n % 50 == 49 {
            now += Duration::from_millis(300);
            ep.handle_timeout(now);
            c.handle_timeout(now);
        }
    }
    for _ in 0..40 {
        events.extend(exchange(&mut ep, &mut c, now, 20, &mut log));
        check_bounds(&ep);
        if c.state() != State::Handshaking {
            break;
        }
        now += Duration::from_millis(300);
        ep.handle_timeout(now);
        c.handle_timeout(now);
    }
    check_announced(&events, &ep, fx);
    // Without cookies, injected ClientHellos may hold every pending slot until they time out:
    // the cost of that opt-out, not a fault.
    if genuine_address_used || !ep.config().require_cookie {
        return;
    }
    assert_eq!(c.state(), State::Established, "the genuine client did not connect");
    c.send(b"genuine").unwrap();
    events.extend(exchange(&mut ep, &mut c, now, 4, &mut log));
    check_announced(&events, &ep, fx);
    let heard = events.iter().any(|e| {
        matches!(e, EndpointEvent::Connection { event: Event::Message(m), .. } if m == b"genuine")
    });
    assert!(heard, "the genuine client's message was lost");
});
