//! Batched UDP system calls. On Linux: `recvmmsg` with UDP GRO (the kernel hands over a run
//! of same-size datagrams from one sender as one buffer, split here), and UDP GSO `sendmsg`
//! (a run of same-size datagrams as one call, which loopback delivers as one buffer), else
//! `sendmmsg`. One datagram per call elsewhere, and wherever the kernel refuses a feature.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(super) const BATCH: usize = 32;
/// Room for the largest UDP datagram, so nothing is truncated.
const SLOT: usize = 65_536;

/// Cleared the first time the kernel refuses a batched call (e.g. a seccomp filter); from
/// then on every thread uses the one-datagram calls.
static BATCHED: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));
/// Cleared the first time a segmented send is refused (no UDP GSO, or a route that cannot
/// take it); `sendmmsg` then carries every batch.
static GSO: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));
/// Most segments the kernel takes in one GSO send (UDP_MAX_SEGMENTS).
const GSO_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: what fits one IPv4 packet.
const GSO_BYTES: usize = 65_507;
/// Room for the control messages of one received datagram (the GRO segment size).
const CONTROL: usize = 64;

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
    pub(super) fn fd(&self) -> RawFd {
        match self {
            Self::Registered(s) => s.as_raw_fd(),
            Self::Direct(s) => s.as_raw_fd(),
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

    /// A `std` view of the descriptor for one call (it stays owned by `self`).
    fn view(&self) -> std::mem::ManuallyDrop<std::net::UdpSocket> {
        // SAFETY: the descriptor is open while `self` is borrowed, and ManuallyDrop keeps the
        // view from closing it.
        std::mem::ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(self.fd()) })
    }

    /// Waits until the socket can take a datagram again.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            Self::Registered(s) => s.writable().await,
            Self::Direct(s) => {
                // Registered for writability only while this waits; incoming datagrams do
                // not wake an interest that leaves out reads.
                // SAFETY: the Arc keeps the descriptor open, unchanged, for as long as `watch`.
                let watch = unsafe { tokio::io::unix::AsyncFd::register_with_interest(s.clone(), Interest::WRITABLE) }
                    .map_err(|e| e.into_parts().1)?;
                let _ready = watch.writable().await?;
                Ok(())
            }
        }
    }
}

/// Receive buffers for one batch. One set per thread serves every connection that thread
/// reads for, so a connection costs no receive buffer of its own; untouched pages of it are
/// never made resident.
pub(super) struct RecvBatch {
    buf: Vec<u8>,
    lens: [usize; BATCH],
    /// GRO segment size of each slot (0: the slot is one datagram).
    segment: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    /// u64 keeps the control buffers aligned for `cmsghdr`.
    control: [[u64; CONTROL / 8]; BATCH],
}

thread_local! {
    static RECV: RefCell<RecvBatch> = RefCell::new(RecvBatch {
        buf: vec![0; BATCH * SLOT],
        lens: [0; BATCH],
        segment: [0; BATCH],
        from: [None; BATCH],
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
            match socket.io(Interest::READABLE, || self.recv_mmsg(socket.fd())) {
                Err(e) if refused(&e) => BATCHED.store(false, Ordering::Relaxed),
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

    #[cfg(target_os = "linux")]
    fn recv_mmsg(&mut self, fd: i32) -> io::Result<usize> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, ((iov, msg), name)) in iovs.iter_mut().zip(msgs.iter_mut()).zip(names.iter_mut()).enumerate() {
            iov.iov_base = self.buf[i * SLOT..].as_mut_ptr().cast();
            iov.iov_len = SLOT;
            msg.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = self.control[i].as_mut_ptr().cast();
            msg.msg_hdr.msg_controllen = CONTROL as _;
        }
        // SAFETY: every header points at a live iovec over a distinct SLOT-sized part of
        // `buf`, a live sockaddr_storage and a live control buffer; the kernel writes only
        // within them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                // glibc takes the flags as a c_int, musl as a c_uint.
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = msgs[i].msg_len as usize;
            self.from[i] = from_storage(&names[i]);
            self.segment[i] = gro_segment(&msgs[i].msg_hdr);
        }
        Ok(n)
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
                match send_gso(socket, queue.range(done..done + run), to(&queue[done])) {
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
            match send_mmsg(socket, queue.range(done..).take(BATCH), connected) {
                Ok(n) => {
                    done += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
                Err(e) if refused(&e) => BATCHED.store(false, Ordering::Relaxed),
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

/// Sends same-size datagrams (the last may be shorter) as one segmented buffer, without
/// copying them together.
#[cfg(target_os = "linux")]
fn send_gso<'a, D: Outgoing + 'a>(
    socket: &Sock,
    datagrams: impl Iterator<Item = &'a D>,
    destination: Option<SocketAddr>,
) -> io::Result<()> {
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut iovs: [libc::iovec; GSO_SEGMENTS] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    let mut segment = 0;
    for (iov, datagram) in iovs.iter_mut().zip(datagrams) {
        let datagram = datagram.contents();
        iov.iov_base = datagram.as_ptr() as *mut libc::c_void;
        iov.iov_len = datagram.len();
        segment = segment.max(datagram.len());
        count += 1;
    }
    let (mut name, name_len) = match destination {
        Some(to) => to_storage(to),
        // SAFETY: all-zero is a valid sockaddr_storage (unused: the socket is connected).
        None => (unsafe { std::mem::zeroed() }, 0),
    };
    let mut control = [0u64; CONTROL / 8];
    // SAFETY: all-zero is a valid msghdr.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    if name_len > 0 {
        hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = name_len;
    }
    hdr.msg_iov = iovs.as_mut_ptr();
    hdr.msg_iovlen = count;
    hdr.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
    // SAFETY: the control buffer is aligned and larger than CMSG_SPACE(2); the first header
    // and its data lie within it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment as u16);
    }
    socket.io(Interest::WRITABLE, || {
        // SAFETY: the header points at live iovecs over the queued datagrams, at `name` and
        // at `control`; the kernel only reads them.
        let n = unsafe { libc::sendmsg(socket.fd(), &hdr, libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    })
}

#[cfg(target_os = "linux")]
fn send_mmsg<'a, D: Outgoing + 'a>(
    socket: &Sock,
    datagrams: impl Iterator<Item = &'a D>,
    connected: bool,
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    for (((iov, msg), name), datagram) in iovs
        .iter_mut()
        .zip(msgs.iter_mut())
        .zip(names.iter_mut())
        .zip(datagrams)
    {
        // Each datagram has its own address (none when the socket is connected).
        if let Some(to) = datagram.destination().filter(|_| !connected) {
            let (storage, len) = to_storage(to);
            *name = storage;
            msg.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = len;
        }
        let datagram = datagram.contents();
        iov.iov_base = datagram.as_ptr() as *mut libc::c_void;
        iov.iov_len = datagram.len();
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
        count += 1;
    }
    socket.io(Interest::WRITABLE, || {
        // SAFETY: the first `count` headers point at live iovecs over the queued datagrams
        // and at their entries of `names`; the kernel only reads them.
        let n = unsafe { libc::sendmmsg(socket.fd(), msgs.as_mut_ptr(), count, libc::MSG_DONTWAIT as _) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// The GRO segment size the kernel reported for a received buffer, or 0.
#[cfg(target_os = "linux")]
fn gro_segment(hdr: &libc::msghdr) -> usize {
    // SAFETY: `hdr` was filled by recvmmsg; the CMSG macros stay within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    0
}

/// Asks the kernel to join runs of same-size datagrams (UDP GRO), where it can and where
/// received buffers are split again here; best effort.
pub(super) fn enable_gro(socket: &std::net::UdpSocket) {
    #[cfg(target_os = "linux")]
    if BATCHED.load(Ordering::Relaxed) {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from `on`; failure leaves the socket unchanged.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// The batched call itself is unavailable, as opposed to failing for this socket.
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP))
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn to_storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let s = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let s = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_addr.s6_addr = a.ip().octets();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_through_sockaddr_storage() {
        for addr in ["127.0.0.1:4433", "[::1]:9", "[fe80::1%2]:65535", "[::ffff:10.0.0.1]:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(from_storage(&to_storage(addr).0), Some(addr));
        }
    }

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
