//! Runs a sans-IO [`Endpoint`] over one UDP socket on tokio: many peers, one socket.
//!
//! One task per endpoint reads the socket in batches (each datagram with its source), feeds
//! the endpoint, runs its timers and sends what it produced, each datagram to its own
//! destination. Events go to per-connection queues (state, and an inbox bounded like a
//! standalone connection's) and to the accept queue; the application's own datagrams wait in
//! the endpoint. Application calls (send, receive, close) lock the endpoint and act on the
//! caller's thread, as [`super::Connection`]'s do: a message is encrypted and flushed to the
//! socket without a thread hop. Whoever waits is told through [`Notify`]: the endpoint's
//! notifier for the accept queue, its datagrams and its close; each connection's for its own.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::batch_io::{self, Sock};
use super::{lock, runtime, socket, DriverStats, Notify, Phase, Progress, Received, Sent, RECV_BATCH, SEND_BATCH};
use crate::config::Role;
use crate::endpoint::{ConnectError, ConnectionId, DatagramError, Endpoint, EndpointEvent, EndpointStats, Transmit};
use crate::engine::{Engine, Event, HandshakeFailure, SendError};

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;

/// Datagrams (all peers together) held while the socket is not writable before an
/// application send is asked to wait.
pub(super) const OUTBOX_LIMIT: usize = 1024;
/// Datagrams the endpoint itself may add beyond that (handshake flights, alerts); past it they
/// are dropped like loss on the wire, so a blocked socket cannot grow memory without bound.
const OUTBOX_HARD_LIMIT: usize = 4 * OUTBOX_LIMIT;
/// How long a closing endpoint waits for a blocked socket to take its close_notify alerts.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// One connection as its application handle sees it.
struct Conn {
    progress: Progress,
    inbox: VecDeque<Vec<u8>>,
    dropped_queue_full: u64,
    notifier: Option<Arc<dyn Notify>>,
    /// Told to wait for outbox room.
    sender_waiting: bool,
}

impl Conn {
    fn new(progress: Progress) -> Self {
        Self {
            progress,
            inbox: VecDeque::new(),
            dropped_queue_full: 0,
            notifier: None,
            sender_waiting: false,
        }
    }

    fn notify(&self) {
        if let Some(n) = &self.notifier {
            n.notify();
        }
    }
}

struct Inner {
    endpoint: Endpoint,
    /// Taken away once the task ends, releasing the descriptor.
    socket: Option<Sock>,
    outbox: VecDeque<Transmit>,
    /// Connections the application holds or will be handed (accepted ones not yet taken).
    conns: HashMap<ConnectionId, Conn>,
    /// Established incoming connections announced and not yet taken by `try_accept`.
    incoming: VecDeque<ConnectionId>,
    notifier: Option<Arc<dyn Notify>>,
    /// The endpoint's own handle was dropped: the task stops once no connection is held.
    handle_dropped: bool,
    /// The task must let go of the socket.
    stopped: bool,
    /// The task waits for the socket to become writable.
    watching_writable: bool,
    /// `send_datagram` was told to wait for outbox room.
    sender_waiting: bool,
    /// Connections told to wait for outbox room (each once), to wake without visiting all.
    waiting_senders: Vec<ConnectionId>,
    /// The application's datagrams counted when the application was last told of them.
    app_datagrams_seen: u64,
    send_errors: u64,
    /// Flushes still to be refused as if the socket were full (tests only).
    #[cfg(test)]
    refuse_flushes: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    local: SocketAddr,
    inbox_limit: usize,
    wake_task: tokio::sync::Notify,
}

/// An [`Endpoint`] driven on the shared runtime; dropping it keeps the connections taken from
/// it working (the socket is released when the last of them goes).
pub struct EndpointDriver {
    shared: Arc<Shared>,
}

/// One peer of an endpoint. Dropping it releases the peer's slot (closing it if live).
pub struct EndpointConnection {
    shared: Arc<Shared>,
    id: ConnectionId,
}

/// What `try_accept` found.
pub enum Accepted {
    /// The next verified incoming peer.
    Connection(EndpointConnection),
    /// None yet; wait for a notification.
    Empty,
    /// The endpoint is closed.
    Closed,
}

impl EndpointDriver {
    /// Takes over `socket` (bound, not connected) for `endpoint`; `inbox_limit` bounds each
    /// connection's queue of received messages.
    pub fn spawn(socket: std::net::UdpSocket, endpoint: Endpoint, inbox_limit: usize) -> io::Result<Self> {
        let local = socket::bound_address(&socket)?;
        if let Ok(peer) = socket.peer_addr() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an endpoint's socket must not be connected (it is connected to {peer})"),
            ));
        }
        socket.set_nonblocking(true)?;
        batch_io::enable_gro(&socket);
        let socket = {
            let _guard = runtime().enter();
            Arc::new(UdpSocket::from_std(socket)?)
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                endpoint,
                socket: Some(Sock::Registered(socket.clone())),
                outbox: VecDeque::new(),
                conns: HashMap::new(),
                incoming: VecDeque::new(),
                notifier: None,
                handle_dropped: false,
                stopped: false,
                watching_writable: false,
                sender_waiting: false,
                waiting_senders: Vec::new(),
                app_datagrams_seen: 0,
                send_errors: 0,
                #[cfg(test)]
                refuse_flushes: 0,
            }),
            local,
            inbox_limit: inbox_limit.max(1),
            wake_task: tokio::sync::Notify::new(),
        });
        runtime().spawn(run(socket, shared.clone()));
        Ok(Self { shared })
    }

    /// Sets who is told about incoming connections, datagrams and the close.
    pub fn set_notifier(&self, notifier: Arc<dyn Notify>) {
        lock(&self.shared.inner).notifier = Some(notifier.clone());
        notifier.notify();
    }

    /// The address to use for `remote` on this socket (an IPv4 peer on an IPv6 socket is
    /// reached through its mapped form); an error for a family the socket cannot reach.
    pub fn destination(&self, remote: SocketAddr) -> io::Result<SocketAddr> {
        socket::destination_for(self.shared.local, remote)
    }

    /// Starts a handshake with `destination` (see [`Self::destination`]).
    pub fn connect(
        &self,
        destination: SocketAddr,
        role: Role,
        expected_node_id: Option<String>,
    ) -> Result<EndpointConnection, ConnectError> {
        let mut inner = lock(&self.shared.inner);
        if inner.stopped {
            return Err(ConnectError::Closed);
        }
        let id = inner
            .endpoint
            .connect(Instant::now(), destination, role, expected_node_id)?;
        // A peer that dialled us first may be what this dial claimed (see `Endpoint::connect`):
        // it is no longer for accept(), and if established it is ready already.
        inner.incoming.retain(|queued| *queued != id);
        inner.conns.entry(id).or_insert_with(|| Conn::new(Progress::Pending));
        self.shared.pump(&mut inner);
        drop(inner);
        // The new handshake has a retransmission timer the task must arm.
        self.shared.wake_task.notify_one();
        Ok(EndpointConnection {
            shared: self.shared.clone(),
            id,
        })
    }

    /// The next established incoming connection.
    pub fn try_accept(&self) -> Accepted {
        let mut inner = lock(&self.shared.inner);
        match inner.incoming.pop_front() {
            Some(id) => {
                inner.endpoint.accepted(id);
                Accepted::Connection(EndpointConnection {
                    shared: self.shared.clone(),
                    id,
                })
            }
            None if inner.stopped || inner.endpoint.is_closed() => Accepted::Closed,
            None => Accepted::Empty,
        }
    }

    /// The next datagram that was not DTLS, with its source; `Err(Closed)` once closed.
    pub fn try_recv_datagram(&self) -> Result<Option<(Vec<u8>, SocketAddr)>, DatagramError> {
        let mut inner = lock(&self.shared.inner);
        if inner.endpoint.is_closed() {
            return Err(DatagramError::Closed);
        }
        Ok(inner.endpoint.poll_datagram().map(|(from, data)| (data, from)))
    }

    /// Sends a plaintext datagram to `destination` (see [`Self::destination`]).
    pub fn send_datagram(&self, destination: SocketAddr, contents: &[u8]) -> Result<Sent, DatagramError> {
        let mut inner = lock(&self.shared.inner);
        if inner.outbox.len() >= OUTBOX_LIMIT && !inner.endpoint.is_closed() {
            inner.sender_waiting = true;
            return Ok(Sent::Busy);
        }
        inner.endpoint.send_datagram(destination, contents)?;
        self.shared.pump(&mut inner);
        Ok(Sent::Done)
    }

    /// Closes every connection (close_notify to established peers) and stops reading; the
    /// socket is released once the alerts are out. Idempotent.
    pub fn close(&self) {
        let mut inner = lock(&self.shared.inner);
        self.shared.shut(&mut inner);
        drop(inner);
        self.shared.wake_task.notify_one();
    }

    /// Counters so far.
    pub fn stats(&self) -> EndpointStats {
        let inner = lock(&self.shared.inner);
        EndpointStats {
            send_errors: inner.send_errors,
            ..inner.endpoint.stats()
        }
    }

    /// Connections handshaking or established now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.inner).endpoint.stats().connections as usize
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.inner).endpoint.is_closed()
    }

    /// The socket's local address.
    pub fn local_address(&self) -> SocketAddr {
        self.shared.local
    }
}

impl Drop for EndpointDriver {
    fn drop(&mut self) {
        let mut inner = lock(&self.shared.inner);
        inner.handle_dropped = true;
        // Nobody can take these any more.
        for id in std::mem::take(&mut inner.incoming) {
            inner.conns.remove(&id);
            inner.endpoint.release(id);
        }
        self.shared.stop_if_unused(&mut inner);
        drop(inner);
        self.shared.wake_task.notify_one();
    }
}

impl Inner {
    /// Connection `id`'s sender must hear when the outbox has room.
    fn wait_for_room(&mut self, id: ConnectionId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if !std::mem::replace(&mut conn.sender_waiting, true) {
                self.waiting_senders.push(id);
            }
        }
    }
}

impl EndpointConnection {
    fn with<R>(&self, f: impl FnOnce(&mut Inner, &Shared) -> R) -> R {
        f(&mut lock(&self.shared.inner), &self.shared)
    }

    /// Sets who is told about this connection's changes; notifies at once.
    pub fn set_notifier(&self, notifier: Arc<dyn Notify>) {
        self.with(|inner, _| {
            if let Some(conn) = inner.conns.get_mut(&self.id) {
                conn.notifier = Some(notifier.clone());
            }
        });
        notifier.notify();
    }

    /// Where the handshake stands.
    pub fn progress(&self) -> Progress {
        self.with(|inner, _| inner.conns.get(&self.id).map(|c| c.progress.clone()))
            .unwrap_or(Progress::Failed(HandshakeFailure::Closed))
    }

    /// Where the connection is in its life (the endpoint started its handshake at once).
    pub fn phase(&self) -> Phase {
        match self.progress() {
            Progress::Pending => Phase::Handshaking,
            Progress::Established => Phase::Established,
            Progress::Closed(_) | Progress::Failed(HandshakeFailure::Closed) => Phase::Closed,
            Progress::Failed(_) => Phase::Failed,
        }
    }

    /// Encrypts and sends one message without waiting.
    pub fn send(&self, message: &[u8]) -> Result<Sent, SendError> {
        self.with(|inner, shared| {
            // Only a message the engine would take is asked to wait; misuse is reported by it.
            if inner.outbox.len() >= OUTBOX_LIMIT {
                let established = inner
                    .conns
                    .get(&self.id)
                    .is_some_and(|c| c.progress == Progress::Established);
                if established {
                    inner.wait_for_room(self.id);
                    return Ok(Sent::Busy);
                }
            }
            inner.endpoint.send(self.id, message)?;
            shared.pump(inner);
            Ok(Sent::Done)
        })
    }

    /// Sends `messages` in order under one lock, flushing every [`SEND_BATCH`] datagrams;
    /// how many were taken (as [`super::Connection::send_many`]).
    pub fn send_many(&self, messages: &[&[u8]]) -> Result<usize, SendError> {
        self.with(|inner, shared| {
            for (taken, message) in messages.iter().enumerate() {
                if inner.outbox.len() >= SEND_BATCH {
                    shared.flush(inner);
                }
                if inner.outbox.len() >= OUTBOX_LIMIT {
                    inner.wait_for_room(self.id);
                    return Ok(taken);
                }
                if let Err(e) = inner.endpoint.send(self.id, message) {
                    shared.pump(inner);
                    return if taken == 0 { Err(e) } else { Ok(taken) };
                }
                shared.collect(inner);
            }
            shared.pump(inner);
            Ok(messages.len())
        })
    }

    /// Takes the next received message.
    pub fn try_recv(&self) -> Received {
        self.take(VecDeque::pop_front)
    }

    /// Takes up to `max` received messages (at least one), oldest first.
    pub fn try_recv_many(&self, max: usize) -> Received<Vec<Vec<u8>>> {
        self.take(|inbox| (!inbox.is_empty()).then(|| inbox.drain(..max.clamp(1, inbox.len())).collect()))
    }

    fn take<T>(&self, pop: impl FnOnce(&mut VecDeque<Vec<u8>>) -> Option<T>) -> Received<T> {
        self.with(|inner, _| {
            let Some(conn) = inner.conns.get_mut(&self.id) else {
                return Received::Ended(Progress::Failed(HandshakeFailure::Closed));
            };
            if let Some(taken) = pop(&mut conn.inbox) {
                return Received::Message(taken);
            }
            match &conn.progress {
                Progress::Pending => Received::NotEstablished,
                Progress::Established => Received::Empty,
                ended => Received::Ended(ended.clone()),
            }
        })
    }

    /// Ends this peer's session (close_notify if established); the others go on. Idempotent.
    pub fn close(&self) {
        self.with(|inner, shared| {
            inner.endpoint.close_connection(self.id);
            shared.pump(inner);
        });
        self.shared.wake_task.notify_one();
    }

    /// Counters so far.
    pub fn stats(&self) -> DriverStats {
        self.with(|inner, _| DriverStats {
            engine: inner
                .endpoint
                .connection(self.id)
                .map(Engine::stats)
                .unwrap_or_default(),
            dropped_queue_full: inner.conns.get(&self.id).map_or(0, |c| c.dropped_queue_full),
            ..DriverStats::default()
        })
    }

    /// Runs `f` on the engine under the lock (None once released).
    pub fn with_engine(&self, f: &mut dyn FnMut(Option<&Engine>)) {
        self.with(|inner, _| f(inner.endpoint.connection(self.id)));
    }

    /// The socket's local address.
    pub fn local_address(&self) -> SocketAddr {
        self.shared.local
    }

    /// Where the peer is now (IPv4-mapped addresses shown as IPv4).
    pub fn remote_address(&self) -> SocketAddr {
        self.with(|inner, _| inner.endpoint.remote(self.id))
            .map_or(self.shared.local, |a| SocketAddr::new(a.ip().to_canonical(), a.port()))
    }
}

impl Drop for EndpointConnection {
    fn drop(&mut self) {
        self.with(|inner, shared| {
            inner.endpoint.release(self.id);
            inner.conns.remove(&self.id);
            shared.pump(inner);
            shared.stop_if_unused(inner);
        });
        self.shared.wake_task.notify_one();
    }
}

impl Shared {
    /// Sends what the endpoint produced and routes its events.
    fn pump(&self, inner: &mut Inner) {
        self.collect(inner);
        self.flush(inner);
    }

    /// Moves the endpoint's datagrams into the outbox and its events into the connections'
    /// queues, notifying whoever waits on them.
    fn collect(&self, inner: &mut Inner) {
        while let Some(transmit) = inner.endpoint.poll_transmit() {
            if inner.outbox.len() < OUTBOX_HARD_LIMIT {
                inner.outbox.push_back(transmit);
            } else {
                inner.send_errors += 1;
            }
        }
        while let Some(event) = inner.endpoint.poll_event() {
            match event {
                EndpointEvent::Incoming { id, .. } => {
                    inner.conns.insert(id, Conn::new(Progress::Established));
                    inner.incoming.push_back(id);
                    notify(inner.notifier.as_ref());
                }
                EndpointEvent::Connection { id, event } => {
                    // Released by the application meanwhile: nobody reads it.
                    let Some(conn) = inner.conns.get_mut(&id) else {
                        continue;
                    };
                    match event {
                        Event::Connected => conn.progress = Progress::Established,
                        Event::HandshakeFailed(failure) => conn.progress = Progress::Failed(failure),
                        Event::Closed(reason) => conn.progress = Progress::Closed(reason),
                        Event::Message(message) if conn.inbox.len() < self.inbox_limit => {
                            conn.inbox.push_back(message);
                        }
                        Event::Message(_) => conn.dropped_queue_full += 1,
                    }
                    conn.notify();
                }
            }
        }
        let arrived = inner.endpoint.stats().app_datagrams_in;
        if arrived != inner.app_datagrams_seen {
            inner.app_datagrams_seen = arrived;
            notify(inner.notifier.as_ref());
        }
    }

    /// Sends what waits, until the socket would block; the task is woken to send the rest
    /// when it is writable, and senders told to wait hear once there is room.
    fn flush(&self, inner: &mut Inner) {
        #[cfg(test)]
        if inner.refuse_flushes > 0 && !inner.outbox.is_empty() {
            inner.refuse_flushes -= 1;
            self.wake_if_unwatched(inner);
            return;
        }
        let Some(socket) = &inner.socket else {
            inner.outbox.clear();
            return;
        };
        if inner.outbox.is_empty() {
            return;
        }
        // A datagram that fails is lost like loss on the wire.
        let done = batch_io::send_queue(socket, &inner.outbox, None, &mut inner.send_errors);
        inner.outbox.drain(..done);
        self.wake_if_unwatched(inner);
        if inner.outbox.len() < OUTBOX_LIMIT {
            if std::mem::take(&mut inner.sender_waiting) {
                notify(inner.notifier.as_ref());
            }
            for id in std::mem::take(&mut inner.waiting_senders) {
                if let Some(conn) = inner.conns.get_mut(&id) {
                    conn.sender_waiting = false;
                    conn.notify();
                }
            }
        }
    }

    /// Whatever a flush left behind is sent by the task when the socket is writable again: it
    /// is woken here if it is not already watching, or the datagrams would wait for an
    /// unrelated event (forever on an idle endpoint, with a sender waiting for room).
    fn wake_if_unwatched(&self, inner: &Inner) {
        if !inner.outbox.is_empty() && !inner.watching_writable {
            self.wake_task.notify_one();
        }
    }

    /// Reads up to `RECV_BATCH` datagrams, each handed to the endpoint with its source; true
    /// if it read a full batch (the socket may hold more).
    ///
    /// The endpoint's lock is taken per datagram, not per batch: a handshake step costs up to a
    /// millisecond of CPU, and an application call (accept, send, recv) waiting behind a whole
    /// batch of them would stall the event loop for tens of milliseconds. Each datagram's
    /// events reach their connections at once; the datagrams it produced go out together, once
    /// per system-call batch.
    fn receive(&self, socket: &Sock) -> bool {
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
                let now = Instant::now();
                for i in 0..n {
                    let (datagrams, from) = batch.slot(i);
                    for datagram in datagrams {
                        read += 1;
                        if let Some(from) = from {
                            let mut inner = lock(&self.inner);
                            inner.endpoint.handle(now, from, datagram);
                            self.collect(&mut inner);
                        }
                    }
                }
                self.flush(&mut lock(&self.inner));
            }
        });
        read >= RECV_BATCH
    }

    /// Closes the endpoint and every connection, and tells everyone waiting.
    fn shut(&self, inner: &mut Inner) {
        if inner.stopped && inner.endpoint.is_closed() {
            return;
        }
        inner.endpoint.close();
        // Nobody will take these now.
        for id in std::mem::take(&mut inner.incoming) {
            inner.conns.remove(&id);
            inner.endpoint.release(id);
        }
        self.pump(inner);
        inner.stopped = true;
        notify(inner.notifier.as_ref());
        for conn in inner.conns.values() {
            conn.notify();
        }
    }

    /// Stops once neither the endpoint's handle nor any connection is held.
    fn stop_if_unused(&self, inner: &mut Inner) {
        if inner.handle_dropped && inner.conns.is_empty() {
            self.shut(inner);
        }
    }
}

fn notify(notifier: Option<&Arc<dyn Notify>>) {
    if let Some(n) = notifier {
        n.notify();
    }
}

async fn run(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    loop {
        let (deadline, blocked) = {
            let mut inner = lock(&shared.inner);
            if inner.stopped {
                break;
            }
            let blocked = !inner.outbox.is_empty();
            inner.watching_writable = blocked;
            (inner.endpoint.poll_timeout(), blocked)
        };
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            readable = socket.readable() => {
                let sock = lock(&shared.inner).socket.clone();
                let full = match sock {
                    Some(sock) if readable.is_ok() => shared.receive(&sock),
                    _ => false,
                };
                // A socket that keeps this task busy (a flood, thousands of handshakes) must
                // not starve the other sockets on the one I/O thread.
                if full {
                    tokio::task::yield_now().await;
                }
            }
            () = timer => {
                let mut inner = lock(&shared.inner);
                inner.endpoint.handle_timeout(Instant::now());
                shared.pump(&mut inner);
            }
            () = shared.wake_task.notified() => {
                let mut inner = lock(&shared.inner);
                shared.flush(&mut inner);
            }
            writable = socket.writable(), if blocked => {
                if writable.is_ok() {
                    let mut inner = lock(&shared.inner);
                    shared.flush(&mut inner);
                }
            }
        }
    }
    // Closed: give a blocked socket a moment to take the close_notify alerts, then let go.
    let blocked = !lock(&shared.inner).outbox.is_empty();
    if blocked {
        let _ = tokio::time::timeout(CLOSE_FLUSH, socket.writable()).await;
    }
    let mut inner = lock(&shared.inner);
    shared.flush(&mut inner);
    inner.outbox.clear();
    inner.socket = None;
}
