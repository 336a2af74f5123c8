//! Guards the security promise: a peer with the wrong node ID is refused during the
//! handshake, on either side, and no application byte reaches either application.

use dtls_peer::{Config, Engine, Event, HandshakeFailure, Identity, Role, State, VerificationFailure};

use crate::common::{failure, Pair};

fn pair_with_pins(client_pin: Option<String>, server_pin: Option<String>) -> Pair {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let client = Engine::new(Role::Client, &client_id, client_pin, Config::default()).unwrap();
    let server = Engine::new(Role::Server, &server_id, server_pin, Config::default()).unwrap();
    Pair::from_engines(client, server, client_id, server_id)
}

#[test]
fn client_refuses_wrong_server() {
    let stranger = Identity::generate().unwrap();
    let mut p = pair_with_pins(Some(stranger.node_id().into()), None);
    assert!(!p.handshake());
    let actual = p.server_id.node_id().to_owned();
    assert_eq!(
        failure(&p.client_events),
        Some(&HandshakeFailure::PeerVerification(
            VerificationFailure::NodeIdMismatch {
                expected: stranger.node_id().into(),
                actual
            }
        ))
    );
    p.flush();
    // The server learns through the fatal alert (unknown_ca: "not the key I pinned"), which
    // is final: no second attempt.
    assert_eq!(failure(&p.server_events), Some(&HandshakeFailure::AlertReceived(48)));
    assert_eq!(p.server.stats().handshake_attempts, 1);
    assert_eq!(p.client.stats().handshake_attempts, 1);
    assert!(!p.server_events.contains(&Event::Connected));
    assert!(!p.client_events.contains(&Event::Connected));
}

#[test]
fn server_refuses_wrong_client_before_any_data() {
    let stranger = Identity::generate().unwrap();
    let mut p = pair_with_pins(None, Some(stranger.node_id().into()));
    assert!(!p.handshake());
    assert!(matches!(
        failure(&p.server_events),
        Some(HandshakeFailure::PeerVerification(
            VerificationFailure::NodeIdMismatch { .. }
        ))
    ));
    p.flush();
    assert!(!p.server_events.contains(&Event::Connected));
    assert_eq!(failure(&p.client_events), Some(&HandshakeFailure::AlertReceived(48)));
    assert_eq!(p.client.stats().handshake_attempts, 1);
    // The client may have finished its side; it must still not be able to deliver data.
    assert_eq!(p.server.state(), State::Failed);
    assert!(Pair::messages(&p.server_events).is_empty());
}

#[test]
fn unpinned_accepts_any_valid_peer_and_reports_it() {
    let mut p = pair_with_pins(None, None);
    assert!(p.handshake());
    assert_eq!(p.client.peer_node_id(), Some(p.server_id.node_id()));
}
