//! Descriptors: taking over the application's, one-call views of the driver's, and the
//! waker's socket pair.

use std::io::{self, ErrorKind, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use tokio::io::Interest;

pub use std::os::fd::{OwnedFd as OwnedSocket, RawFd as RawSocket};

/// The application's thread can read a one-peer socket itself (its loop watches the
/// descriptor), and the driver can wait for a plain socket to become writable.
pub(in crate::driver) const CALLER_READS: bool = true;

/// Takes ownership of a descriptor the caller hands over (a duplicate it no longer owns),
/// so that it is closed exactly once whatever happens next.
pub fn take_socket(fd: RawSocket) -> io::Result<OwnedSocket> {
    if fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket descriptor"));
    }
    // SAFETY: the caller transfers sole ownership of the open descriptor `fd`.
    Ok(unsafe { OwnedSocket::from_raw_fd(fd) })
}

pub(in crate::driver) fn raw(socket: &impl AsRawFd) -> RawSocket {
    socket.as_raw_fd()
}

/// A `std` view of a descriptor for one call (it stays owned by whoever lent it).
pub(in crate::driver) fn view(fd: RawSocket) -> ManuallyDrop<std::net::UdpSocket> {
    // SAFETY: the caller keeps the descriptor open while the view lives, and ManuallyDrop
    // keeps the view from closing it.
    ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(fd) })
}

/// Waits until a socket tokio does not watch can take a datagram again: registered for
/// writability only while this waits, so incoming datagrams do not wake an interest that
/// leaves out reads.
pub(in crate::driver) async fn writable(socket: Arc<std::net::UdpSocket>) -> io::Result<()> {
    // SAFETY: the Arc keeps the descriptor open, unchanged, for as long as `watch`.
    let watch = unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ready = watch.writable().await?;
    Ok(())
}

/// A socket pair: the driver thread writes a byte, the event loop watches the other end.
pub struct WakePipe {
    reader: UnixStream,
    writer: UnixStream,
}

impl WakePipe {
    pub fn new() -> io::Result<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Self { reader, writer })
    }

    /// The descriptor to watch for readability.
    pub fn reader(&self) -> RawSocket {
        self.reader.as_raw_fd()
    }

    pub fn signal(&self) {
        // A full socket buffer already holds a wake-up byte; nothing is lost.
        let _ = (&self.writer).write(&[1]);
    }

    /// Consumes every wake-up byte.
    pub fn drain(&self) {
        let mut sink = [0u8; 256];
        loop {
            match (&self.reader).read(&mut sink) {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }
}
