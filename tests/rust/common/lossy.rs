//! Handshakes over a seeded lossy link with a one-way delay, for the loss sweeps.
//!
//! Each datagram is lost with probability `loss`, decided by one seeded generator per
//! direction, so a seed replays the same pattern. The link runs either on the real clock
//! (sleeping until the next delivery or timer) or on a virtual one (jumping there at once).
//! The virtual clock is sound because no retransmission decision depends on the wall clock
//! (the engine keeps its flights, see `src/engine/flight.rs`): an engine that left one to
//! OpenSSL would stall on it. Both clocks gave the same sweep figures (docs/benchmarks.md).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dtls_peer::{Config, Engine, Event, Identity, State};

/// How the link's time passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Real,
    Virtual,
}

/// One link's settings.
#[derive(Debug, Clone)]
pub struct Link {
    /// Probability that a datagram is lost, each way.
    pub loss: f64,
    pub one_way_delay: Duration,
    pub clock: Clock,
    pub config: Config,
    /// Print every datagram sent, lost and delivered (to follow one seed by hand).
    pub trace: bool,
}

impl Link {
    /// Default settings, `loss` each way, 20 ms one way.
    pub fn new(loss: f64, clock: Clock) -> Self {
        Self {
            loss,
            one_way_delay: Duration::from_millis(20),
            clock,
            config: Config::default(),
            trace: false,
        }
    }
}

/// What one handshake over the link did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// From start until both ends reported `Connected`, if they did.
    pub connected_after: Option<Duration>,
    /// Both ends then read the other's message (sent over the link with loss turned off).
    pub exchanged: bool,
    /// Datagrams and bytes both ends sent until both were connected.
    pub datagrams: u64,
    pub bytes: u64,
    pub retransmissions: u64,
    /// The failure either end reported, if any.
    pub failure: Option<String>,
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / ((1u64 << 53) as f64)) < p
    }
}

struct InFlight {
    at: Instant,
    to_server: bool,
    datagram: Vec<u8>,
}

struct Run {
    client: Engine,
    server: Engine,
    link: Link,
    rng: [Rng; 2],
    lossy: bool,
    queue: VecDeque<InFlight>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

impl Run {
    /// Puts what both engines produced on the link (each datagram may be lost).
    fn collect(&mut self, now: Instant, start: Instant) {
        for to_server in [true, false] {
            let (engine, rng) = if to_server {
                (&mut self.client, &mut self.rng[0])
            } else {
                (&mut self.server, &mut self.rng[1])
            };
            while let Some(datagram) = engine.poll_transmit() {
                let lost = self.lossy && rng.chance(self.link.loss);
                if self.link.trace {
                    let ms = now.duration_since(start).as_millis();
                    let who = if to_server { "client" } else { "server" };
                    let what = if lost { "LOST" } else { "sent" };
                    println!("{ms:>6} ms {who} {what} {} bytes, type {}", datagram.len(), datagram[0]);
                }
                if lost {
                    continue;
                }
                // Constant delay: the queue stays in delivery order.
                self.queue.push_back(InFlight {
                    at: now + self.link.one_way_delay,
                    to_server,
                    datagram,
                });
            }
        }
        self.client_events
            .extend(std::iter::from_fn(|| self.client.poll_event()));
        self.server_events
            .extend(std::iter::from_fn(|| self.server.poll_event()));
    }

    fn connected(&self) -> bool {
        self.client_events.contains(&Event::Connected) && self.server_events.contains(&Event::Connected)
    }

    fn failed(&self) -> bool {
        self.client.state() == State::Failed || self.server.state() == State::Failed
    }

    /// Runs until `done` or nothing is left to happen; at most `limit` of link time.
    fn run_until(&mut self, start: Instant, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let mut now = start;
        for _ in 0..100_000 {
            if done(self) {
                return;
            }
            let next = [
                self.queue.front().map(|d| d.at),
                self.client.poll_timeout(),
                self.server.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            if next > start + limit {
                return;
            }
            now = match self.link.clock {
                Clock::Virtual => now.max(next),
                Clock::Real => {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    Instant::now().max(next)
                }
            };
            while self.queue.front().is_some_and(|d| d.at <= now) {
                let d = self.queue.pop_front().expect("checked");
                let engine = if d.to_server {
                    &mut self.server
                } else {
                    &mut self.client
                };
                engine.handle_datagram(now, &d.datagram);
                self.collect(now, start);
            }
            for engine in [&mut self.client, &mut self.server] {
                if engine.poll_timeout().is_some_and(|t| t <= now) {
                    engine.handle_timeout(now);
                }
            }
            self.collect(now, start);
        }
    }
}

/// One handshake between `client_id` and `server_id` over `link`, with loss seeded by `seed`.
pub fn handshake(seed: u64, link: &Link, client_id: &Identity, server_id: &Identity) -> Outcome {
    let (client, server) = super::pinned_engines(client_id, server_id, link.config.clone(), link.config.clone());
    let mut run = Run {
        client,
        server,
        link: link.clone(),
        rng: [Rng(seed ^ 0x0c11_e27a), Rng(seed ^ 0x5e12_7e12 ^ (1 << 40))],
        lossy: true,
        queue: VecDeque::new(),
        client_events: Vec::new(),
        server_events: Vec::new(),
    };
    let start = Instant::now();
    run.server.start(start);
    run.client.start(start);
    run.collect(start, start);
    let deadline = link.config.handshake_timeout + Duration::from_secs(1);
    let mut connected_at = None;
    run.run_until(start, deadline, |r| r.connected() || r.failed());
    if run.connected() {
        connected_at = [run.client.stats(), run.server.stats()]
            .iter()
            .map(|s| s.handshake_duration)
            .max()
            .flatten();
    }
    let (c, s) = (run.client.stats(), run.server.stats());
    let failure = run
        .client_events
        .iter()
        .chain(&run.server_events)
        .find_map(|e| match e {
            Event::HandshakeFailed(f) => Some(format!("{f:?}")),
            _ => None,
        });
    let mut exchanged = false;
    if connected_at.is_some() {
        // The keys both ends derived must work: one message each way, loss turned off.
        run.lossy = false;
        run.client.send(b"from the client").unwrap();
        run.server.send(b"from the server").unwrap();
        let at = Instant::now().max(run.queue.back().map_or(start, |d| d.at));
        run.collect(at, start);
        let got = |events: &[Event], m: &[u8]| events.iter().any(|e| *e == Event::Message(m.to_vec()));
        run.run_until(start, deadline + Duration::from_secs(2), |r| {
            got(&r.server_events, b"from the client") && got(&r.client_events, b"from the server")
        });
        exchanged = got(&run.server_events, b"from the client") && got(&run.client_events, b"from the server");
    }
    Outcome {
        seed,
        connected_after: connected_at,
        exchanged,
        datagrams: c.datagrams_out + s.datagrams_out,
        bytes: c.bytes_out + s.bytes_out,
        retransmissions: c.retransmissions + s.retransmissions,
        failure,
    }
}

/// Handshakes for every seed in `seeds`, `threads` at a time (real-clock runs mostly sleep).
pub fn sweep(seeds: std::ops::Range<u64>, link: &Link, threads: usize) -> Vec<Outcome> {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let outcome = handshake(seed, link, &client_id, &server_id);
                results.lock().unwrap().push(outcome);
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|o| o.seed);
    results
}

/// Percentiles and counts of a sweep, as one line.
pub fn summary(results: &[Outcome], within: Duration) -> String {
    let mut times: Vec<Duration> = results
        .iter()
        .filter(|o| o.exchanged)
        .filter_map(|o| o.connected_after)
        .collect();
    times.sort();
    let ok = times.iter().filter(|t| **t <= within).count();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or("-".to_owned(), |t| format!("{:.2}", t.as_secs_f64()))
    };
    let good: Vec<&Outcome> = results.iter().filter(|o| o.exchanged).collect();
    let bytes = good.iter().map(|o| o.bytes).sum::<u64>() / good.len().max(1) as u64;
    let datagrams = good.iter().map(|o| o.datagrams).sum::<u64>() as f64 / good.len().max(1) as f64;
    format!(
        "{ok}/{} within {:.0} s ({} connected); p50 {} s, p90 {} s, p99 {} s, max {} s; per success {bytes} bytes, {datagrams:.1} datagrams",
        results.len(),
        within.as_secs_f64(),
        times.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    )
}
