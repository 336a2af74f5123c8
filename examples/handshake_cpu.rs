//! Handshake cost per side by node key type, in memory (no sockets, no Python), and the cost of
//! making an identity (for non-P-256 keys: node certificate plus the endorsed ephemeral DTLS
//! certificate). Handshakes are timed in thread CPU time, so other load on the machine
//! matters less than for wall-clock figures; identity creation is timed with the wall clock.
//!
//! ```sh
//! cargo run --release --example handshake_cpu -- 300          # everything
//! cargo run --release --example handshake_cpu -- 300 p256     # one key type's handshakes
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use dtls_peer::{Config, Engine, Identity, KeyType, Libp2p, NodeIdScheme, Role, Sha256, State};

/// Time spent inside each engine's calls during one handshake: (client, server).
fn handshake(client_id: &Identity, server_id: &Identity) -> (Duration, Duration) {
    let pin = |id: &Identity| Some(id.node_id().to_owned());
    let mut client = Engine::new(Role::Client, client_id, pin(server_id), Config::default()).unwrap();
    let mut server = Engine::new(Role::Server, server_id, pin(client_id), Config::default()).unwrap();
    let (mut c, mut s) = (Duration::ZERO, Duration::ZERO);
    let timed = |total: &mut Duration, f: &mut dyn FnMut()| {
        let t = thread_cpu();
        f();
        *total += thread_cpu().saturating_sub(t);
    };
    let now = Instant::now();
    timed(&mut s, &mut || server.start(now));
    timed(&mut c, &mut || client.start(now));
    for _ in 0..100 {
        if client.state() == State::Established && server.state() == State::Established {
            return (c, s);
        }
        let to_server: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
        let to_client: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
        for d in to_server {
            timed(&mut s, &mut || server.handle_datagram(Instant::now(), &d));
        }
        for d in to_client {
            timed(&mut c, &mut || client.handle_datagram(Instant::now(), &d));
        }
    }
    panic!("no handshake: {:?} {:?}", client.state(), server.state());
}

/// CPU time this thread has used.
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives on this stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let only = std::env::args().nth(2).map(|name| KeyType::parse(&name).unwrap());
    let schemes: [Arc<dyn NodeIdScheme>; 2] = [Arc::new(Sha256), Arc::new(Libp2p)];
    if only.is_none() {
        identity_creation(runs.min(50), &schemes);
    }
    println!("handshake, thread CPU inside each engine, p50 of {runs} (ms):");
    for key_type in KeyType::ALL.into_iter().filter(|t| only.map_or(true, |o| o == *t)) {
        for scheme in &schemes {
            let a = Identity::generate_with(key_type, scheme.clone()).unwrap();
            let b = Identity::generate_with(key_type, scheme.clone()).unwrap();
            handshake(&a, &b); // builds and caches both contexts
            let (client, server): (Vec<_>, Vec<_>) = (0..runs).map(|_| handshake(&a, &b)).unzip();
            println!(
                "  {key_type:>9} {:>6}: client {:.3}  server {:.3}",
                scheme.name(),
                p50(client),
                p50(server)
            );
        }
    }
}

/// Wall-clock p50 of making `runs` identities of each key type under each scheme.
fn identity_creation(runs: usize, schemes: &[Arc<dyn NodeIdScheme>]) {
    println!("identity creation, wall clock, p50 of {runs} (ms):");
    for key_type in KeyType::ALL {
        for scheme in schemes {
            let times: Vec<_> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    Identity::generate_with(key_type, scheme.clone()).unwrap();
                    t.elapsed()
                })
                .collect();
            println!("  {key_type:>9} {:>6}: {:.3}", scheme.name(), p50(times));
        }
    }
}
