//! What the handshake-cost examples share: the thread's CPU clock and one in-memory
//! handshake with each engine call's CPU charged to the side that made it. Included by
//! `handshake_cpu.rs` and `crypto_floor.rs` with `#[path]` (not an example of its own).

// Each example uses part of this.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use dtls_peer::{Config, Engine, Event, Identity, Role};

/// CPU time this thread has used.
#[cfg(unix)]
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    #[allow(unsafe_code)]
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The examples read the thread's CPU clock through POSIX; they build elsewhere (so the
/// crate's `--all-targets` checks cover every platform) but refuse to run.
#[cfg(not(unix))]
pub(crate) fn thread_cpu() -> Duration {
    panic!("the handshake-cost examples measure thread CPU time on Unix only")
}

/// Runs `f`, adding its CPU time to `total`.
pub(crate) fn charged<R>(total: &mut Duration, f: impl FnOnce() -> R) -> R {
    let start = thread_cpu();
    let r = f();
    *total += thread_cpu() - start;
    r
}

/// One side's CPU for one handshake.
#[derive(Default, Clone, Copy)]
pub(crate) struct Side {
    pub(crate) create: Duration,
    pub(crate) handshake: Duration,
}

/// One in-memory handshake; returns the client's and the server's CPU.
pub(crate) fn handshake(ids: &[Identity; 2], config: &Config) -> [Side; 2] {
    let mut sides = [Side::default(); 2];
    let mut engines = [Role::Client, Role::Server].map(|role| {
        let (me, them) = if role == Role::Client { (0, 1) } else { (1, 0) };
        charged(&mut sides[me].create, || {
            Engine::new(role, &ids[me], Some(ids[them].node_id().to_owned()), config.clone()).unwrap()
        })
    });
    let now = Instant::now();
    let mut connected = [false; 2];
    // Datagrams in flight towards each side.
    let mut links: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for side in [1, 0] {
        charged(&mut sides[side].handshake, || engines[side].start(now));
    }
    for _round in 0..100 {
        for side in 0..2 {
            let engine = &mut engines[side];
            let cpu = &mut sides[side].handshake;
            let out: Vec<Vec<u8>> = charged(cpu, || std::iter::from_fn(|| engine.poll_transmit()).collect());
            links[1 - side].extend(out);
            charged(cpu, || {
                while let Some(event) = engine.poll_event() {
                    assert!(matches!(event, Event::Connected), "unexpected {event:?}");
                    connected[side] = true;
                }
            });
        }
        if connected == [true, true] {
            return sides;
        }
        for side in 0..2 {
            for datagram in std::mem::take(&mut links[side]) {
                charged(&mut sides[side].handshake, || {
                    engines[side].handle_datagram(now, &datagram)
                });
            }
        }
    }
    panic!("the handshake did not complete");
}
