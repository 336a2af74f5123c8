//! The platform seam: the only code that knows descriptors (Unix) or socket handles
//! (Windows), the batched system calls (Linux) and the waker's socket pair. The rest of the
//! driver sees `std` and tokio sockets and the functions here.
#![allow(unsafe_code)]

use std::io;
use std::net::UdpSocket;

#[cfg(target_os = "linux")]
pub(super) mod linux;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub(super) use unix::{raw, view, writable, CALLER_READS};
#[cfg(unix)]
pub use unix::{take_socket, OwnedSocket, RawSocket, WakePipe};
#[cfg(windows)]
pub(super) use windows::{raw, view, writable, CALLER_READS};
#[cfg(windows)]
pub use windows::{take_socket, OwnedSocket, RawSocket, WakePipe};

/// Turns a socket the caller handed over into a non-blocking UDP socket after checking it is
/// one.
pub fn udp_socket_from(socket: OwnedSocket) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::from(socket);
    if socket.r#type()? != socket2::Type::DGRAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket is not a UDP (SOCK_DGRAM) socket",
        ));
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Asks the kernel to join runs of same-size datagrams (UDP GRO) where it can; nothing
/// elsewhere.
pub(super) fn enable_gro(socket: &UdpSocket) {
    #[cfg(target_os = "linux")]
    linux::enable_gro(socket);
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Python side hands over: a raw descriptor or handle it no longer owns.
    fn hand_over(socket: impl Into<OwnedSocket>) -> RawSocket {
        #[cfg(unix)]
        let raw = std::os::fd::IntoRawFd::into_raw_fd(socket.into());
        #[cfg(windows)]
        let raw = std::os::windows::io::IntoRawSocket::into_raw_socket(socket.into());
        raw
    }

    #[test]
    fn a_udp_socket_handed_over_is_taken_non_blocking_and_a_tcp_one_refused() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = udp.local_addr().unwrap();
        let taken = udp_socket_from(take_socket(hand_over(udp)).unwrap()).unwrap();
        assert_eq!(taken.local_addr().unwrap(), local);
        let mut buf = [0u8; 8];
        let empty = taken.recv_from(&mut buf).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock, "the socket is non-blocking");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = udp_socket_from(take_socket(hand_over(tcp)).unwrap()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
    }
}
