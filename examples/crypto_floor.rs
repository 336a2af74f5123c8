//! CPU per handshake side, in memory, against the crypto floor (docs/benchmarks.md,
//! "Handshake CPU"). No sockets, no Python, one thread: each engine call's CPU time (the
//! thread's clock) is charged to the side that made it.
//!
//! ```sh
//! cargo run --release --example crypto_floor -- [handshakes] [--no-floor]   # default 300
//! ```
//!
//! For instruction counts (deterministic on a busy machine), run the binary under
//! `valgrind --tool=callgrind` with two counts and take the difference.
//!
//! Prints, per side, the p50 and mean CPU of creating the engine and of the handshake, then
//! the floor: what one side's cryptography costs with the same (vendored) OpenSSL, i.e. one
//! ECDHE key generation and derivation and one ECDSA P-256 signature and verification.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{charged, handshake, thread_cpu, Side};
use dtls_peer::{Config, Identity};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::{Signer, Verifier};

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!("{name:<28} p50 {:>7.1} us   mean {:>7.1} us", micros(p50), micros(mean));
}

/// p50 CPU of `f` over `runs` calls.
fn floor_op(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut d = Duration::ZERO;
            charged(&mut d, &mut f);
            d
        })
        .collect();
    samples.sort();
    samples[runs / 2]
}

fn p256_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// Key generation, and derivation against a fixed peer key.
fn ecdhe(runs: usize, generate: impl Fn() -> PKey<Private>) -> (Duration, Duration) {
    let peer = generate();
    let keygen = floor_op(runs, || {
        black_box(generate());
    });
    let mine = generate();
    let derive = floor_op(runs, || {
        let mut deriver = Deriver::new(&mine).unwrap();
        deriver.set_peer(&peer).unwrap();
        black_box(deriver.derive_to_vec().unwrap());
    });
    (keygen, derive)
}

fn floor(runs: usize) {
    let x25519 = ecdhe(runs, || PKey::generate_x25519().unwrap());
    let p256 = ecdhe(runs, p256_key);
    let key = p256_key();
    // What a DTLS 1.2 ECDSA signature covers: randoms and ServerECDHParams, or the
    // handshake transcript's hash; the size barely matters after hashing.
    let message = [7u8; 200];
    let sign = || {
        let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
        signer.sign_oneshot_to_vec(&message).unwrap()
    };
    let signature = sign();
    let sign_cpu = floor_op(runs, || {
        black_box(sign());
    });
    let verify_cpu = floor_op(runs, || {
        let mut verifier = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        assert!(verifier.verify_oneshot(&signature, &message).unwrap());
    });
    println!("floor (vendored {}):", openssl::version::version());
    for (name, (keygen, derive)) in [("X25519", x25519), ("P-256", p256)] {
        println!(
            "  ECDHE {name:<6} keygen+derive {:>7.1} us ({:.1} + {:.1})",
            micros(keygen + derive),
            micros(keygen),
            micros(derive)
        );
    }
    let (x25519, p256) = (x25519.0 + x25519.1, p256.0 + p256.1);
    println!("  ECDSA P-256 sign            {:>7.1} us", micros(sign_cpu));
    println!("  ECDSA P-256 verify          {:>7.1} us", micros(verify_cpu));
    println!(
        "  one side, X25519 / P-256    {:>7.1} / {:.1} us",
        micros(x25519 + sign_cpu + verify_cpu),
        micros(p256 + sign_cpu + verify_cpu)
    );
}

fn main() {
    let handshakes: usize = std::env::args().nth(1).map_or(300, |n| n.parse().expect("a count"));
    let ids = [Identity::generate().unwrap(), Identity::generate().unwrap()];
    let config = Config::default();
    // Warm up: the shared contexts are built once per identity, as in an application.
    for _ in 0..10 {
        handshake(&ids, &config);
    }
    let start = thread_cpu();
    let runs: Vec<[Side; 2]> = (0..handshakes).map(|_| handshake(&ids, &config)).collect();
    let total = thread_cpu() - start;
    println!("{handshakes} handshakes in memory, release build, CPU per side:");
    // Reading the thread's clock is a system call (about 0.3-1 us); the per-side figures
    // below include a few dozen of them, this one only two.
    println!(
        "{:<28} mean {:>7.1} us (whole run, engines dropped too, / handshakes / 2)",
        "either side, all included",
        micros(total / handshakes as u32 / 2)
    );
    for (side, name) in [(0, "client"), (1, "server")] {
        report(
            &format!("{name} engine creation"),
            runs.iter().map(|r| r[side].create).collect(),
        );
        report(
            &format!("{name} handshake"),
            runs.iter().map(|r| r[side].handshake).collect(),
        );
        report(
            &format!("{name} both"),
            runs.iter().map(|r| r[side].create + r[side].handshake).collect(),
        );
    }
    if std::env::args().nth(2).as_deref() != Some("--no-floor") {
        floor(handshakes.max(100));
    }
}
