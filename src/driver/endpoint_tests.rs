//! The endpoint driver over real loopback sockets: two endpoints dial and accept each other,
//! and a send that meets a full socket still goes out, also from a one-peer endpoint whose
//! caller reads the socket. Loopback UDP never reports a full socket (the kernel frees a
//! datagram's buffer as it is delivered), so these tests refuse flushes as the kernel would:
//! the datagrams stay in the outbox, exactly as after a real `WouldBlock`.

use std::net::UdpSocket;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Accepted, EndpointConnection, EndpointDriver, OUTBOX_LIMIT};
use crate::config::{Config, Role};
use crate::driver::{lock, Notify, Progress, Received, Sent};
use crate::endpoint::{Endpoint, EndpointConfig};
use crate::identity::Identity;

struct Channel(Mutex<mpsc::Sender<()>>);

impl Notify for Channel {
    fn notify(&self) {
        let _ = lock(&self.0).send(());
    }
}

fn channel() -> (Arc<dyn Notify>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(Channel(Mutex::new(tx))), rx)
}

/// Waits (bounded) for notifications until `ready` holds; None if it never does.
fn wait_for<T>(rx: &mpsc::Receiver<()>, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = rx.recv_timeout(left);
    }
}

struct Side {
    endpoint: EndpointDriver,
    conn: EndpointConnection,
    rx: mpsc::Receiver<()>,
}

/// Endpoint 0 dials endpoint 1, which accepts; both connections established.
fn established_endpoints() -> [Side; 2] {
    let ids = [Identity::generate().unwrap(), Identity::generate().unwrap()];
    let endpoints = ids.each_ref().map(|id| {
        let endpoint = Endpoint::new(id, EndpointConfig::default(), None).unwrap();
        EndpointDriver::spawn(UdpSocket::bind("127.0.0.1:0").unwrap(), endpoint, 4 * OUTBOX_LIMIT).unwrap()
    });
    let (accept_notifier, accept_rx) = channel();
    endpoints[1].set_notifier(accept_notifier);
    let [dialler, listener] = endpoints;
    let dialled = dialler
        .connect(
            listener.local_address(),
            Role::Client,
            Some(ids[1].node_id().to_owned()),
        )
        .unwrap();
    let accepted = wait_for(&accept_rx, Duration::from_secs(10), || match listener.try_accept() {
        Accepted::Connection(conn) => Some(conn),
        Accepted::Empty => None,
        Accepted::Closed => panic!("closed"),
    })
    .expect("the dial is accepted");
    assert_eq!(accepted.remote_address(), dialler.local_address());
    let sides = [(dialler, dialled), (listener, accepted)].map(|(endpoint, conn)| {
        let (notifier, rx) = channel();
        conn.set_notifier(notifier);
        Side { endpoint, conn, rx }
    });
    for side in &sides {
        let done = wait_for(&side.rx, Duration::from_secs(10), || {
            (side.conn.progress() != Progress::Pending).then(|| side.conn.progress())
        });
        assert_eq!(done, Some(Progress::Established));
    }
    std::thread::sleep(Duration::from_millis(100));
    sides
}

fn receive(side: &Side, count: usize, limit: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    wait_for(&side.rx, limit, || {
        while let Received::Message(m) = side.conn.try_recv() {
            got.push(m);
        }
        (got.len() >= count).then_some(())
    });
    got
}

fn refuse_flushes(side: &Side, count: usize) {
    lock(&side.endpoint.shared.inner).refuse_flushes = count;
}

fn outbox_len(side: &Side) -> usize {
    lock(&side.endpoint.shared.inner).outbox.len()
}

#[test]
fn two_endpoints_carry_messages_both_ways() {
    let [a, b] = established_endpoints();
    assert_eq!(a.conn.send(b"to b"), Ok(Sent::Done));
    assert_eq!(receive(&b, 1, Duration::from_secs(5)), [b"to b".to_vec()]);
    assert_eq!(b.conn.send_many(&[b"one", b"two"]), Ok(2));
    assert_eq!(
        receive(&a, 2, Duration::from_secs(5)),
        [b"one".to_vec(), b"two".to_vec()]
    );
    assert_eq!(a.endpoint.connections(), 1);
}

#[test]
fn a_message_left_behind_by_a_full_socket_goes_out_on_an_idle_endpoint() {
    let [a, b] = established_endpoints();
    refuse_flushes(&a, 1);
    assert_eq!(a.conn.send(b"left behind"), Ok(Sent::Done));
    assert_eq!(outbox_len(&a), 1, "the flush was refused");
    assert_eq!(receive(&b, 1, Duration::from_secs(5)), [b"left behind".to_vec()]);
}

// Not on Windows: the burst of OUTBOX_LIMIT + 1 datagrams released at once outgrows the
// receiver's socket buffer there (under Wine 256 arrived), and UDP drops the rest; Linux's
// loopback holds them all.
#[cfg(not(windows))]
#[test]
fn a_sender_told_to_wait_is_woken_when_the_socket_drains() {
    let [a, b] = established_endpoints();
    refuse_flushes(&a, usize::MAX);
    let mut sent = 0;
    while a.conn.send(&(sent as u32).to_be_bytes()) == Ok(Sent::Done) {
        sent += 1;
        assert!(sent <= OUTBOX_LIMIT, "the outbox is bounded");
    }
    assert_eq!(sent, OUTBOX_LIMIT);
    while a.rx.try_recv().is_ok() {}
    refuse_flushes(&a, 0);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(a.rx.recv_timeout(left).is_ok(), "the waiting sender is never woken");
        if outbox_len(&a) < OUTBOX_LIMIT {
            break;
        }
    }
    assert_eq!(a.conn.send(&(sent as u32).to_be_bytes()), Ok(Sent::Done));
    let got = receive(&b, sent + 1, Duration::from_secs(5));
    let expected: Vec<Vec<u8>> = (0..=sent as u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(got, expected, "every message arrives once, in order");
}

#[test]
fn closing_an_endpoint_ends_its_connections_on_both_sides() {
    let [a, b] = established_endpoints();
    a.endpoint.close();
    assert!(matches!(a.endpoint.try_accept(), Accepted::Closed));
    assert!(matches!(a.conn.try_recv(), Received::Ended(Progress::Closed(_))));
    let ended = wait_for(&b.rx, Duration::from_secs(5), || match b.conn.try_recv() {
        Received::Ended(progress) => Some(progress),
        _ => None,
    });
    assert!(matches!(ended, Some(Progress::Closed(_))), "{ended:?}");
}

/// Two standalone connections (endpoints with one peer) over loopback, established, with
/// their notifications; the first one's caller reads its socket (Unix only: on Windows the
/// I/O thread reads every socket, `sys::CALLER_READS`).
#[cfg(unix)]
fn established_one_peer_pair() -> [(EndpointConnection, mpsc::Receiver<()>); 2] {
    let ids = [Identity::generate().unwrap(), Identity::generate().unwrap()];
    let sockets = [0, 1].map(|_| UdpSocket::bind("127.0.0.1:0").unwrap());
    let addresses = sockets.each_ref().map(|s| s.local_addr().unwrap());
    let mut sockets = sockets.into_iter();
    let pair = [(Role::Client, 0), (Role::Server, 1)].map(|(role, me)| {
        let them = 1 - me;
        let endpoint = Endpoint::new(&ids[me], EndpointConfig::one_peer(Config::default()), None).unwrap();
        let pin = Some(ids[them].node_id().to_owned());
        let socket = sockets.next().unwrap();
        let conn = EndpointDriver::one_peer(socket, endpoint, addresses[them], role, pin, 2 * OUTBOX_LIMIT).unwrap();
        let (notifier, rx) = channel();
        conn.set_notifier(notifier);
        conn.start_handshake();
        (conn, rx)
    });
    for (conn, rx) in &pair {
        let done = wait_for(rx, Duration::from_secs(10), || {
            (conn.progress() != Progress::Pending).then(|| conn.progress())
        });
        assert_eq!(done, Some(Progress::Established));
    }
    assert!(pair[0].0.take_over_reads().is_some());
    // The last handshake wake-ups are over well before this, and the task has handed the
    // socket over: from here on, only what a test does wakes a task.
    std::thread::sleep(Duration::from_millis(100));
    let handed_over = matches!(lock(&pair[0].0.shared.inner).socket, Some(super::Sock::Direct(_)));
    assert!(
        handed_over,
        "the driver thread still watches the socket the caller reads"
    );
    pair
}

#[cfg(unix)]
#[test]
fn a_one_peer_message_left_behind_by_a_full_socket_goes_out_while_the_caller_reads() {
    let [(client, _), (server, server_rx)] = established_one_peer_pair();
    // Two: the send's own flush, and the one the task makes when that refusal wakes it (on a
    // busy machine it can run before the assertion below); then only the watch for
    // writability is left to send it.
    lock(&client.shared.inner).refuse_flushes = 2;
    assert_eq!(client.send(b"left behind"), Ok(Sent::Done));
    assert_eq!(lock(&client.shared.inner).outbox.len(), 1, "the flush was refused");
    // Nothing else happens: the driver thread no longer reads the client's socket, so only
    // its watch for writability sends the message.
    let got = wait_for(&server_rx, Duration::from_secs(5), || match server.try_recv() {
        Received::Message(m) => Some(m),
        _ => None,
    });
    assert_eq!(got.as_deref(), Some(&b"left behind"[..]));
    assert!(lock(&client.shared.inner).outbox.is_empty());
}

#[test]
fn a_one_peer_handshake_that_fails_lets_go_of_the_socket() {
    let ids = [0, 1, 2].map(|_| Identity::generate().unwrap());
    let sockets = [0, 1].map(|_| UdpSocket::bind("127.0.0.1:0").unwrap());
    let addresses = sockets.each_ref().map(|s| s.local_addr().unwrap());
    let mut sockets = sockets.into_iter();
    // The client expects a node ID the server does not have: its handshake fails.
    let pins = [ids[2].node_id(), ids[0].node_id()];
    let pair = [(Role::Client, 0), (Role::Server, 1)].map(|(role, me)| {
        let endpoint = Endpoint::new(&ids[me], EndpointConfig::one_peer(Config::default()), None).unwrap();
        let socket = sockets.next().unwrap();
        let pin = Some(pins[me].to_owned());
        let conn = EndpointDriver::one_peer(socket, endpoint, addresses[1 - me], role, pin, 16).unwrap();
        let (notifier, rx) = channel();
        conn.set_notifier(notifier);
        conn.start_handshake();
        (conn, rx)
    });
    let (client, client_rx) = &pair[0];
    let failed = wait_for(client_rx, Duration::from_secs(10), || {
        matches!(client.progress(), Progress::Failed(_)).then_some(())
    });
    assert!(failed.is_some(), "{:?}", client.progress());
    let released = wait_for(client_rx, Duration::from_secs(5), || {
        lock(&client.shared.inner).socket.is_none().then_some(())
    });
    assert!(released.is_some(), "the failed connection still holds its socket");
    assert_eq!(client.take_over_reads(), None);
}
