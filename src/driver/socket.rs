//! Taking over an application's UDP socket: the only platform-specific part of the driver.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};

#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Takes ownership of a descriptor the caller hands over (a duplicate it no longer owns),
/// so that it is closed exactly once whatever happens next.
#[cfg(unix)]
pub fn take_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket descriptor"));
    }
    // SAFETY: the caller transfers sole ownership of the open descriptor `fd`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Turns an owned descriptor into a non-blocking UDP socket after checking it is one.
#[cfg(unix)]
pub fn udp_socket_from_fd(fd: OwnedFd) -> io::Result<UdpSocket> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`; an invalid fd is an error.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if kind != libc::SOCK_DGRAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket is not a UDP (SOCK_DGRAM) socket",
        ));
    }
    let socket = UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Where the socket is bound; an unbound socket has no hole punched and is refused.
pub(super) fn bound_address(socket: &UdpSocket) -> io::Result<SocketAddr> {
    let local = socket.local_addr()?;
    if local.port() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket is not bound to a local port",
        ));
    }
    Ok(local)
}

/// The address to send to: an IPv4 peer on an IPv6 socket is reached through its mapped form.
pub(super) fn destination_for(local: SocketAddr, remote: SocketAddr) -> io::Result<SocketAddr> {
    match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V6(r)) if r.ip().to_ipv4_mapped().is_none() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("remote address {remote} is IPv6 but the socket is IPv4"),
        )),
        (SocketAddr::V4(_), SocketAddr::V6(r)) => Ok(SocketAddr::new(r.ip().to_canonical(), r.port())),
        (SocketAddr::V6(_), SocketAddr::V4(r)) => Ok(SocketAddr::new(r.ip().to_ipv6_mapped().into(), r.port())),
        _ => Ok(remote),
    }
}

/// Whether a datagram's source is the peer, treating v4-mapped IPv6 as the same address.
pub(super) fn same_peer(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}
