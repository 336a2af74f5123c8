//! Socket handles: taking over the application's (a duplicate it made with
//! `WSADuplicateSocketW`, which is what Python's `socket.dup()` calls), one-call views of the
//! driver's, and the waker's socket pair.

use std::io::{self, ErrorKind};
use std::mem::ManuallyDrop;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::windows::io::{AsRawSocket, FromRawSocket};
use std::sync::Arc;
use std::time::Duration;

pub use std::os::windows::io::{OwnedSocket, RawSocket};

/// tokio has no readiness wrapper for a socket it does not own on Windows, so the driver
/// thread keeps reading every socket (the event loop is woken through the waker instead).
pub(in crate::driver) const CALLER_READS: bool = false;

/// Winsock's INVALID_SOCKET.
const INVALID_SOCKET: RawSocket = !0;

/// Takes ownership of a socket handle the caller hands over (a duplicate it no longer owns),
/// so that it is closed exactly once whatever happens next.
pub fn take_socket(handle: RawSocket) -> io::Result<OwnedSocket> {
    if handle == INVALID_SOCKET {
        return Err(io::Error::new(ErrorKind::InvalidInput, "not a socket handle"));
    }
    // SAFETY: the caller transfers sole ownership of the open socket `handle`.
    Ok(unsafe { OwnedSocket::from_raw_socket(handle) })
}

pub(in crate::driver) fn raw(socket: &impl AsRawSocket) -> RawSocket {
    socket.as_raw_socket()
}

/// A `std` view of a socket handle for one call (it stays owned by whoever lent it).
pub(in crate::driver) fn view(handle: RawSocket) -> ManuallyDrop<UdpSocket> {
    // SAFETY: the caller keeps the handle open while the view lives, and ManuallyDrop keeps
    // the view from closing it.
    ManuallyDrop::new(unsafe { UdpSocket::from_raw_socket(handle) })
}

/// Only a socket the application's thread reads is unwatched by tokio, and with
/// `CALLER_READS` off there is none; should one appear, the sender retries after a pause.
pub(in crate::driver) async fn writable(_socket: Arc<UdpSocket>) -> io::Result<()> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

/// Two loopback UDP sockets connected to each other (Windows has no socket pair): the
/// driver thread sends a byte, the event loop watches the reader. Connected, the reader
/// takes datagrams from the writer only.
pub struct WakePipe {
    reader: UdpSocket,
    writer: UdpSocket,
}

impl WakePipe {
    pub fn new() -> io::Result<Self> {
        let reader = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let writer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        reader.connect(writer.local_addr()?)?;
        writer.connect(reader.local_addr()?)?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Self { reader, writer })
    }

    /// The socket handle to watch for readability.
    pub fn reader(&self) -> RawSocket {
        self.reader.as_raw_socket()
    }

    pub fn signal(&self) {
        // A full socket buffer already holds a wake-up datagram; nothing is lost.
        let _ = self.writer.send(&[1]);
    }

    /// Consumes every wake-up datagram.
    pub fn drain(&self) {
        let mut sink = [0u8; 16];
        // Bounded: the driver signals at most once per drain, so few datagrams wait.
        for _ in 0..1024 {
            match self.reader.recv(&mut sink) {
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: empty. A connection reset reported by an ICMP error is not a
                // wake-up either.
                Err(_) => break,
            }
        }
    }
}
