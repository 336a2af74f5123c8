//! Guards the restarted-peer path: a peer whose application restarted runs a new handshake
//! on the same addresses, which replaces the live session only once it is verified.

use std::time::Instant;

use dtls_peer::{Engine, Event, HandshakeFailure, Identity, Role, State};

use crate::common::{exchange, fast_config, Pair};

fn restarted(role: Role, id: &Identity, peer: &Identity) -> Engine {
    let mut engine = Engine::new(role, id, Some(peer.node_id().to_owned()), fast_config()).unwrap();
    engine.start(Instant::now());
    engine
}

fn messages(events: &[Event]) -> Vec<Vec<u8>> {
    Pair::messages(events)
}

#[test]
fn a_restarted_client_replaces_the_session_with_a_verified_handshake() {
    let mut p = Pair::new(fast_config());
    assert!(p.handshake());
    p.server_events.clear();
    let mut server_events = Vec::new();
    // A message the server has not handed to the application yet must survive the switch.
    p.client.send(b"from the old session").unwrap();
    while let Some(d) = p.client.poll_transmit() {
        p.server.handle_datagram(Instant::now(), &d);
    }
    let mut client = restarted(Role::Client, &p.client_id, &p.server_id);
    let mut client_events = Vec::new();
    exchange(&mut client, &mut p.server, &mut client_events, &mut server_events);
    assert!(client_events.contains(&Event::Connected), "{client_events:?}");
    assert_eq!(p.server.state(), State::Established);
    assert_eq!(p.server.stats().peer_restarts, 1);
    client.send(b"from the new session").unwrap();
    p.server.send(b"welcome back").unwrap();
    exchange(&mut client, &mut p.server, &mut client_events, &mut server_events);
    assert_eq!(
        messages(&server_events),
        vec![b"from the old session".to_vec(), b"from the new session".to_vec()]
    );
    assert_eq!(messages(&client_events), vec![b"welcome back".to_vec()]);
    // The application saw one continuous session: no second Connected, no Closed.
    assert!(
        server_events.iter().all(|e| matches!(e, Event::Message(_))),
        "{server_events:?}"
    );
}

#[test]
fn a_restarted_server_asks_the_old_client_for_a_new_handshake() {
    let mut p = Pair::new(fast_config());
    assert!(p.handshake());
    p.client_events.clear();
    let mut client_events = Vec::new();
    let mut server = restarted(Role::Server, &p.server_id, &p.client_id);
    let mut server_events = Vec::new();
    // The old client knows nothing; its next message reaches a server without the session.
    p.client.send(b"lost: the server restarted").unwrap();
    exchange(&mut p.client, &mut server, &mut client_events, &mut server_events);
    assert!(server_events.contains(&Event::Connected), "{server_events:?}");
    assert!(server.stats().dropped_stale_handshake >= 1);
    assert_eq!(p.client.stats().peer_restarts, 1);
    p.client.send(b"again").unwrap();
    server.send(b"hello from the new server").unwrap();
    exchange(&mut p.client, &mut server, &mut client_events, &mut server_events);
    assert_eq!(messages(&server_events), vec![b"again".to_vec()]);
    assert_eq!(messages(&client_events), vec![b"hello from the new server".to_vec()]);
    assert_eq!(p.client.state(), State::Established);
}

#[test]
fn a_forged_new_handshake_leaves_the_session_alone() {
    let mut p = Pair::new(fast_config());
    assert!(p.handshake());
    p.server_events.clear();
    let mut server_events = Vec::new();
    // Someone with another key, at the client's address, says hello.
    let stranger = Identity::generate().unwrap();
    let mut forger = restarted(Role::Client, &stranger, &p.server_id);
    let mut forger_events = Vec::new();
    exchange(&mut forger, &mut p.server, &mut forger_events, &mut server_events);
    assert!(
        matches!(
            forger_events.last(),
            Some(Event::HandshakeFailed(HandshakeFailure::AlertReceived(48)))
        ),
        "{forger_events:?} {:?} {:?} {:?}",
        forger.state(),
        forger.stats(),
        p.server.stats()
    );
    assert_eq!(p.server.stats().peer_restarts, 0);
    // Every datagram of the forged handshake went to it, none to the session.
    assert_eq!(p.server.stats().dropped_new_handshake, forger.stats().datagrams_out);
    assert_eq!(p.server.peer_node_id(), Some(p.client_id.node_id()));
    p.client.send(b"still the real client").unwrap();
    p.collect();
    p.flush();
    assert_eq!(
        messages(&[server_events, p.server_events.clone()].concat()),
        vec![b"still the real client".to_vec()]
    );
}
