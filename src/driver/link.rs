//! What the application does with one peer: an [`EndpointConnection`], of an endpoint with
//! many peers or of one with only it (a standalone connection). The bindings hold it as a
//! `dyn Link`.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::{DriverStats, EndpointConnection, Notify, Phase, Progress, Received, Sent};
use crate::engine::{Engine, SendError};

/// One peer as the application sees it. Every method returns at once.
pub trait Link: Send + Sync {
    /// Sets who is told about changes; notifies at once if anything is already waiting.
    fn set_notifier(&self, notifier: Arc<dyn Notify>);
    /// Starts the handshake if it is not running yet (idempotent).
    fn start_handshake(&self);
    /// Where the handshake stands.
    fn progress(&self) -> Progress;
    /// Where the connection is in its life.
    fn phase(&self) -> Phase;
    /// Encrypts and sends one message without waiting.
    fn send(&self, message: &[u8]) -> Result<Sent, SendError>;
    /// Sends messages in order; how many were taken (see `EndpointConnection::send_many`).
    fn send_many(&self, messages: &[&[u8]]) -> Result<usize, SendError>;
    /// The descriptor the application's loop should read, if it reads for this peer.
    fn take_over_reads(&self) -> Option<RawFd>;
    /// Reads the socket on the caller's thread, where it does (see `take_over_reads`).
    fn receive_now(&self) -> bool;
    /// The next received message.
    fn try_recv(&self) -> Received;
    /// Up to `max` received messages.
    fn try_recv_many(&self, max: usize) -> Received<Vec<Vec<u8>>>;
    /// Ends this peer's session (close_notify). Idempotent.
    fn close(&self);
    /// Counters so far.
    fn stats(&self) -> DriverStats;
    /// Runs `f` on the engine (None once it is gone).
    fn inspect(&self, f: &mut dyn FnMut(Option<&Engine>));
    /// The socket's local address.
    fn local_address(&self) -> SocketAddr;
    /// Where the peer is.
    fn remote_address(&self) -> SocketAddr;
}

impl Link for EndpointConnection {
    fn set_notifier(&self, notifier: Arc<dyn Notify>) {
        Self::set_notifier(self, notifier);
    }
    fn start_handshake(&self) {
        Self::start_handshake(self);
    }
    fn progress(&self) -> Progress {
        Self::progress(self)
    }
    fn phase(&self) -> Phase {
        Self::phase(self)
    }
    fn send(&self, message: &[u8]) -> Result<Sent, SendError> {
        Self::send(self, message)
    }
    fn send_many(&self, messages: &[&[u8]]) -> Result<usize, SendError> {
        Self::send_many(self, messages)
    }
    fn take_over_reads(&self) -> Option<RawFd> {
        Self::take_over_reads(self)
    }
    fn receive_now(&self) -> bool {
        Self::receive_now(self)
    }
    fn try_recv(&self) -> Received {
        Self::try_recv(self)
    }
    fn try_recv_many(&self, max: usize) -> Received<Vec<Vec<u8>>> {
        Self::try_recv_many(self, max)
    }
    fn close(&self) {
        Self::close(self);
    }
    fn stats(&self) -> DriverStats {
        Self::stats(self)
    }
    fn inspect(&self, f: &mut dyn FnMut(Option<&Engine>)) {
        self.with_engine(f);
    }
    fn local_address(&self) -> SocketAddr {
        Self::local_address(self)
    }
    fn remote_address(&self) -> SocketAddr {
        Self::remote_address(self)
    }
}
