//! The endpoint's stateless cookie exchange (RFC 6347 §4.2.1): a client engine against a
//! `Listener`, which answers a first ClientHello with a HelloVerifyRequest and makes a server
//! engine only for a ClientHello that returns a valid cookie from the same address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dtls_peer::endpoint::{Hello, Listener, COOKIE_LEN, COOKIE_ROTATION};
use dtls_peer::{Engine, Identity, Role, State};

use crate::common::{fast_config, Pair};

const CLIENT: &str = "127.0.0.1:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A client engine (started at `now`) and a listener for a server, pinned to each other.
struct Setup {
    client: Engine,
    listener: Listener,
    client_id: Identity,
    server_id: Identity,
    now: Instant,
}

impl Setup {
    fn new() -> Self {
        let client_id = Identity::generate().unwrap();
        let server_id = Identity::generate().unwrap();
        let pin = |id: &Identity| Some(id.node_id().to_owned());
        let mut client = Engine::new(Role::Client, &client_id, pin(&server_id), fast_config()).unwrap();
        let listener = Listener::new(&server_id, pin(&client_id), fast_config()).unwrap();
        let now = Instant::now();
        client.start(now);
        Self {
            client,
            listener,
            client_id,
            server_id,
            now,
        }
    }

    /// The client's one datagram (a whole flight of one ClientHello).
    fn client_datagram(&mut self) -> Vec<u8> {
        let flight: Vec<Vec<u8>> = std::iter::from_fn(|| self.client.poll_transmit()).collect();
        assert_eq!(flight.len(), 1, "a ClientHello is one datagram");
        flight.into_iter().next().unwrap()
    }

    /// The first ClientHello, answered: returns it with the HelloVerifyRequest.
    fn first_exchange(&mut self) -> (Vec<u8>, Vec<u8>) {
        let first = self.client_datagram();
        let hvr = answer(self.listener.hello(self.now, addr(CLIENT), &first));
        (first, hvr)
    }

    /// Runs the cookie exchange; returns the client's retried ClientHello (with the cookie).
    fn retried_hello(&mut self) -> Vec<u8> {
        let (_, hvr) = self.first_exchange();
        self.client.handle_datagram(self.now, &hvr);
        self.client_datagram()
    }

    /// The accepted server engine paired with the client on an in-memory link.
    fn pair(self, server: Engine) -> Pair {
        let mut pair = Pair::from_engines(self.client, server, self.client_id, self.server_id);
        pair.collect();
        pair
    }
}

fn answer(hello: Hello) -> Vec<u8> {
    match hello {
        Hello::Answer(hvr) => hvr,
        other => panic!("expected a HelloVerifyRequest, got {other:?}"),
    }
}

fn accepted(hello: Hello) -> Engine {
    match hello {
        Hello::Accepted(engine) => *engine,
        other => panic!("expected an accepted engine, got {other:?}"),
    }
}

/// The cookie a HelloVerifyRequest carries, after checking it is one: a single epoch-0
/// handshake record holding message type 3 with message_seq 0.
fn hvr_cookie(hvr: &[u8]) -> Vec<u8> {
    assert_eq!(hvr[0], 22, "handshake record");
    assert_eq!(hvr[3..5], [0, 0], "epoch 0");
    assert_eq!(hvr[13], 3, "HelloVerifyRequest");
    assert_eq!(hvr[17..19], [0, 0], "message_seq 0");
    // Body: server_version (2), cookie length (1), cookie.
    let len = usize::from(hvr[27]);
    assert_eq!(hvr.len(), 28 + len, "one record, nothing after the cookie");
    hvr[28..].to_vec()
}

/// Where the cookie sits in a ClientHello datagram: after the headers (25), client_version
/// (2), random (32) and the length-prefixed session_id.
fn cookie_range(hello: &[u8]) -> std::ops::Range<usize> {
    let session_id_len = usize::from(hello[59]);
    let at = 60 + session_id_len;
    at + 1..at + 1 + usize::from(hello[at])
}

#[test]
fn a_first_client_hello_gets_a_hello_verify_request_with_a_cookie() {
    let mut s = Setup::new();
    let (first, hvr) = s.first_exchange();
    let cookie = hvr_cookie(&hvr);
    assert_eq!(cookie.len(), COOKIE_LEN);
    // No amplification: a forged source address gets back less than was sent in its name.
    assert!(hvr.len() < first.len(), "{} >= {}", hvr.len(), first.len());
    // RFC 6347 4.2.1: the HelloVerifyRequest repeats the ClientHello's record sequence number.
    assert_eq!(hvr[5..11], first[5..11]);
    assert_eq!(cookie_range(&first).len(), 0, "the first ClientHello has no cookie");
    // Stateless: the same ClientHello from the same address gets the same answer.
    assert_eq!(answer(s.listener.hello(s.now, addr(CLIENT), &first)), hvr);
    s.client.handle_datagram(s.now, &hvr);
    let retried = s.client_datagram();
    assert_eq!(
        retried[cookie_range(&retried)],
        cookie[..],
        "the client returns the cookie"
    );
}

#[test]
fn the_retried_hello_is_accepted_and_the_pinned_session_carries_messages_both_ways() {
    let mut s = Setup::new();
    let retried = s.retried_hello();
    let server = accepted(s.listener.hello(s.now, addr(CLIENT), &retried));
    assert_eq!((server.role(), server.state()), (Role::Server, State::Handshaking));
    let mut p = s.pair(server);
    assert!(
        p.drive_until(|p| p.both_connected()),
        "client {:?} server {:?}",
        p.client_events,
        p.server_events
    );
    assert_eq!(p.client.peer_node_id(), Some(p.server_id.node_id()));
    assert_eq!(p.server.peer_node_id(), Some(p.client_id.node_id()));
    p.client.send(b"to the server").unwrap();
    p.server.send(b"to the client").unwrap();
    p.collect();
    p.flush();
    assert_eq!(Pair::messages(&p.server_events), [b"to the server".to_vec()]);
    assert_eq!(Pair::messages(&p.client_events), [b"to the client".to_vec()]);
    assert_eq!(p.server.stats().datagrams_in, p.sent_to_server.len() as u64 + 1);
    // The engine numbers the client's records on from the accepted ClientHello: nothing it
    // sends next looks like a replay, so a lossless link needs no retransmission.
    assert_eq!(p.client.stats().retransmissions + p.server.stats().retransmissions, 0);
}

#[test]
fn an_accepted_server_engine_recovers_its_lost_first_flight() {
    let mut s = Setup::new();
    let retried = s.retried_hello();
    let mut server = accepted(s.listener.hello(s.now, addr(CLIENT), &retried));
    let lost: Vec<Vec<u8>> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert!(!lost.is_empty(), "the accepted engine answers the ClientHello at once");
    let mut p = s.pair(server);
    assert!(
        p.drive_until(|p| p.both_connected()),
        "client {:?} server {:?}",
        p.client_events,
        p.server_events
    );
    assert!(p.client.stats().retransmissions + p.server.stats().retransmissions >= 1);
}

#[test]
fn the_retried_hello_from_another_address_gets_a_new_cookie_not_a_session() {
    let mut s = Setup::new();
    let retried = s.retried_hello();
    let returned = retried[cookie_range(&retried)].to_vec();
    for other in ["127.0.0.2:40000", "127.0.0.1:40001", "[::1]:40000"] {
        let hvr = answer(s.listener.hello(s.now, addr(other), &retried));
        assert_ne!(hvr_cookie(&hvr), returned, "{other}");
    }
    // The client's own address still works afterwards.
    accepted(s.listener.hello(s.now, addr(CLIENT), &retried));
}

#[test]
fn a_tampered_cookie_gets_a_new_one() {
    let mut s = Setup::new();
    let retried = s.retried_hello();
    let range = cookie_range(&retried);
    for at in [range.start, range.end - 1] {
        let mut tampered = retried.clone();
        tampered[at] ^= 1;
        let hvr = answer(s.listener.hello(s.now, addr(CLIENT), &tampered));
        assert_eq!(
            hvr_cookie(&hvr),
            retried[range.clone()],
            "the answer is the valid cookie again"
        );
    }
}

#[test]
fn a_cookie_verifies_for_one_rotation_and_not_two() {
    let mut s = Setup::new();
    let retried = s.retried_hello();
    let previous = s.now + COOKIE_ROTATION;
    let server = accepted(s.listener.hello(previous, addr(CLIENT), &retried));
    assert_eq!(server.state(), State::Handshaking);
    let two_ago = s.now + 2 * COOKIE_ROTATION;
    answer(s.listener.hello(two_ago, addr(CLIENT), &retried));
    // And one that jumped two rotations at once (an idle listener) is refused too.
    let mut idle = Setup::new();
    let retried = idle.retried_hello();
    answer(
        idle.listener
            .hello(idle.now + 2 * COOKIE_ROTATION, addr(CLIENT), &retried),
    );
}

#[test]
fn an_extension_change_in_the_retried_hello_keeps_the_cookie_valid() {
    // pion/dtls offers other groups when it retries; the cookie does not cover extensions.
    let mut s = Setup::new();
    let mut retried = s.retried_hello();
    let last = retried.len() - 1;
    retried[last] ^= 0x40;
    accepted(s.listener.hello(s.now, addr(CLIENT), &retried));
}

#[test]
fn garbage_truncated_fragmented_and_non_hello_datagrams_are_ignored() {
    let mut s = Setup::new();
    let first = s.client_datagram();
    let ignored = |listener: &mut Listener, datagram: &[u8]| {
        matches!(listener.hello(s.now, addr(CLIENT), datagram), Hello::Ignored)
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("plaintext", b"PUNCH".to_vec()),
        ("random bytes", (0..200u8).map(|i| i.wrapping_mul(37)).collect()),
        ("truncated", first[..first.len() - 1].to_vec()),
        ("headers only", first[..25].to_vec()),
    ];
    let mut epoch_one = first.clone();
    epoch_one[4] = 1;
    cases.push(("epoch 1", epoch_one));
    let mut application_data = first.clone();
    application_data[0] = 23;
    cases.push(("application data", application_data));
    let mut alert = first.clone();
    alert[0] = 21;
    cases.push(("alert", alert));
    // The ClientHello split in two fragments, each in its own record.
    let body = &first[25..];
    let half = body.len() / 2;
    let fragment = |offset: usize, part: &[u8]| {
        let mut record = first[..11].to_vec();
        record.extend_from_slice(&u16::try_from(12 + part.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&first[13..19]);
        record.extend_from_slice(&u32::try_from(offset).unwrap().to_be_bytes()[1..]);
        record.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes()[1..]);
        record.extend_from_slice(part);
        record
    };
    cases.push(("first fragment", fragment(0, &body[..half])));
    cases.push(("second fragment", fragment(half, &body[half..])));
    cases.push((
        "both fragments",
        [fragment(0, &body[..half]), fragment(half, &body[half..])].concat(),
    ));
    for (name, datagram) in &cases {
        assert!(ignored(&mut s.listener, datagram), "{name}");
    }
    // The listener still answers after all that.
    hvr_cookie(&answer(s.listener.hello(s.now, addr(CLIENT), &first)));
}

#[test]
fn a_lost_hello_verify_request_is_answered_again_when_the_client_repeats() {
    let mut s = Setup::new();
    let (first, _lost) = s.first_exchange();
    let at = s.client.poll_timeout().expect("the client awaits an answer");
    assert!(at <= s.now + Duration::from_secs(1));
    s.client.handle_timeout(at);
    let repeated = s.client_datagram();
    assert_eq!(repeated[25..], first[25..], "the same ClientHello again");
    let hvr = answer(s.listener.hello(at, addr(CLIENT), &repeated));
    s.client.handle_datagram(at, &hvr);
    let retried = s.client_datagram();
    let server = accepted(s.listener.hello(at, addr(CLIENT), &retried));
    let mut p = s.pair(server);
    assert!(p.drive_until(|p| p.both_connected()));
}
