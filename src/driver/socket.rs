//! Checks on the application's UDP socket and its peer's address (the descriptors and
//! handles themselves are `sys`'s).

use std::io;
use std::net::{SocketAddr, UdpSocket};

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
