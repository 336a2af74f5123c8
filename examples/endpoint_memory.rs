//! Memory an endpoint holds per established peer, in one process with no sockets: an
//! endpoint and N client engines in memory; the clients are then dropped (and the heap
//! trimmed), so what remains above the baseline is the endpoint's side.
//!
//! `cargo run --release --example endpoint_memory -- 2000`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use dtls_peer::endpoint::{Endpoint, EndpointConfig};
use dtls_peer::{Config, Engine, Identity, Role, State};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Heap bytes in use, which fragmentation does not inflate (glibc's counters; 0 elsewhere,
/// where only the RSS figure is printed meaningfully).
fn heap_in_use() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let info = unsafe { libc::mallinfo2() };
        info.uordblks + info.hblkhd
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

/// Returns free heap pages to the system (glibc), so the RSS shows what is still held.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let server = Identity::generate().unwrap();
    let client = Identity::generate().unwrap();
    let config = EndpointConfig {
        max_connections: n + 1,
        max_pending_handshakes: n + 1,
        accept_backlog: n + 1,
        require_cookie: std::env::var_os("NO_COOKIE").is_none(),
        ..EndpointConfig::default()
    };
    let mut endpoint = Endpoint::new(&server, config, None).unwrap();
    let now = Instant::now();
    trim();
    let base = rss_kib();
    let heap_base = heap_in_use();
    let mut clients: HashMap<SocketAddr, Engine> = HashMap::new();
    let pin = Some(server.node_id().to_owned());
    for i in 0..n {
        let addr = SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8 + 1], 20_000));
        let mut c = Engine::new(Role::Client, &client, pin.clone(), Config::default()).unwrap();
        c.start(now);
        clients.insert(addr, c);
        // Handshake this client to completion before the next, as a steady stream would.
        for _ in 0..20 {
            let mut moved = false;
            let c = clients.get_mut(&addr).unwrap();
            while let Some(d) = c.poll_transmit() {
                endpoint.handle(now, addr, &d);
                moved = true;
            }
            while let Some(t) = endpoint.poll_transmit() {
                clients
                    .get_mut(&t.destination)
                    .unwrap()
                    .handle_datagram(now, &t.contents);
                moved = true;
            }
            while endpoint.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
        assert_eq!(clients[&addr].state(), State::Established);
    }
    let with_clients = rss_kib();
    drop(clients);
    trim();
    let endpoint_only = rss_kib();
    let heap = heap_in_use() - heap_base;
    println!(
        "heap in use for the endpoint: {:.1} KiB per peer",
        heap as f64 / 1024.0 / n as f64
    );
    println!(
        "{n} peers: baseline {base} KiB, with clients {with_clients} KiB, endpoint only {endpoint_only} KiB: {:.1} KiB per peer on the endpoint side",
        (endpoint_only - base) as f64 / n as f64
    );
    assert_eq!(endpoint.stats().connections as usize, n);
}
