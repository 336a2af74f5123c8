//! Batched UDP I/O: up to [`BATCH`] datagrams per system call where the platform has the
//! calls (Linux: `recvmmsg` with GRO, GSO `sendmsg`, `sendmmsg`; see `sys::linux`), one
//! datagram per call elsewhere and wherever the kernel refuses a feature. The buffers, the
//! send order and the fall-backs live here; the system calls in `sys`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;

#[cfg(target_os = "linux")]
use super::sys::linux::{self, BATCHED, GSO, GSO_BYTES, GSO_SEGMENTS};
use super::sys::{self, RawSocket};

/// Datagrams per system call.
pub(super) const BATCH: usize = 32;
/// Room for the largest UDP datagram, so nothing is truncated.
pub(super) const SLOT: usize = 65_536;
/// Room for the control messages of one received datagram (the GRO segment size).
#[cfg(target_os = "linux")]
pub(super) const CONTROL: usize = 64;

/// A connection's socket: registered with tokio while the driver thread reads it, plain once
/// the application's thread reads it. A registered socket wakes the driver thread for every
/// datagram that arrives or leaves, even with no task waiting, so it is deregistered then.
#[derive(Clone)]
pub(super) enum Sock {
    /// Watched by the driver thread.
    Registered(Arc<UdpSocket>),
    /// Read by the application's thread; the driver watches it only while sends are blocked.
    Direct(Arc<std::net::UdpSocket>),
}

impl Sock {
    /// The descriptor (Unix) or socket handle (Windows).
    pub(super) fn raw(&self) -> RawSocket {
        match self {
            Self::Registered(s) => sys::raw(&**s),
            Self::Direct(s) => sys::raw(&**s),
        }
    }

    /// The application's loop watches a plain socket level-triggered, so a read may stop
    /// short of `WouldBlock`: anything left makes the loop call again. A registered socket's
    /// (edge-triggered) readiness is only cleared by a `WouldBlock`.
    pub(super) fn may_stop_short(&self) -> bool {
        matches!(self, Self::Direct(_))
    }

    /// Runs one non-blocking call; on a registered socket, a `WouldBlock` also clears tokio's
    /// readiness so its next wait really waits. A send is tried even where tokio has not yet
    /// seen the socket writable (a socket registered a moment ago, such as a new
    /// connection's before its first flight): tokio would refuse it unseen, and the datagram
    /// would wait for the I/O thread to look.
    fn io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            Self::Registered(s) => {
                let mut call = Some(f);
                let result = s.try_io(interest, || call.take().expect("tokio calls it at most once")());
                match call {
                    Some(f) if interest == Interest::WRITABLE => f(),
                    _ => result,
                }
            }
            Self::Direct(_) => f(),
        }
    }

    /// A `std` view of the socket for one call (it stays owned by `self`).
    fn view(&self) -> std::mem::ManuallyDrop<std::net::UdpSocket> {
        sys::view(self.raw())
    }

    /// Waits until the socket can take a datagram again.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            Self::Registered(s) => s.writable().await,
            Self::Direct(s) => sys::writable(s.clone()).await,
        }
    }
}

/// Receive buffers for one batch. One set per thread serves every connection that thread
/// reads for, so a connection costs no receive buffer of its own; untouched pages of it are
/// never made resident.
pub(super) struct RecvBatch {
    pub(super) buf: Vec<u8>,
    pub(super) lens: [usize; BATCH],
    /// GRO segment size of each slot (0: the slot is one datagram).
    pub(super) segment: [usize; BATCH],
    pub(super) from: [Option<SocketAddr>; BATCH],
    /// u64 keeps the control buffers aligned for `cmsghdr`.
    #[cfg(target_os = "linux")]
    pub(super) control: [[u64; CONTROL / 8]; BATCH],
}

thread_local! {
    static RECV: RefCell<RecvBatch> = RefCell::new(RecvBatch {
        buf: vec![0; BATCH * SLOT],
        lens: [0; BATCH],
        segment: [0; BATCH],
        from: [None; BATCH],
        #[cfg(target_os = "linux")]
        control: [[0; CONTROL / 8]; BATCH],
    });
}

/// Runs `f` with this thread's receive buffers.
pub(super) fn with_recv_batch<R>(f: impl FnOnce(&mut RecvBatch) -> R) -> R {
    RECV.with(|batch| f(&mut batch.borrow_mut()))
}

impl RecvBatch {
    /// Reads up to [`BATCH`] waiting datagrams without blocking; `WouldBlock` when there are
    /// none (which also clears tokio's readiness for the socket).
    pub(super) fn recv(&mut self, socket: &Sock) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if BATCHED.load(Ordering::Relaxed) {
            match socket.io(Interest::READABLE, || self.recv_mmsg(socket.raw())) {
                Err(e) if linux::refused(&e) => BATCHED.store(false, Ordering::Relaxed),
                result => return result,
            }
        }
        let view = socket.view();
        let (n, from) = socket.io(Interest::READABLE, || view.recv_from(&mut self.buf[..SLOT]))?;
        self.lens[0] = n;
        self.segment[0] = 0;
        self.from[0] = Some(from);
        Ok(1)
    }

    /// The datagrams in slot `i` of the last `recv` (several when GRO joined them), in the
    /// order they were sent, and their source.
    pub(super) fn slot(&self, i: usize) -> (impl Iterator<Item = &[u8]>, Option<SocketAddr>) {
        let data = &self.buf[i * SLOT..i * SLOT + self.lens[i]];
        let segment = if self.segment[i] == 0 {
            data.len().max(1)
        } else {
            self.segment[i]
        };
        // An empty datagram is still one datagram (counted, then refused by the engine).
        let count = data.len().div_ceil(segment).max(1);
        let datagrams = (0..count).map(move |k| &data[k * segment..((k + 1) * segment).min(data.len())]);
        (datagrams, self.from[i])
    }
}

/// A datagram waiting to be sent: its bytes, and its own destination if it has one (an
/// endpoint's datagrams go to many peers, each to its own).
pub(super) trait Outgoing {
    fn contents(&self) -> &[u8];
    fn destination(&self) -> Option<SocketAddr>;
}

/// Bare datagrams, for the tests of batching (no destination of their own).
#[cfg(test)]
impl Outgoing for Vec<u8> {
    fn contents(&self) -> &[u8] {
        self
    }

    fn destination(&self) -> Option<SocketAddr> {
        None
    }
}

impl Outgoing for crate::endpoint::Transmit {
    fn contents(&self) -> &[u8] {
        &self.contents
    }

    fn destination(&self) -> Option<SocketAddr> {
        Some(self.destination)
    }
}

/// Sends datagrams from the front of `queue` without blocking, in order, each to its own
/// destination, or with no address at all when the socket is `connected` (it can reach only
/// its peer, and some systems refuse an address); returns how many
/// left it (sent, or lost to a socket error, which is counted in `errors`). Stops at the
/// first that would block.
pub(super) fn send_queue<D: Outgoing>(socket: &Sock, queue: &VecDeque<D>, connected: bool, errors: &mut u64) -> usize {
    let to = |datagram: &D| datagram.destination().filter(|_| !connected);
    let mut done = 0;
    while done < queue.len() {
        #[cfg(target_os = "linux")]
        if GSO.load(Ordering::Relaxed) {
            let run = gso_run(queue, done);
            if run > 1 {
                let datagrams = queue.range(done..done + run);
                let sent = socket.io(Interest::WRITABLE, || {
                    linux::send_gso(socket.raw(), datagrams, to(&queue[done]))
                });
                match sent {
                    Ok(()) => {
                        done += run;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
                    // Refused for this socket or route, or unknown: sendmmsg from now on.
                    Err(_) => GSO.store(false, Ordering::Relaxed),
                }
            }
        }
        #[cfg(target_os = "linux")]
        if BATCHED.load(Ordering::Relaxed) && queue.len() - done > 1 {
            let datagrams = queue.range(done..).take(BATCH);
            let sent = socket.io(Interest::WRITABLE, || {
                linux::send_mmsg(socket.raw(), datagrams, connected)
            });
            match sent {
                Ok(n) => {
                    done += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
                Err(e) if linux::refused(&e) => BATCHED.store(false, Ordering::Relaxed),
                // The first datagram failed (e.g. an ICMP error reported late); it is lost
                // like any UDP datagram, and the rest go on.
                Err(_) => {
                    *errors += 1;
                    done += 1;
                    continue;
                }
            }
        }
        let datagram = queue[done].contents();
        let view = socket.view();
        let sent = socket.io(Interest::WRITABLE, || match to(&queue[done]) {
            None => view.send(datagram),
            Some(to) => view.send_to(datagram, to),
        });
        match sent {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
            Err(_) => *errors += 1,
        }
        done += 1;
    }
    done
}

/// How many datagrams from `start` one GSO send can carry: same-size ones to the same
/// destination, plus one shorter at the end, within the kernel's limits.
#[cfg(target_os = "linux")]
fn gso_run<D: Outgoing>(queue: &VecDeque<D>, start: usize) -> usize {
    let segment = queue[start].contents().len();
    let to = queue[start].destination();
    let mut total = 0;
    let mut run = 0;
    for datagram in queue.range(start..).take(GSO_SEGMENTS) {
        let len = datagram.contents().len();
        if len > segment || total + len > GSO_BYTES || datagram.destination() != to {
            break;
        }
        total += len;
        run += 1;
        if len < segment {
            break;
        }
    }
    run
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn queue(sizes: &[usize]) -> VecDeque<Vec<u8>> {
        sizes.iter().map(|&n| vec![0; n]).collect()
    }

    #[test]
    fn a_gso_run_is_same_size_datagrams_and_at_most_one_shorter_last() {
        assert_eq!(gso_run(&queue(&[100, 100, 100, 40, 100]), 0), 4);
        assert_eq!(gso_run(&queue(&[100, 100, 100, 40, 100]), 4), 1);
        assert_eq!(gso_run(&queue(&[100, 120, 120]), 0), 1);
        assert_eq!(gso_run(&queue(&[100, 120, 120]), 1), 2);
        assert_eq!(gso_run(&queue(&[10; 100]), 0), GSO_SEGMENTS);
        assert_eq!(gso_run(&queue(&[30_000; 4]), 0), 2);
    }

    #[test]
    fn a_gso_run_stops_where_the_destination_changes() {
        use crate::endpoint::Transmit;
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let queue: VecDeque<Transmit> = [a, a, b, b, b]
            .into_iter()
            .map(|destination| Transmit {
                destination,
                contents: vec![0; 100],
            })
            .collect();
        assert_eq!(gso_run(&queue, 0), 2);
        assert_eq!(gso_run(&queue, 2), 3);
    }

    #[test]
    fn a_queue_of_transmits_reaches_each_destination_in_order() {
        use crate::endpoint::Transmit;
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        let receivers: Vec<_> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        // Runs to one destination (GSO), then alternating destinations (sendmmsg).
        let order = [0, 0, 0, 1, 0, 1, 1];
        let queue: VecDeque<Transmit> = (order.iter().enumerate())
            .map(|(i, &r)| Transmit {
                destination: receivers[r].local_addr().unwrap(),
                contents: vec![i as u8; 50],
            })
            .collect();
        let sock = Sock::Direct(Arc::new(sender));
        let mut errors = 0;
        assert_eq!(send_queue(&sock, &queue, false, &mut errors), order.len());
        assert_eq!(errors, 0);
        for (r, receiver) in receivers.iter().enumerate() {
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let expected: Vec<u8> = (0..order.len()).filter(|&i| order[i] == r).map(|i| i as u8).collect();
            let mut got = Vec::new();
            let mut buf = [0u8; 100];
            for _ in &expected {
                let n = receiver.recv(&mut buf).unwrap();
                assert_eq!(n, 50, "each datagram arrives whole, not joined");
                got.push(buf[0]);
            }
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_gro_buffer_splits_into_its_datagrams_in_order() {
        with_recv_batch(|batch| {
            batch.buf[..10].copy_from_slice(b"aaaabbbbcc");
            batch.lens[0] = 10;
            batch.segment[0] = 4;
            batch.lens[1] = 0;
            batch.segment[1] = 0;
            let (datagrams, _) = batch.slot(0);
            assert_eq!(datagrams.collect::<Vec<_>>(), [&b"aaaa"[..], b"bbbb", b"cc"]);
            // An empty datagram is still one datagram.
            assert_eq!(batch.slot(1).0.count(), 1);
        });
    }
}
