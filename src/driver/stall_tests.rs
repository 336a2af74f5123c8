//! A send that meets a full socket (`WouldBlock`) must still go out once the socket drains,
//! with nothing else happening on the connection. Loopback UDP never reports a full socket
//! (the kernel frees a datagram's buffer as it is delivered), so these tests refuse flushes
//! as the kernel would: the datagrams stay in the outbox, exactly as after a real
//! `WouldBlock`.

use std::net::UdpSocket;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{lock, Connection, Notify, Progress, Received, Sent, OUTBOX_LIMIT};
use crate::config::{Config, Role};
use crate::engine::Engine;
use crate::identity::Identity;

struct Channel(Mutex<mpsc::Sender<()>>);

impl Notify for Channel {
    fn notify(&self) {
        let _ = lock(&self.0).send(());
    }
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

/// An established client (first) and server over loopback, each with its notifications.
fn established_pair() -> [(Connection, mpsc::Receiver<()>); 2] {
    let ids = [Identity::generate().unwrap(), Identity::generate().unwrap()];
    let sockets = [
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    ];
    let addresses = sockets.each_ref().map(|s| s.local_addr().unwrap());
    let mut sockets = sockets.into_iter();
    let pair = [(Role::Client, 0), (Role::Server, 1)].map(|(role, me)| {
        let them = 1 - me;
        let engine = Engine::new(role, &ids[me], Some(ids[them].node_id().to_owned()), Config::default()).unwrap();
        let conn = Connection::spawn(sockets.next().unwrap(), addresses[them], engine, 2 * OUTBOX_LIMIT).unwrap();
        let (tx, rx) = mpsc::channel();
        conn.set_notifier(Arc::new(Channel(Mutex::new(tx))));
        conn.start_handshake();
        (conn, rx)
    });
    for (conn, rx) in &pair {
        let done = wait_for(rx, Duration::from_secs(10), || {
            (conn.progress() != Progress::Pending).then(|| conn.progress())
        });
        assert_eq!(done, Some(Progress::Established));
    }
    // The last handshake wake-ups (a task may still hold one) are over well before this:
    // from here on, only what a test does wakes a task.
    std::thread::sleep(Duration::from_millis(100));
    pair
}

/// Every message `conn` receives within `limit`, until `count` have come.
fn receive(conn: &Connection, rx: &mpsc::Receiver<()>, count: usize, limit: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    wait_for(rx, limit, || {
        while let Received::Message(m) = conn.try_recv() {
            got.push(m);
        }
        (got.len() >= count).then_some(())
    });
    got
}

fn refuse_flushes(conn: &Connection, count: usize) {
    lock(&conn.peer.inner).refuse_flushes = count;
}

#[test]
fn a_message_left_behind_by_a_full_socket_goes_out_on_an_idle_connection() {
    let [(client, _), (server, server_rx)] = established_pair();
    refuse_flushes(&client, 1);
    assert_eq!(client.send(b"left behind"), Ok(Sent::Done));
    assert_eq!(lock(&client.peer.inner).outbox.len(), 1, "the flush was refused");
    // Nothing else happens on either side: no timer runs on an established connection
    // without keepalives, and the server sends nothing.
    let got = receive(&server, &server_rx, 1, Duration::from_secs(5));
    assert_eq!(got, [b"left behind".to_vec()]);
}

#[test]
fn a_sender_told_to_wait_is_woken_when_the_socket_drains() {
    let [(client, client_rx), (server, server_rx)] = established_pair();
    // The socket stays full until every message the outbox holds is queued.
    refuse_flushes(&client, usize::MAX);
    let mut sent = 0;
    while client.send(&[sent as u8; 100]) == Ok(Sent::Done) {
        sent += 1;
        assert!(sent <= OUTBOX_LIMIT, "the outbox is bounded");
    }
    assert_eq!(sent, OUTBOX_LIMIT);
    while client_rx.try_recv().is_ok() {}
    refuse_flushes(&client, 0);
    // The socket drained with no send in progress: the waiting sender must hear of it (a
    // notification), and then have room.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            client_rx.recv_timeout(left).is_ok(),
            "the waiting sender is never woken"
        );
        if lock(&client.peer.inner).outbox.len() < OUTBOX_LIMIT {
            break;
        }
    }
    assert_eq!(client.send(&[sent as u8; 100]), Ok(Sent::Done));
    let got = receive(&server, &server_rx, sent + 1, Duration::from_secs(5));
    let expected: Vec<Vec<u8>> = (0..=sent).map(|i| vec![i as u8; 100]).collect();
    assert_eq!(got, expected, "every message arrives once, in order");
}
