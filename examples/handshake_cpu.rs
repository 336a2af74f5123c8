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

#[path = "common/mod.rs"]
mod common;

use common::handshake;
use dtls_peer::{Config, Identity, KeyType, Libp2p, NodeIdScheme, Sha256};

/// Thread CPU inside each engine's calls during one handshake, engine creation excluded:
/// (client, server).
fn handshake_only(client_id: &Identity, server_id: &Identity) -> (Duration, Duration) {
    let [client, server] = handshake(&[client_id.clone(), server_id.clone()], &Config::default());
    (client.handshake, server.handshake)
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
    for key_type in KeyType::ALL.into_iter().filter(|t| only.is_none_or(|o| o == *t)) {
        for scheme in &schemes {
            let a = Identity::generate_with(key_type, scheme.clone()).unwrap();
            let b = Identity::generate_with(key_type, scheme.clone()).unwrap();
            handshake_only(&a, &b); // builds and caches both contexts
            let (client, server): (Vec<_>, Vec<_>) = (0..runs).map(|_| handshake_only(&a, &b)).unzip();
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
