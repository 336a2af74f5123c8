//! Guards an established session against noise: garbage, truncated and tampered datagrams
//! are dropped and counted, and the session keeps delivering.

use dtls_peer::{Config, State};

use crate::common::Pair;

#[test]
fn garbage_and_truncated_datagrams_do_not_break_a_session() {
    let mut p = Pair::new(Config::default());
    assert!(p.handshake());
    p.client.send(b"genuine").unwrap();
    let record = p.client.poll_transmit().unwrap();
    let now = std::time::Instant::now();
    let mut tampered = record.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let noise: Vec<Vec<u8>> = vec![
        vec![],
        b"punch".to_vec(),
        vec![0xff; 1200],
        record[..record.len() / 2].to_vec(),
        record[..13].to_vec(),
        tampered,
        vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 50],
    ];
    for d in &noise {
        p.server.handle_datagram(now, d);
    }
    assert_eq!(p.server.state(), State::Established);
    p.server.handle_datagram(now, &record);
    p.server.handle_datagram(now, &record);
    p.collect();
    assert_eq!(Pair::messages(&p.server_events), vec![b"genuine".to_vec()]);
    let stats = p.server.stats();
    assert_eq!(stats.dropped_not_dtls, 3);
    assert!(stats.dropped_invalid >= 3, "{stats:?}");
    // And it still works both ways.
    p.server.send(b"still here").unwrap();
    p.collect();
    p.flush();
    assert_eq!(Pair::messages(&p.client_events), vec![b"still here".to_vec()]);
}

#[test]
fn garbage_during_the_handshake_is_survived() {
    let mut p = Pair::new(Config::default()).with_script(|_, _, mut flight| {
        flight.insert(0, b"late hole punch".to_vec());
        flight.push(vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        flight
    });
    assert!(p.handshake(), "{:?} / {:?}", p.client_events, p.server_events);
}
