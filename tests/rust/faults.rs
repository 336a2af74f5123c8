//! Guards recovery on bad links: every handshake flight lost once, duplicated or reordered
//! still completes (through the retransmission timer), and a silent peer times out.

use std::time::{Duration, Instant};

use dtls_peer::{Config, Event, HandshakeFailure, State};

use crate::common::{fast_config, Dir, Pair};

#[test]
fn each_handshake_flight_lost_once_is_retransmitted() {
    // Flights: client 0 (ClientHello), server 0 (ServerHello..Done), client 1 (Certificate..
    // Finished), server 1 (ChangeCipherSpec, Finished).
    for (lost_dir, lost_index) in [
        (Dir::ToServer, 0),
        (Dir::ToClient, 0),
        (Dir::ToServer, 1),
        (Dir::ToClient, 1),
    ] {
        let mut p = Pair::new(fast_config()).with_script(move |dir, index, flight| {
            if dir == lost_dir && index == lost_index {
                Vec::new()
            } else {
                flight
            }
        });
        assert!(
            p.handshake(),
            "lost {lost_dir:?} flight {lost_index}: {:?} / {:?}",
            p.client_events,
            p.server_events
        );
        let retransmissions = p.client.stats().retransmissions + p.server.stats().retransmissions;
        assert!(
            retransmissions >= 1,
            "lost {lost_dir:?} {lost_index} recovered without a retransmission"
        );
        assert_eq!(
            p.server_messages_after_sending(b"after loss"),
            vec![b"after loss".to_vec()]
        );
    }
}

#[test]
fn duplicated_flights_are_harmless() {
    let mut p = Pair::new(fast_config())
        .with_script(|_, _, flight| flight.iter().flat_map(|d| [d.clone(), d.clone()]).collect());
    assert!(p.handshake());
    for i in 0..5u8 {
        p.client.send(&[i]).unwrap();
    }
    p.collect();
    p.flush();
    // The DTLS replay window drops each duplicate: five messages, once each.
    assert_eq!(
        Pair::messages(&p.server_events),
        (0..5u8).map(|i| vec![i]).collect::<Vec<_>>()
    );
    // Each is counted, and so is any copy of the client's last flight that arrived once the
    // server was established and needed no answer.
    let before = p.server.stats().dropped_invalid;
    assert!(before >= 5, "{before}");
    p.client.send(b"once more").unwrap();
    p.collect();
    p.flush();
    assert_eq!(p.server.stats().dropped_invalid, before + 1);
}

#[test]
fn reordered_fragments_are_reassembled() {
    // A small MTU splits each flight into several datagrams; deliver each flight backwards.
    let config = Config {
        mtu: 300,
        ..fast_config()
    };
    let mut p = Pair::new(config).with_script(|_, _, mut flight| {
        flight.reverse();
        flight
    });
    assert!(p.handshake(), "{:?} / {:?}", p.client_events, p.server_events);
    assert!(p.sent_to_client.iter().all(|d| d.len() <= 300));
    assert!(p.sent_to_client.len() >= 4, "flights were not fragmented");
}

#[test]
fn reordered_flights_across_directions_complete() {
    // Hold the client's second flight back and deliver it behind its own retransmission.
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let h = held.clone();
    let mut p = Pair::new(fast_config()).with_script(move |dir, index, flight| match (dir, index) {
        (Dir::ToServer, 1) => {
            h.borrow_mut().extend(flight);
            Vec::new()
        }
        (Dir::ToServer, 2) => flight.into_iter().chain(h.borrow_mut().drain(..)).collect(),
        _ => flight,
    });
    assert!(p.handshake());
    assert!(held.borrow().is_empty());
}

#[test]
fn silent_peer_times_out_at_the_deadline() {
    let config = Config {
        handshake_timeout: Duration::from_millis(400),
        ..fast_config()
    };
    let mut p = Pair::new(config).with_script(|dir, _, flight| if dir == Dir::ToServer { Vec::new() } else { flight });
    let started = Instant::now();
    p.start();
    assert!(p.drive_until(|p| p.client.state() == State::Failed));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    assert_eq!(p.client_events, vec![Event::HandshakeFailed(HandshakeFailure::Timeout)]);
    // 50, 100, 200 ms: the schedule doubles from the initial timeout.
    let retransmissions = p.client.stats().retransmissions;
    assert!((2..=4).contains(&retransmissions), "{retransmissions} retransmissions");
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn deadline_is_reported_relative_to_now() {
    let mut p = Pair::new(Config::default());
    let now = Instant::now();
    p.client.start(now);
    let first = p.client.poll_timeout().unwrap();
    assert_eq!(
        first,
        now + Duration::from_millis(250),
        "initial retransmission timeout"
    );
    // A time past the handshake deadline fails at once, whatever OpenSSL's clock says.
    p.client.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(p.client.state(), State::Failed);
}
