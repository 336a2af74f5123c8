//! Guards the happy path: pinned handshake, messages both ways, close_notify, size limits.

use dtls_peer::{CloseReason, Config, Event, SendError, State};

use crate::common::Pair;

#[test]
fn pinned_handshake_completes_and_reports_peer() {
    let mut p = Pair::new(Config::default());
    assert!(
        p.handshake(),
        "client {:?} server {:?}",
        p.client_events,
        p.server_events
    );
    assert_eq!(p.client.peer_node_id(), Some(p.server_id.node_id()));
    assert_eq!(p.server.peer_node_id(), Some(p.client_id.node_id()));
    assert_eq!(p.client.cipher(), Some("ECDHE-ECDSA-AES128-GCM-SHA256"));
    assert_eq!(p.client.protocol_version(), Some("DTLSv1.2"));
    assert_eq!(p.client.peer_certificate(), Some(&p.server_id.certificate_der()[..]));
    assert_eq!(p.client.poll_timeout(), None, "no timer once established");
    // With mtu 1200 no handshake datagram is fragmented into tiny pieces, and none exceeds it.
    assert!(p
        .sent_to_server
        .iter()
        .chain(&p.sent_to_client)
        .all(|d| d.len() <= 1200));
    assert!(
        p.sent_to_client.iter().any(|d| d.len() > 400),
        "server flight not coalesced"
    );
    assert_eq!(p.client.stats().retransmissions, 0);
    assert!(p.client.stats().handshake_duration.is_some());
}

#[test]
fn messages_flow_both_ways_in_order() {
    let mut p = Pair::new(Config::default());
    assert!(p.handshake());
    for i in 0..20u8 {
        p.client.send(&[i; 100]).unwrap();
        p.server.send(&[i + 100; 1163]).unwrap();
    }
    p.collect();
    p.flush();
    let to_server = Pair::messages(&p.server_events);
    let to_client = Pair::messages(&p.client_events);
    assert_eq!(to_server, (0..20u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
    assert_eq!(to_client, (0..20u8).map(|i| vec![i + 100; 1163]).collect::<Vec<_>>());
    // Each message travels in exactly one datagram within the MTU.
    assert!(p.sent_to_client.iter().all(|d| d.len() <= 1200));
    assert_eq!(p.server.stats().messages_in, 20);
}

#[test]
fn send_limits_are_enforced() {
    let mut p = Pair::new(Config::default());
    assert_eq!(p.client.send(b"early"), Err(SendError::NotEstablished));
    assert!(p.handshake());
    let max = p.client.max_message_size();
    assert_eq!(max, 1163);
    assert_eq!(
        p.client.send(&vec![0; max + 1]),
        Err(SendError::TooLarge { size: max + 1, max })
    );
    assert_eq!(p.client.send(b""), Err(SendError::Empty));
    p.client.send(&vec![7; max]).unwrap();
    let d = p.client.poll_transmit().unwrap();
    assert_eq!(d.len(), 1200, "a max-size message fills the MTU exactly");
}

#[test]
fn close_notify_ends_the_session_after_pending_messages() {
    let mut p = Pair::new(Config::default());
    assert!(p.handshake());
    p.client.send(b"last words").unwrap();
    p.client.close();
    p.client.close();
    assert_eq!(p.client.state(), State::Closed);
    assert_eq!(p.client.send(b"x"), Err(SendError::Closed));
    p.collect();
    p.flush();
    let tail: Vec<_> = p.server_events.iter().skip_while(|e| **e == Event::Connected).collect();
    assert_eq!(
        tail,
        vec![
            &Event::Message(b"last words".to_vec()),
            &Event::Closed(CloseReason::PeerClosed)
        ]
    );
    assert_eq!(p.server.state(), State::Closed);
}

#[test]
fn datagrams_before_start_are_kept() {
    let mut p = Pair::new(Config::default());
    // Only the client starts; the server is still idle when the ClientHello arrives.
    p.client.start(std::time::Instant::now());
    p.collect();
    p.flush();
    assert_eq!(p.server.state(), State::Idle);
    p.server.start(std::time::Instant::now());
    p.collect();
    assert!(p.drive_until(|p| p.both_connected()));
    assert_eq!(
        p.client.stats().retransmissions,
        0,
        "the early ClientHello was used, not resent"
    );
}

#[test]
fn other_cipher_choices_negotiate() {
    for cipher in ["ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384"] {
        let mut p = Pair::new(Config {
            ciphers: cipher.into(),
            ..Config::default()
        });
        assert!(p.handshake(), "{cipher}");
        assert_eq!(p.server.cipher(), Some(cipher));
        p.client.send(&vec![1; p.client.max_message_size()]).unwrap();
        assert!(
            p.client.poll_transmit().unwrap().len() <= 1200,
            "{cipher} overflows the MTU"
        );
    }
}
