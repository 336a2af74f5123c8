//! Guards the driver of a standalone connection (an endpoint with one peer) over real loopback
//! sockets: a handshake that waits to be asked for, messages read by the driver thread or by
//! the caller, notifications, and datagrams from strangers dropped and counted.

use std::net::UdpSocket;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dtls_peer::driver::{EndpointConnection, EndpointDriver, Notify, Phase, Progress, Received, Sent};
use dtls_peer::endpoint::{Endpoint, EndpointConfig};
use dtls_peer::{Config, Identity, Role};

struct Channel(Mutex<mpsc::Sender<()>>);

impl Notify for Channel {
    fn notify(&self) {
        let _ = self.0.lock().unwrap().send(());
    }
}

fn connection(
    socket: UdpSocket,
    peer: &UdpSocket,
    role: Role,
    me: &Identity,
    them: &Identity,
) -> (EndpointConnection, mpsc::Receiver<()>) {
    let endpoint = Endpoint::new(me, EndpointConfig::one_peer(Config::default()), None).unwrap();
    let pin = Some(them.node_id().to_owned());
    let conn = EndpointDriver::one_peer(socket, endpoint, peer.local_addr().unwrap(), role, pin, 16).unwrap();
    let (tx, rx) = mpsc::channel();
    conn.set_notifier(Arc::new(Channel(Mutex::new(tx))));
    (conn, rx)
}

/// Waits (bounded) for notifications until `ready` holds.
fn wait_for<T>(rx: &mpsc::Receiver<()>, mut ready: impl FnMut() -> Option<T>) -> T {
    let limit = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = ready() {
            return v;
        }
        let left = limit.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out");
        let _ = rx.recv_timeout(left);
    }
}

#[test]
fn driver_runs_a_session_over_loopback() {
    let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let a_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
    let b_probe = b_sock.try_clone().unwrap();
    let a_probe = a_sock.try_clone().unwrap();
    let (a, a_rx) = connection(a_sock, &b_probe, Role::Client, &a_id, &b_id);
    let (b, b_rx) = connection(b_sock, &a_probe, Role::Server, &b_id, &a_id);
    drop((a_probe, b_probe));

    // A stranger arrives before the handshake, and the client's ClientHello before the
    // server asks for its handshake: the server's engine keeps it and answers once started.
    stranger.send_to(b"hello?", b_addr).unwrap();
    a.start_handshake();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.phase(), Phase::New);
    assert_eq!(b.stats().engine.datagrams_out, 0, "nothing answered before start");
    b.start_handshake();
    wait_for(&a_rx, || (a.progress() == Progress::Established).then_some(()));
    wait_for(&b_rx, || (b.progress() == Progress::Established).then_some(()));
    assert_eq!(a.local_address(), a_addr);
    assert_eq!(b.remote_address(), a_addr);
    let mut peer = None;
    a.with_engine(&mut |e| peer = e.and_then(|e| e.peer_node_id().map(str::to_owned)));
    assert_eq!(peer.as_deref(), Some(b_id.node_id()));

    for i in 0..10u8 {
        assert_eq!(a.send(&[i; 32]), Ok(Sent::Done));
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(wait_for(&b_rx, || match b.try_recv() {
            Received::Message(m) => Some(m),
            _ => None,
        }));
    }
    assert_eq!(got, (0..10u8).map(|i| vec![i; 32]).collect::<Vec<_>>());
    assert_eq!(b.stats().dropped_wrong_source, 1);

    // The caller takes over reading b's socket: what arrives waits for its receive_now. Not
    // on Windows, where the I/O thread reads every socket (docs/design.md §10).
    if cfg!(windows) {
        assert!(b.take_over_reads().is_none());
        return;
    }
    assert!(b.take_over_reads().is_some());
    std::thread::sleep(Duration::from_millis(50));
    for i in 10..20u8 {
        assert_eq!(a.send(&[i; 32]), Ok(Sent::Done));
    }
    stranger.send_to(b"hello again?", b_addr).unwrap();
    let mut got = Vec::new();
    let limit = Instant::now() + Duration::from_secs(5);
    while got.len() < 10 && Instant::now() < limit {
        b.receive_now();
        while let Received::Message(m) = b.try_recv() {
            got.push(m);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got, (10..20u8).map(|i| vec![i; 32]).collect::<Vec<_>>());
    assert_eq!(b.stats().dropped_wrong_source, 2);

    a.close();
    assert_eq!(a.phase(), Phase::Closed);
    let ended = wait_for(&b_rx, || {
        b.receive_now();
        match b.try_recv() {
            Received::Ended(p) => Some(p),
            _ => None,
        }
    });
    assert!(matches!(ended, Progress::Closed(_)), "{ended:?}");
}
