//! Runs engines over a real UDP socket on tokio: a sans-IO endpoint on its socket
//! ([`EndpointDriver`]), with many peers or, for a standalone connection, one.
//!
//! One task per socket owns the receive side and the timers of every peer on that socket.
//! Application threads call `send`/`try_recv` directly: an encrypted message goes out on the
//! caller's thread when the socket is writable, and a queued message is taken without a thread
//! hop. The task tells the application about changes through [`Notify`], once per batch of
//! datagrams.

mod batch_io;
mod endpoint;
mod socket;
mod stats;
pub mod sys;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::runtime::Runtime;

use batch_io::Sock;
pub use endpoint::{Accepted, EndpointConnection, EndpointDriver};
#[cfg(test)]
pub(crate) use stats::assert_readme_table;
pub use stats::{DriverStats, StatField, StatValue, STAT_FIELDS};
pub use sys::{take_socket, udp_socket_from, RawSocket};

use crate::engine::{CloseReason, HandshakeFailure};

/// Datagrams handled per wake-up before the application is notified (or the reading thread
/// gives others a turn); one read may carry more, when GRO joined them.
const RECV_BATCH: usize = 64;
/// Datagrams queued by `send_many` before they are flushed to the socket together.
const SEND_BATCH: usize = 64;

/// How the driver tells the application that something it may wait on changed.
pub trait Notify: Send + Sync {
    /// Called from the driver thread; must not block.
    fn notify(&self);
}

/// Where the handshake stands, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not started or still running.
    Pending,
    /// Verified and ready.
    Established,
    /// Failed for this reason.
    Failed(HandshakeFailure),
    /// Ended after being established.
    Closed(CloseReason),
}

/// Where a connection is in its life, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created; the handshake has not been asked for.
    New,
    /// Handshake asked for and not finished.
    Handshaking,
    /// Verified; messages flow.
    Established,
    /// Closed by either side (or before the handshake finished).
    Closed,
    /// The handshake failed.
    Failed,
}

impl Phase {
    /// The name used in `repr` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Handshaking => "handshaking",
            Self::Established => "established",
            Self::Closed => "closed",
            Self::Failed => "failed",
        }
    }
}

/// What `try_recv` (one message) or `try_recv_many` (a batch) found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<T = Vec<u8>> {
    /// The next message (or messages, in arrival order).
    Message(T),
    /// Nothing queued; wait for a notification.
    Empty,
    /// The handshake has not completed, so no message can be asked for yet.
    NotEstablished,
    /// No message will come again.
    Ended(Progress),
}

/// What `send` did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Encrypted and handed to the socket (or queued behind earlier datagrams).
    Done,
    /// Too many datagrams wait for the socket; nothing was encrypted. Wait and retry.
    Busy,
}

/// The process-wide runtime: one I/O thread is plenty for UDP and leaves a core to Python.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dtls-peer-io")
            .enable_all()
            .build()
            .expect("starting the tokio runtime")
    })
}

/// Deregisters the socket from tokio now that the application's thread reads it (called by
/// the task, which has dropped its own handle, with the lock held so no other exists).
fn hand_over(socket: &mut Option<Sock>) {
    if let Some(Sock::Registered(shared)) = socket.take() {
        *socket = match Arc::try_unwrap(shared) {
            Ok(socket) => socket.into_std().ok().map(|s| Sock::Direct(Arc::new(s))),
            Err(shared) => Some(Sock::Registered(shared)),
        };
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
