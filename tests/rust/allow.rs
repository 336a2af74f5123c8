//! Guards the allow policy an endpoint's `accept()` uses: a server that accepts a set of node
//! IDs (or asks a policy) decides inside the handshake, like a pin, so a refused peer never
//! gets a session and no application byte flows either way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dtls_peer::trust::{Accept, AllowList, AllowPolicy, Pin};
use dtls_peer::{Config, Engine, Event, HandshakeFailure, Identity, Role, SendError, State, VerificationFailure};

use crate::common::{exchange, failure, fast_config, Pair};

/// A client pinned to the server, and a server that accepts whom `accept` says.
fn pair_accepting(client_id: Identity, accept: Accept) -> Pair {
    let server_id = Identity::generate().unwrap();
    let client = Engine::new(
        Role::Client,
        &client_id,
        Some(server_id.node_id().into()),
        fast_config(),
    )
    .unwrap();
    let pin = Pin::accepting(accept, server_id.scheme().clone());
    let server = Engine::with_pin(Role::Server, &server_id, pin, fast_config()).unwrap();
    Pair::from_engines(client, server, client_id, server_id)
}

fn allow_list(ids: &[&Identity]) -> Accept {
    Accept::Allowed(Arc::new(
        ids.iter().map(|id| id.node_id().to_owned()).collect::<AllowList>(),
    ))
}

/// A policy that always fails to decide (an application callable that raises), counting calls.
#[derive(Debug, Default)]
struct Failing(AtomicUsize);

impl AllowPolicy for Failing {
    fn allows(&self, _node_id: &str) -> Result<bool, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err("allow raised RuntimeError: database down".into())
    }
}

/// The refused side ended with `expected`, the client with the `unknown_ca` alert a pin
/// mismatch sends (final: one attempt each), and nothing connected or was delivered.
fn assert_refused_in_handshake(p: &mut Pair, expected: VerificationFailure) {
    assert!(!p.handshake());
    p.flush();
    assert_eq!(
        failure(&p.server_events),
        Some(&HandshakeFailure::PeerVerification(expected))
    );
    assert_eq!(failure(&p.client_events), Some(&HandshakeFailure::AlertReceived(48)));
    assert_eq!(p.server.stats().handshake_attempts, 1);
    assert_eq!(p.client.stats().handshake_attempts, 1);
    assert!(!p.server_events.contains(&Event::Connected));
    assert!(!p.client_events.contains(&Event::Connected));
    assert_eq!((p.server.state(), p.client.state()), (State::Failed, State::Failed));
    assert_eq!(p.client.send(b"secret"), Err(SendError::Closed));
    assert_eq!(p.server.send(b"secret"), Err(SendError::Closed));
    assert!(Pair::messages(&p.server_events).is_empty());
    assert!(Pair::messages(&p.client_events).is_empty());
    assert_eq!(p.server.peer_node_id(), None);
}

#[test]
fn a_listed_client_connects_and_its_messages_arrive() {
    let client_id = Identity::generate().unwrap();
    let other = Identity::generate().unwrap();
    let mut p = pair_accepting(client_id.clone(), allow_list(&[&other, &client_id]));
    assert!(p.handshake(), "{:?} {:?}", p.client_events, p.server_events);
    assert_eq!(p.server.peer_node_id(), Some(client_id.node_id()));
    assert_eq!(p.server_messages_after_sending(b"hello"), vec![b"hello".to_vec()]);
    p.server.send(b"welcome").unwrap();
    p.collect();
    p.flush();
    assert_eq!(Pair::messages(&p.client_events), vec![b"welcome".to_vec()]);
}

#[test]
fn an_unlisted_client_is_refused_during_the_handshake() {
    let client_id = Identity::generate().unwrap();
    let listed = Identity::generate().unwrap();
    let mut p = pair_accepting(client_id.clone(), allow_list(&[&listed]));
    let actual = client_id.node_id().to_owned();
    assert_refused_in_handshake(&mut p, VerificationFailure::NotAllowed { actual });
}

#[test]
fn an_empty_allow_list_refuses_everyone() {
    let client_id = Identity::generate().unwrap();
    let mut p = pair_accepting(client_id.clone(), allow_list(&[]));
    let actual = client_id.node_id().to_owned();
    assert_refused_in_handshake(&mut p, VerificationFailure::NotAllowed { actual });
}

#[test]
fn a_policy_that_fails_refuses_the_peer_once_asked() {
    let policy = Arc::new(Failing::default());
    let mut p = pair_accepting(Identity::generate().unwrap(), Accept::Allowed(policy.clone()));
    let why = "allow raised RuntimeError: database down".to_owned();
    assert_refused_in_handshake(&mut p, VerificationFailure::Policy(why));
    // The application's policy runs once per peer certificate, not once per OpenSSL callback.
    assert_eq!(policy.0.load(Ordering::SeqCst), 1);
}

#[test]
fn accept_any_takes_a_valid_peer_and_names_it() {
    let client_id = Identity::generate().unwrap();
    let mut p = pair_accepting(client_id.clone(), Accept::Any);
    assert!(p.handshake());
    assert_eq!(p.server.peer_node_id(), Some(client_id.node_id()));
    assert_eq!(p.server_messages_after_sending(b"hi"), vec![b"hi".to_vec()]);
}

#[test]
fn another_allowed_node_cannot_take_over_a_session_but_the_same_one_can_restart() {
    let alice = Identity::generate().unwrap();
    let bob = Identity::generate().unwrap();
    let mut p = pair_accepting(alice.clone(), allow_list(&[&alice, &bob]));
    assert!(p.handshake());
    // Bob, allowed by the policy, starts a handshake from Alice's address.
    let server_pin = Some(p.server_id.node_id().to_owned());
    let mut intruder = Engine::new(Role::Client, &bob, server_pin.clone(), fast_config()).unwrap();
    intruder.start(Instant::now());
    let (mut intruder_events, mut server_events) = (Vec::new(), Vec::new());
    exchange(&mut intruder, &mut p.server, &mut intruder_events, &mut server_events);
    assert_eq!(failure(&intruder_events), Some(&HandshakeFailure::AlertReceived(48)));
    assert_eq!(p.server.stats().peer_restarts, 0);
    assert_eq!(p.server.peer_node_id(), Some(alice.node_id()));
    // Alice restarting is still let in, and replaces her own session.
    let mut restarted = Engine::new(Role::Client, &alice, server_pin, Config::default()).unwrap();
    restarted.start(Instant::now());
    let mut alice_events = Vec::new();
    exchange(&mut restarted, &mut p.server, &mut alice_events, &mut server_events);
    assert!(alice_events.contains(&Event::Connected), "{alice_events:?}");
    assert_eq!(p.server.stats().peer_restarts, 1);
    restarted.send(b"alice again").unwrap();
    exchange(&mut restarted, &mut p.server, &mut alice_events, &mut server_events);
    assert_eq!(Pair::messages(&server_events), vec![b"alice again".to_vec()]);
}
