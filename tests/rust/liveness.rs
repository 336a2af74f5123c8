//! Keepalives, the idle timeout and the handshake round trip, in virtual time (liveness
//! deadlines follow the `now` the engine is given; only OpenSSL's retransmissions need real time).

use std::time::{Duration, Instant};

use dtls_peer::{is_keepalive, CloseReason, Config, ConfigError, Engine, Event, State, KEEPALIVE_LEN};

use crate::common::{fast_config, Dir, Pair};

const SECOND: Duration = Duration::from_secs(1);

fn connected(config: Config) -> Pair {
    let mut p = Pair::new(config);
    assert!(p.handshake(), "{:?} / {:?}", p.client_events, p.server_events);
    p.flush();
    p
}

fn drain(engine: &mut Engine) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| engine.poll_transmit()).collect()
}

fn events(engine: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// Runs `engine`'s timer at its deadline; returns that deadline and what it sent.
fn fire(engine: &mut Engine) -> (Instant, Vec<Vec<u8>>) {
    let at = engine.poll_timeout().expect("a liveness deadline");
    engine.handle_timeout(at);
    (at, drain(engine))
}

fn with_keepalive(interval: Duration) -> Config {
    Config {
        keepalive_interval: Some(interval),
        ..fast_config()
    }
}

#[test]
fn off_by_default_so_an_idle_session_has_no_timer() {
    let p = connected(fast_config());
    assert_eq!(p.client.poll_timeout(), None);
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn an_idle_session_sends_keepalives_the_peer_accepts_and_ignores() {
    let mut p = connected(with_keepalive(SECOND));
    // The first check may find the final flight still counted as recent traffic; after it,
    // every idle interval sends exactly one keepalive.
    let (first, early) = fire(&mut p.client);
    let (second, sent) = fire(&mut p.client);
    assert_eq!(second - first, SECOND);
    assert_eq!(sent.len(), 1);
    let keepalive = &sent[0];
    assert!(is_keepalive(keepalive));
    assert_eq!(keepalive.len(), KEEPALIVE_LEN);
    // A STUN Binding Indication: first byte 0 (never a DTLS record), the STUN magic cookie.
    assert_eq!(&keepalive[..2], &[0x00, 0x11]);
    assert_eq!(&keepalive[4..8], &[0x21, 0x12, 0xa4, 0x42]);

    let before = p.server.stats();
    p.server.handle_datagram(second, keepalive);
    let after = p.server.stats();
    assert_eq!(after.keepalives_in, 1);
    assert_eq!(
        after.dropped_invalid + after.dropped_not_dtls,
        before.dropped_invalid + before.dropped_not_dtls
    );
    assert!(events(&mut p.server).is_empty(), "a keepalive is not a message");
    assert!(drain(&mut p.server).is_empty(), "a keepalive needs no answer");
    assert_eq!(p.server.state(), State::Established);
    assert_eq!(p.client.stats().keepalives_out, 1 + early.len() as u64);
}

#[test]
fn a_busy_session_sends_no_keepalive() {
    let mut p = connected(with_keepalive(SECOND));
    fire(&mut p.client);
    let keepalives = p.client.stats().keepalives_out;
    for _ in 0..3 {
        p.client.send(b"traffic").unwrap();
        let (_, sent) = fire(&mut p.client);
        assert_eq!(sent.len(), 1, "a keepalive went out although a message was sent");
        assert!(!is_keepalive(&sent[0]));
    }
    assert_eq!(p.client.stats().keepalives_out, keepalives);
    // Idle again: the next interval sends one.
    assert_eq!(fire(&mut p.client).1.len(), 1);
}

#[test]
fn replayed_reflected_forged_and_foreign_keepalives_are_refused() {
    let mut p = connected(with_keepalive(SECOND));
    fire(&mut p.client);
    let (at, sent) = fire(&mut p.client);
    let keepalive = sent[0].clone();
    p.server.handle_datagram(at, &keepalive);
    assert_eq!(p.server.stats().keepalives_in, 1);

    let mut forged = keepalive.clone();
    forged[KEEPALIVE_LEN - 1] ^= 1;
    let mut other = connected(with_keepalive(SECOND));
    fire(&mut other.client);
    let foreign = fire(&mut other.client).1.remove(0);
    let invalid_before = p.server.stats().dropped_invalid;
    // A replay (counter not above the last one), a bad MAC, another session's keepalive.
    for bad in [&keepalive, &forged, &foreign] {
        p.server.handle_datagram(at, bad);
    }
    // Our own keepalive reflected back at us: each direction has its own key.
    let client_invalid = p.client.stats().dropped_invalid;
    p.client.handle_datagram(at, &keepalive);
    assert_eq!(p.client.stats().dropped_invalid, client_invalid + 1);
    assert_eq!(p.client.stats().keepalives_in, 0);

    let stats = p.server.stats();
    assert_eq!(stats.keepalives_in, 1);
    assert_eq!(stats.dropped_invalid, invalid_before + 3);
    assert_eq!(p.server.state(), State::Established);
    // The session is untouched: messages still flow.
    p.client.send(b"still here").unwrap();
    p.collect();
    p.flush();
    assert_eq!(Pair::messages(&p.server_events).last().unwrap(), b"still here");
}

#[test]
fn idle_timeout_closes_with_a_reason_and_tells_the_peer() {
    let timeout = 5 * SECOND;
    let mut p = connected(Config {
        idle_timeout: Some(timeout),
        ..fast_config()
    });
    let established = p.server.poll_timeout().unwrap() - timeout;
    // A message extends the deadline to five seconds after it arrived.
    p.client.send(b"ping").unwrap();
    let ping = drain(&mut p.client).remove(0);
    p.server.handle_datagram(established + 3 * SECOND, &ping);
    assert_eq!(events(&mut p.server), vec![Event::Message(b"ping".to_vec())]);
    assert_eq!(p.server.poll_timeout(), Some(established + 8 * SECOND));
    // Early timer calls change nothing.
    p.server.handle_timeout(established + 7 * SECOND);
    assert_eq!(p.server.state(), State::Established);

    let (_, sent) = fire(&mut p.server);
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(
        events(&mut p.server),
        vec![Event::Closed(CloseReason::IdleTimeout(timeout))]
    );
    assert_eq!(
        CloseReason::IdleTimeout(timeout).to_string(),
        "idle timeout: no authenticated datagram from the peer for 5 s"
    );
    // close_notify goes to the peer, which closes too.
    assert_eq!(sent.len(), 1);
    p.client.handle_datagram(Instant::now(), &sent[0]);
    assert_eq!(events(&mut p.client), vec![Event::Closed(CloseReason::PeerClosed)]);
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn the_peers_keepalives_hold_off_the_idle_timeout_but_garbage_does_not() {
    let mut p = connected(Config {
        keepalive_interval: Some(SECOND),
        idle_timeout: Some(3 * SECOND),
        ..fast_config()
    });
    // Many idle seconds: each side's keepalives keep the other's session up.
    let mut now = Instant::now();
    for _ in 0..40 {
        now = [p.client.poll_timeout(), p.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        p.client.handle_timeout(now);
        p.server.handle_timeout(now);
        for d in drain(&mut p.client) {
            p.server.handle_datagram(now, &d);
        }
        for d in drain(&mut p.server) {
            p.client.handle_datagram(now, &d);
        }
        assert_eq!(
            (p.client.state(), p.server.state()),
            (State::Established, State::Established)
        );
    }
    assert!(p.server.stats().keepalives_in >= 10, "{:?}", p.server.stats());
    assert!(p.client.stats().keepalives_in >= 10, "{:?}", p.client.stats());
    // Unauthenticated junk from the peer's address does not count as life: with the
    // client gone silent, the server closes three seconds after it last heard from it.
    for _ in 0..5 {
        p.server.handle_datagram(now + SECOND / 10, b"not a keepalive");
    }
    let mut closed_at = None;
    for _ in 0..10 {
        let at = p.server.poll_timeout().expect("the idle deadline");
        p.server.handle_timeout(at);
        if p.server.state() == State::Closed {
            closed_at = Some(at);
            break;
        }
    }
    assert!(closed_at.expect("closed") <= now + 3 * SECOND);
}

#[test]
fn the_handshake_gives_a_round_trip_estimate() {
    let p = connected(fast_config());
    for stats in [p.client.stats(), p.server.stats()] {
        let rtt = stats.handshake_rtt.expect("a round-trip sample");
        assert!(rtt <= stats.handshake_duration.unwrap(), "{stats:?}");
    }
}

#[test]
fn a_retransmitted_last_flight_gives_no_round_trip_sample() {
    // Drop the server's answer to the client's last flight once: the client sends that flight
    // again, and an answer could belong to either copy (Karn's rule).
    let mut p = Pair::new(fast_config()).with_script(|dir, index, flight| {
        if dir == Dir::ToClient && index == 1 {
            Vec::new()
        } else {
            flight
        }
    });
    assert!(p.handshake());
    let client = p.client.stats();
    assert!(client.retransmissions >= 1, "{client:?}");
    assert_eq!(client.handshake_rtt, None);
}

#[test]
fn liveness_periods_are_validated() {
    for (keepalive, idle) in [
        (Some(Duration::ZERO), None),
        (None, Some(Duration::ZERO)),
        (Some(Duration::from_secs(86_401)), None),
    ] {
        let config = Config {
            keepalive_interval: keepalive,
            idle_timeout: idle,
            ..Config::default()
        };
        assert!(
            matches!(config.validate(), Err(ConfigError::Liveness(..))),
            "{config:?}"
        );
    }
    let ok = Config {
        keepalive_interval: Some(Duration::from_millis(10)),
        idle_timeout: Some(Duration::from_secs(86_400)),
        ..Config::default()
    };
    assert_eq!(ok.validate(), Ok(()));
}
