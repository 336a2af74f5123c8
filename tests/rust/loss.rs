//! Handshakes through heavy loss: seeded random loss each way over a link with a one-way
//! delay, default settings, and both ends exchanging a message afterwards.
//!
//! `loss_sweep` is the full sweep (run by hand, see docs/benchmarks.md):
//! `LOSS_SEEDS=300 LOSS_CLOCK=virtual cargo test --release --test engine loss_sweep -- --ignored --nocapture`

use std::time::Duration;

use crate::common::lossy::{self, Clock, Link};
use crate::common::Pair;
use dtls_peer::Config;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
#[ignore = "the full sweep, run by hand"]
fn loss_sweep() {
    let seeds: u64 = env_or("LOSS_SEEDS", 300);
    let first: u64 = env_or("LOSS_FIRST_SEED", 0);
    let clock = match std::env::var("LOSS_CLOCK").as_deref() {
        Ok("real") => Clock::Real,
        _ => Clock::Virtual,
    };
    let threads: usize = env_or("LOSS_THREADS", if clock == Clock::Real { 64 } else { 1 });
    for loss in [0.0, 0.3, 0.5] {
        let mut link = Link::new(loss, clock);
        link.trace = std::env::var("LOSS_TRACE").is_ok();
        if let Ok(ms) = std::env::var("LOSS_MAX_RTO_MS") {
            link.config.max_retransmit_timeout = Duration::from_millis(ms.parse().unwrap());
        }
        let results = lossy::sweep(first..first + seeds, &link, threads);
        let within = if loss < 0.4 {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(10)
        };
        println!(
            "{:.0}% loss ({clock:?} clock): {}",
            loss * 100.0,
            lossy::summary(&results, within)
        );
        for o in results
            .iter()
            .filter(|o| !o.exchanged || o.connected_after > Some(within))
        {
            println!(
                "  seed {}: {:?} {:?} after {} datagrams",
                o.seed, o.connected_after, o.failure, o.datagrams
            );
        }
    }
}

#[test]
fn lossless_handshake_datagram_count() {
    let mut p = Pair::new(Config::default());
    assert!(p.handshake());
    println!(
        "client {} datagrams {} bytes, server {} datagrams {} bytes; sizes to server {:?}, to client {:?}",
        p.client.stats().datagrams_out,
        p.client.stats().bytes_out,
        p.server.stats().datagrams_out,
        p.server.stats().bytes_out,
        p.sent_to_server.iter().map(Vec::len).collect::<Vec<_>>(),
        p.sent_to_client.iter().map(Vec::len).collect::<Vec<_>>()
    );
}
