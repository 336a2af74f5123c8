//! Linux's batched UDP system calls: `recvmmsg` with UDP GRO (the kernel hands over a run of
//! same-size datagrams from one sender as one buffer, split by `RecvBatch::slot`), and UDP
//! GSO `sendmsg` (a run of same-size datagrams as one call, which loopback delivers as one
//! buffer), else `sendmmsg`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::driver::batch_io::{Outgoing, RecvBatch, BATCH, CONTROL, SLOT};

/// Cleared the first time the kernel refuses a batched call (e.g. a seccomp filter); from
/// then on every thread uses the one-datagram calls.
pub(in crate::driver) static BATCHED: AtomicBool = AtomicBool::new(true);
/// Cleared the first time a segmented send is refused (no UDP GSO, or a route that cannot
/// take it); `sendmmsg` then carries every batch.
pub(in crate::driver) static GSO: AtomicBool = AtomicBool::new(true);
/// Most segments the kernel takes in one GSO send (UDP_MAX_SEGMENTS).
pub(in crate::driver) const GSO_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: what fits one IPv4 packet.
pub(in crate::driver) const GSO_BYTES: usize = 65_507;

impl RecvBatch {
    /// Reads up to [`BATCH`] datagrams with one `recvmmsg`, each slot with its source and
    /// GRO segment size.
    pub(in crate::driver) fn recv_mmsg(&mut self, fd: RawFd) -> io::Result<usize> {
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

/// Sends same-size datagrams (the last may be shorter) as one segmented buffer, without
/// copying them together.
pub(in crate::driver) fn send_gso<'a, D: Outgoing + 'a>(
    fd: RawFd,
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
    // SAFETY: the header points at live iovecs over the queued datagrams, at `name` and at
    // `control`; the kernel only reads them.
    let n = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends up to [`BATCH`] datagrams, each to its own address (none when the socket is
/// `connected`), with one `sendmmsg`; returns how many the kernel took.
pub(in crate::driver) fn send_mmsg<'a, D: Outgoing + 'a>(
    fd: RawFd,
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
    // SAFETY: the first `count` headers point at live iovecs over the queued datagrams and at
    // their entries of `names`; the kernel only reads them.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), count, libc::MSG_DONTWAIT as _) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The GRO segment size the kernel reported for a received buffer, or 0.
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
/// received buffers are split again; best effort.
pub(super) fn enable_gro(socket: &std::net::UdpSocket) {
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
pub(in crate::driver) fn refused(e: &io::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_through_sockaddr_storage() {
        for addr in ["127.0.0.1:4433", "[::1]:9", "[fe80::1%2]:65535", "[::ffff:10.0.0.1]:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(from_storage(&to_storage(addr).0), Some(addr));
        }
    }
}
