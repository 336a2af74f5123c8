//! Runs engines over a real UDP socket on tokio.
//!
//! One task per socket owns the receive side and the timers of every peer on that socket
//! (today one peer; datagrams are routed by source address, so more can share a socket
//! later). Application threads call `send`/`try_recv` directly: an encrypted message goes
//! out on the caller's thread when the socket is writable, and a queued message is taken
//! without a thread hop. The task tells the application about changes through [`Notify`],
//! once per batch of datagrams.

mod batch_io;
mod endpoint;
mod link;
mod socket;
#[cfg(test)]
mod stall_tests;
mod stats;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

use batch_io::Sock;
pub use endpoint::{Accepted, EndpointConnection, EndpointDriver};
pub use link::Link;
pub use socket::{take_fd, udp_socket_from_fd};
#[cfg(test)]
pub(crate) use stats::assert_readme_table;
pub use stats::{DriverStats, StatField, StatValue, STAT_FIELDS};

use crate::engine::{CloseReason, Engine, Event, HandshakeFailure, SendError, State};

/// Datagrams handled per wake-up before the application is notified (or the reading thread
/// gives others a turn); one read may carry more, when GRO joined them.
const RECV_BATCH: usize = 64;
/// Datagrams held while the socket is not writable before `send` asks the caller to wait.
const OUTBOX_LIMIT: usize = 256;
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

struct Inner {
    engine: Engine,
    /// Taken away on close, so the descriptor is released as soon as the task lets go.
    socket: Option<Sock>,
    progress: Progress,
    inbox: VecDeque<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
    start_requested: bool,
    stopped: bool,
    /// The application's thread reads the socket itself (see `take_over_reads`).
    caller_reads: bool,
    /// The task waits for the socket to become writable (it saw datagrams waiting when it
    /// last looked); otherwise a flush that leaves some behind must wake it.
    watching_writable: bool,
    /// A sender was told to wait for outbox room (`Busy`, or `send_many` took fewer).
    sender_waiting: bool,
    stats: DriverStats,
    /// Flushes still to be refused as if the socket were full (tests only).
    #[cfg(test)]
    refuse_flushes: usize,
}

/// One peer: its engine, queues and the way to wake its application.
struct Peer {
    inner: Mutex<Inner>,
    destination: SocketAddr,
    connected_socket: bool,
    inbox_limit: usize,
    notifier: Mutex<Option<Arc<dyn Notify>>>,
    wake_task: tokio::sync::Notify,
}

/// A DTLS connection to one peer, driven on the shared runtime.
pub struct Connection {
    peer: Arc<Peer>,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Connection {
    /// Takes over `socket` for a connection to `remote`, run by `engine`. Datagrams are
    /// read (and kept by the engine) from now on; the handshake waits for `start_handshake`.
    pub fn spawn(
        socket: std::net::UdpSocket,
        remote: SocketAddr,
        engine: Engine,
        inbox_limit: usize,
    ) -> io::Result<Self> {
        let local = socket::bound_address(&socket)?;
        let destination = socket::destination_for(local, remote)?;
        let connected_socket = match socket.peer_addr() {
            // A connected socket can talk to no one else: a different peer would only time out.
            Ok(connected) if !socket::same_peer(connected, destination) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the socket is connected to {connected}, not to the remote address {remote}"),
                ))
            }
            Ok(_) => true,
            Err(_) => false,
        };
        socket.set_nonblocking(true)?;
        batch_io::enable_gro(&socket);
        let socket = {
            let _guard = runtime().enter();
            Arc::new(UdpSocket::from_std(socket)?)
        };
        let peer = Arc::new(Peer {
            inner: Mutex::new(Inner {
                engine,
                socket: Some(Sock::Registered(socket.clone())),
                progress: Progress::Pending,
                inbox: VecDeque::new(),
                outbox: VecDeque::new(),
                start_requested: false,
                stopped: false,
                caller_reads: false,
                watching_writable: false,
                sender_waiting: false,
                stats: DriverStats::default(),
                #[cfg(test)]
                refuse_flushes: 0,
            }),
            destination,
            connected_socket,
            inbox_limit: inbox_limit.max(1),
            notifier: Mutex::new(None),
            wake_task: tokio::sync::Notify::new(),
        });
        runtime().spawn(run(socket, peer.clone()));
        Ok(Self { peer, local, remote })
    }

    /// Sets who is told about changes; notifies at once if anything is already waiting.
    pub fn set_notifier(&self, notifier: Arc<dyn Notify>) {
        *lock(&self.peer.notifier) = Some(notifier.clone());
        notifier.notify();
    }

    /// Starts the handshake (idempotent); its timeout counts from now. The first flight goes
    /// out on the caller's thread, without waiting for the I/O thread to wake up (that wake-up
    /// would lie on the handshake's critical path); the task is then told to arm the timer.
    pub fn start_handshake(&self) {
        let mut inner = lock(&self.peer.inner);
        inner.start_requested = true;
        let changed = inner.engine.state() == State::Idle && {
            inner.engine.start(Instant::now());
            self.peer.pump(&mut inner)
        };
        drop(inner);
        self.peer.wake_task.notify_one();
        if changed {
            self.peer.notify();
        }
    }

    /// Where the handshake stands.
    pub fn progress(&self) -> Progress {
        lock(&self.peer.inner).progress.clone()
    }

    /// Where the connection is in its life, as users see it.
    pub fn phase(&self) -> Phase {
        let inner = lock(&self.peer.inner);
        match (&inner.progress, inner.engine.state()) {
            (Progress::Established, _) => Phase::Established,
            (Progress::Closed(_) | Progress::Failed(HandshakeFailure::Closed), _) => Phase::Closed,
            (Progress::Failed(_), _) => Phase::Failed,
            (Progress::Pending, State::Closed | State::Failed) => Phase::Closed,
            (Progress::Pending, State::Idle) if !inner.start_requested => Phase::New,
            (Progress::Pending, _) => Phase::Handshaking,
        }
    }

    /// Encrypts and sends one message without waiting.
    pub fn send(&self, message: &[u8]) -> Result<Sent, SendError> {
        let mut inner = lock(&self.peer.inner);
        // Only a message the engine would take is asked to wait; misuse is reported by it.
        if inner.outbox.len() >= OUTBOX_LIMIT && inner.engine.state() == State::Established {
            inner.sender_waiting = true;
            return Ok(Sent::Busy);
        }
        inner.engine.send(message)?;
        self.peer.transmit(&mut inner);
        Ok(Sent::Done)
    }

    /// Encrypts and sends `messages` in order under one lock, with one flush per
    /// [`SEND_BATCH`] datagrams. Returns how many were taken: fewer than all when the socket
    /// backs up (wait and retry the rest) or when a later message is refused (the retry
    /// reports the error). An error is returned only if the first message is refused.
    pub fn send_many<M: AsRef<[u8]>>(&self, messages: &[M]) -> Result<usize, SendError> {
        let mut inner = lock(&self.peer.inner);
        for (taken, message) in messages.iter().enumerate() {
            if inner.outbox.len() >= SEND_BATCH {
                self.peer.flush(&mut inner);
            }
            if inner.outbox.len() >= OUTBOX_LIMIT && inner.engine.state() == State::Established {
                self.peer.flush(&mut inner);
                inner.sender_waiting = inner.outbox.len() >= OUTBOX_LIMIT;
                return Ok(taken);
            }
            if let Err(e) = inner.engine.send(message.as_ref()) {
                self.peer.transmit(&mut inner);
                return if taken == 0 { Err(e) } else { Ok(taken) };
            }
            self.peer.collect(&mut inner);
        }
        self.peer.flush(&mut inner);
        Ok(messages.len())
    }

    /// From now on the caller reads the socket, with `receive_now` whenever it is readable,
    /// and the driver thread stops reading it: a datagram is then handled on the thread that
    /// wants it, with no wake-up of, or hand-over from, another thread. Returns the
    /// descriptor to watch, or None once the connection is closed.
    pub fn take_over_reads(&self) -> Option<RawFd> {
        let mut inner = lock(&self.peer.inner);
        let fd = inner.socket.as_ref()?.fd();
        inner.caller_reads = true;
        drop(inner);
        self.peer.wake_task.notify_one();
        Some(fd)
    }

    /// Reads and handles what the socket holds (up to a bounded batch) on the caller's
    /// thread; true if the application should look again (messages or state changed).
    pub fn receive_now(&self) -> bool {
        let mut inner = lock(&self.peer.inner);
        match inner.socket.clone() {
            Some(socket) => self.peer.receive(&mut inner, &socket),
            None => false,
        }
    }

    /// Takes the next received message, if one is queued.
    pub fn try_recv(&self) -> Received {
        self.take(VecDeque::pop_front)
    }

    /// Takes up to `max` queued messages (at least one), oldest first.
    pub fn try_recv_many(&self, max: usize) -> Received<Vec<Vec<u8>>> {
        self.take(|inbox| (!inbox.is_empty()).then(|| inbox.drain(..max.clamp(1, inbox.len())).collect()))
    }

    fn take<T>(&self, pop: impl FnOnce(&mut VecDeque<Vec<u8>>) -> Option<T>) -> Received<T> {
        let mut inner = lock(&self.peer.inner);
        if let Some(taken) = pop(&mut inner.inbox) {
            return Received::Message(taken);
        }
        match &inner.progress {
            Progress::Pending => Received::NotEstablished,
            Progress::Established => Received::Empty,
            ended => Received::Ended(ended.clone()),
        }
    }

    /// Sends close_notify (or abandons the handshake) and stops the driver for this peer.
    /// Messages already received stay readable. Idempotent.
    pub fn close(&self) {
        {
            let mut inner = lock(&self.peer.inner);
            inner.engine.close();
            self.peer.pump(&mut inner);
            // Closed before the I/O thread started the engine: it had no handshake to fail,
            // but a pending handshake() must still learn that it is over.
            if inner.progress == Progress::Pending {
                inner.progress = Progress::Failed(HandshakeFailure::Closed);
            }
            inner.stopped = true;
            inner.socket = None;
        }
        self.peer.wake_task.notify_one();
    }

    /// Counters so far.
    pub fn stats(&self) -> DriverStats {
        let inner = lock(&self.peer.inner);
        DriverStats {
            engine: inner.engine.stats(),
            ..inner.stats.clone()
        }
    }

    /// Reads engine properties under the lock.
    pub fn with_engine<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&lock(&self.peer.inner).engine)
    }

    /// The socket's local address.
    pub fn local_address(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address as given.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropped without close(): stop reading and free the socket, sending nothing.
        let mut inner = lock(&self.peer.inner);
        inner.stopped = true;
        inner.socket = None;
        drop(inner);
        self.peer.wake_task.notify_one();
    }
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

impl Peer {
    /// Sends what the engine produced, keeping order behind anything already waiting.
    fn transmit(&self, inner: &mut Inner) {
        self.collect(inner);
        self.flush(inner);
    }

    /// Queues what the engine produced behind anything already waiting, without sending.
    fn collect(&self, inner: &mut Inner) {
        while let Some(datagram) = inner.engine.poll_transmit() {
            inner.outbox.push_back(datagram);
        }
    }

    /// Sends what waits, until the socket would block. Whatever is left is sent by the task
    /// when the socket is writable again: it is woken here if it is not already watching,
    /// or the datagrams would wait for an unrelated event (forever on an idle connection,
    /// with a sender waiting for outbox room).
    fn flush(&self, inner: &mut Inner) {
        #[cfg(test)]
        if inner.refuse_flushes > 0 && !inner.outbox.is_empty() {
            inner.refuse_flushes -= 1;
            self.wake_if_unwatched(inner);
            return;
        }
        let Inner {
            socket, outbox, stats, ..
        } = inner;
        let Some(socket) = socket else {
            outbox.clear();
            return;
        };
        if outbox.is_empty() {
            return;
        }
        let destination = (!self.connected_socket).then_some(self.destination);
        // A datagram that fails is lost like loss on the wire: DTLS retransmits handshakes,
        // and messages are datagrams.
        let done = batch_io::send_queue(socket, outbox, destination, false, &mut stats.send_errors);
        outbox.drain(..done);
        self.wake_if_unwatched(inner);
        // Whichever thread made the room (the task, or an application thread sending or
        // reading), the sender waiting for it must hear of it.
        if inner.sender_waiting && inner.outbox.len() < OUTBOX_LIMIT {
            inner.sender_waiting = false;
            self.notify();
        }
    }

    fn wake_if_unwatched(&self, inner: &Inner) {
        if !inner.outbox.is_empty() && !inner.watching_writable {
            self.wake_task.notify_one();
        }
    }

    /// Reads up to `RECV_BATCH` datagrams and feeds them to the engine, in the order the
    /// socket delivered them. Runs under the lock, so reads by two threads never interleave
    /// (which could reorder messages). True if the application should be woken.
    fn receive(&self, inner: &mut Inner, socket: &Sock) -> bool {
        let now = Instant::now();
        let deadline = inner.engine.poll_timeout();
        let mut changed = false;
        let mut read = 0;
        batch_io::with_recv_batch(|batch| {
            while read < RECV_BATCH {
                let n = match batch.recv(socket) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface here on some systems; UDP carries on.
                    Err(_) => {
                        read += 1;
                        continue;
                    }
                };
                for i in 0..n {
                    match batch.slot(i) {
                        (datagrams, Some(from)) if socket::same_peer(from, self.destination) => {
                            for datagram in datagrams {
                                read += 1;
                                inner.engine.handle_datagram(now, datagram);
                                changed |= self.pump(inner);
                            }
                        }
                        (datagrams, _) => {
                            let count = datagrams.count();
                            read += count;
                            inner.stats.dropped_wrong_source += count as u64;
                        }
                    }
                }
                // A short batch means the socket is (almost surely) empty: skip the read that
                // would only say so, one system call per wake-up.
                if n < batch_io::BATCH && socket.may_stop_short() {
                    break;
                }
            }
        });
        // A datagram read on the application's thread can give the engine a timer (a new
        // handshake from a restarted peer); the task must learn of it to run it.
        if inner.engine.poll_timeout() != deadline {
            self.wake_task.notify_one();
        }
        changed
    }

    /// Sends what the engine produced and takes in its events; true if the application
    /// should be woken.
    fn pump(&self, inner: &mut Inner) -> bool {
        self.transmit(inner);
        self.absorb_events(inner)
    }

    /// Moves engine events into what the application reads; true if it should be woken.
    fn absorb_events(&self, inner: &mut Inner) -> bool {
        let mut changed = false;
        while let Some(event) = inner.engine.poll_event() {
            changed = true;
            match event {
                Event::Connected => inner.progress = Progress::Established,
                Event::HandshakeFailed(failure) => inner.progress = Progress::Failed(failure),
                Event::Closed(reason) => inner.progress = Progress::Closed(reason),
                Event::Message(message) if inner.inbox.len() < self.inbox_limit => inner.inbox.push_back(message),
                Event::Message(_) => inner.stats.dropped_queue_full += 1,
            }
        }
        changed
    }

    /// Tells the application. May run with `inner` locked (the lock order is inner, then
    /// notifier; a notifier never calls back into the connection).
    fn notify(&self) {
        if let Some(n) = lock(&self.notifier).as_ref() {
            n.notify();
        }
    }
}

async fn run(socket: Arc<UdpSocket>, peer: Arc<Peer>) {
    let mut registered = Some(socket);
    loop {
        let (deadline, want_read, blocked) = {
            let mut inner = lock(&peer.inner);
            if inner.stopped {
                break;
            }
            // A failed handshake is final: once its alert is out, let go of the socket, or this
            // task would keep taking datagrams meant for a new connection on the same socket.
            if matches!(inner.progress, Progress::Failed(_)) && inner.outbox.is_empty() {
                inner.stopped = true;
                inner.socket = None;
                break;
            }
            if inner.caller_reads && registered.is_some() {
                registered = None;
                hand_over(&mut inner.socket);
            }
            let blocked = (!inner.outbox.is_empty()).then(|| inner.socket.clone()).flatten();
            inner.watching_writable = blocked.is_some();
            (inner.engine.poll_timeout(), registered.is_some(), blocked)
        };
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let writable = async {
            match &blocked {
                Some(socket) => socket.writable().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            readable = async { registered.as_ref().expect("want_read").readable().await }, if want_read => {
                if readable.is_ok() {
                    let mut inner = lock(&peer.inner);
                    // The caller may have taken over reads while this task waited.
                    let changed = !inner.caller_reads
                        && inner.socket.clone().is_some_and(|socket| peer.receive(&mut inner, &socket));
                    drop(inner);
                    if changed {
                        peer.notify();
                    }
                }
            }
            () = timer => {
                let mut inner = lock(&peer.inner);
                let retransmissions = inner.engine.stats().retransmissions;
                inner.engine.handle_timeout(Instant::now());
                // A retransmission is news too: the application logs it.
                let changed = peer.pump(&mut inner) | (inner.engine.stats().retransmissions != retransmissions);
                drop(inner);
                if changed {
                    peer.notify();
                }
            }
            () = peer.wake_task.notified() => {
                let mut inner = lock(&peer.inner);
                if inner.start_requested && inner.engine.state() == State::Idle {
                    inner.engine.start(Instant::now());
                }
                let changed = peer.pump(&mut inner);
                drop(inner);
                if changed {
                    peer.notify();
                }
            }
            writable = writable, if blocked.is_some() => {
                if writable.is_ok() {
                    let mut inner = lock(&peer.inner);
                    peer.flush(&mut inner);
                }
                // Senders waiting for outbox room may go on.
                peer.notify();
            }
        }
    }
    peer.notify();
}
