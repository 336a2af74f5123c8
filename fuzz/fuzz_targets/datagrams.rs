//! Arbitrary datagrams fed to the engine in every state: before `start`, to either side during
//! the handshake, and to an established session. The input's first byte picks the state; the
//! rest is a list of operations, each a raw datagram or an edited/truncated genuine datagram
//! (so the fuzzer reaches OpenSSL's parsers, which carry no coverage instrumentation).
//!
//! Beyond "no panic", it checks what a user relies on: no message before `Connected`, a
//! connected peer is the pinned one, an established session survives any injected datagram
//! and delivers only what the genuine peer sent.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use dtls_peer::{Config, Engine, Event, Identity, Role, State};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/rust/common/datagram_ops.rs"]
mod datagram_ops;
use datagram_ops::{check_events, Ops};

struct Fixture {
    client: Identity,
    server: Identity,
    /// Every datagram of one clean handshake plus a few records, per direction.
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let client = Identity::generate().unwrap();
        let server = Identity::generate().unwrap();
        let (mut c, mut s) = pair(&client, &server);
        let mut log = Log::default();
        let now = Instant::now();
        s.start(now);
        c.start(now);
        exchange(&mut c, &mut s, &mut log, 20);
        assert_eq!(c.state(), State::Established);
        c.send(b"client record").unwrap();
        s.send(b"server record").unwrap();
        exchange(&mut c, &mut s, &mut log, 4);
        c.close();
        exchange(&mut c, &mut s, &mut log, 4);
        Fixture {
            client,
            server,
            to_server: log.to_server,
            to_client: log.to_client,
        }
    })
}

fn pair(client: &Identity, server: &Identity) -> (Engine, Engine) {
    let c = Engine::new(
        Role::Client,
        client,
        Some(server.node_id().to_owned()),
        Config::default(),
    )
    .unwrap();
    let s = Engine::new(
        Role::Server,
        server,
        Some(client.node_id().to_owned()),
        Config::default(),
    )
    .unwrap();
    (c, s)
}

#[derive(Default)]
struct Log {
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

/// Delivers what each side emits to the other, one datagram at a time and collecting the
/// receiver's output after each (the engine's contract), for at most `rounds` rounds; what is
/// still in flight after the last round is lost, as on a network.
fn exchange(c: &mut Engine, s: &mut Engine, log: &mut Log, rounds: usize) {
    let mut to_server: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    let mut to_client: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    for _ in 0..rounds {
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
        let now = Instant::now();
        let (mut next_to_server, mut next_to_client) = (Vec::new(), Vec::new());
        for d in to_server.drain(..) {
            s.handle_datagram(now, &d);
            next_to_client.extend(std::iter::from_fn(|| s.poll_transmit()));
            log.to_server.push(d);
        }
        for d in to_client.drain(..) {
            c.handle_datagram(now, &d);
            next_to_server.extend(std::iter::from_fn(|| c.poll_transmit()));
            log.to_client.push(d);
        }
        (to_server, to_client) = (next_to_server, next_to_client);
    }
    log.client_events.extend(std::iter::from_fn(|| c.poll_event()));
    log.server_events.extend(std::iter::from_fn(|| s.poll_event()));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let (mut c, mut s) = pair(&fx.client, &fx.server);
    let mut log = Log::default();
    let now = Instant::now();
    match mode % 4 {
        // Before start: kept, then processed by start().
        0 => {
            let ops = Ops {
                data,
                genuine: &fx.to_server,
            };
            for d in ops.take(80) {
                s.handle_datagram(now, &d);
            }
            s.start(now);
            c.start(now);
            exchange(&mut c, &mut s, &mut log, 20);
        }
        // During the handshake, injected into one side after each genuine flight.
        1 | 2 => {
            let into_server = mode % 4 == 1;
            let genuine = if into_server { &fx.to_server } else { &fx.to_client };
            let mut ops = Ops { data, genuine };
            s.start(now);
            c.start(now);
            for _ in 0..6 {
                for d in ops.by_ref().take(8) {
                    let target = if into_server { &mut s } else { &mut c };
                    target.handle_datagram(now, &d);
                    // The engine's contract: collect its output after every call.
                    exchange(&mut c, &mut s, &mut log, 1);
                }
                exchange(&mut c, &mut s, &mut log, 1);
            }
            exchange(&mut c, &mut s, &mut log, 20);
            if c.state() == State::Established && s.state() == State::Established {
                c.send(b"after").unwrap();
                exchange(&mut c, &mut s, &mut log, 2);
                assert!(log.server_events.contains(&Event::Message(b"after".to_vec())));
            }
        }
        // Established: nothing injected may end the session or be delivered as a message.
        _ => {
            s.start(now);
            c.start(now);
            exchange(&mut c, &mut s, &mut log, 20);
            assert_eq!(s.state(), State::Established);
            let mut genuine = fx.to_server.clone();
            c.send(b"genuine one").unwrap();
            genuine.extend(std::iter::from_fn(|| c.poll_transmit()));
            for d in &genuine[fx.to_server.len()..] {
                s.handle_datagram(now, d);
            }
            for d in (Ops {
                data,
                genuine: &genuine,
            })
            .take(200)
            {
                s.handle_datagram(now, &d);
                // Answers to a forgery reach the genuine client, as they would on the wire.
                exchange(&mut c, &mut s, &mut log, 1);
            }
            assert_eq!(s.state(), State::Established, "an injected datagram ended the session");
            assert_eq!(
                c.state(),
                State::Established,
                "answers to injected datagrams ended the session"
            );
            c.send(b"genuine two").unwrap();
            exchange(&mut c, &mut s, &mut log, 4);
            log.server_events.extend(std::iter::from_fn(|| s.poll_event()));
            let messages: Vec<_> = log
                .server_events
                .iter()
                .filter_map(|e| match e {
                    Event::Message(m) => Some(m.as_slice()),
                    _ => None,
                })
                .collect();
            assert_eq!(messages, [&b"genuine one"[..], b"genuine two"]);
            return;
        }
    }
    check_events(&log.client_events, &c, fx.server.node_id());
    check_events(&log.server_events, &s, fx.client.node_id());
});
