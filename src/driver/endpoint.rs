//! Runs a sans-IO [`Endpoint`] over one UDP socket on tokio: many peers, one socket.
//!
//! One task per endpoint reads the socket in batches (each datagram with its source), feeds
//! the endpoint, runs its timers and sends what it produced, each datagram to its own
//! destination. Events go to per-connection queues (state, and an inbox bounded like a
//! standalone connection's) and to the accept queue; the application's own datagrams wait in
//! the endpoint. Application calls (send, receive, close) lock the endpoint and act on the
//! caller's thread: a message is encrypted and flushed to the socket without a thread hop. Whoever waits is told through [`Notify`]: the endpoint's
//! notifier for the accept queue, its datagrams and its close; each connection's for its own,
//! once per batch of datagrams.
//!
//! A standalone `DTLSPeerConnection` is an endpoint with one peer ([`EndpointDriver::one_peer`],
//! `EndpointConfig::one_peer`): its socket may be connected, its handshake waits for
//! `start_handshake`, the event loop may take over reading the socket once established
//! (`take_over_reads`, `receive_now`: no thread hop per datagram), and the socket is let go
//! when its handshake fails or it is closed, so a new connection on the socket gets the datagrams.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::batch_io::{self, Sock};
use super::{
    hand_over, lock, runtime, socket, DriverStats, Notify, Phase, Progress, Received, Sent, RECV_BATCH, SEND_BATCH,
};
use crate::config::Role;
use crate::endpoint::{
    ConnectError, ConnectionId, DatagramError, Endpoint, EndpointEvent, EndpointStats, IdMap, Transmit,
};
use crate::engine::{Engine, Event, HandshakeFailure, SendError, State};

#[path = "endpoint_channels.rs"]
mod channels;
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
    /// Has news its application has not been told of (see `Shared::announce`).
    changed: bool,
}

impl Conn {
    fn new(progress: Progress) -> Self {
        Self {
            progress,
            inbox: VecDeque::new(),
            dropped_queue_full: 0,
            notifier: None,
            sender_waiting: false,
            changed: false,
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
    conns: IdMap<Conn>,
    /// Established incoming connections announced and not yet taken by `try_accept`.
    incoming: VecDeque<ConnectionId>,
    notifier: Option<Arc<dyn Notify>>,
    /// The endpoint's own handle was dropped: the task stops once no connection is held.
    handle_dropped: bool,
    /// The task must let go of the socket.
    stopped: bool,
    /// The task waits for the socket to become writable.
    watching_writable: bool,
    /// The application's thread reads the socket itself (one peer; see `take_over_reads`).
    caller_reads: bool,
    /// Connections with news to announce (each once).
    changed: Vec<ConnectionId>,
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
    /// An endpoint with one peer: that peer's address as the application gave it.
    one_peer: Option<SocketAddr>,
    /// The socket is connected (one peer): datagrams go out with no address.
    connected: bool,
    inbox_limit: usize,
    wake_task: tokio::sync::Notify,
}

impl Shared {
    /// Takes over `socket` for `endpoint`; the task is spawned by the caller.
    fn new(
        socket: std::net::UdpSocket,
        endpoint: Endpoint,
        local: SocketAddr,
        inbox_limit: usize,
        one_peer: Option<SocketAddr>,
        connected: bool,
    ) -> io::Result<(Arc<Self>, Arc<UdpSocket>)> {
        socket.set_nonblocking(true)?;
        super::sys::enable_gro(&socket);
        let socket = {
            let _guard = runtime().enter();
            Arc::new(UdpSocket::from_std(socket)?)
        };
        let shared = Arc::new(Self {
            inner: Mutex::new(Inner {
                endpoint,
                socket: Some(Sock::Registered(socket.clone())),
                outbox: VecDeque::new(),
                conns: IdMap::default(),
                incoming: VecDeque::new(),
                notifier: None,
                handle_dropped: false,
                stopped: false,
                watching_writable: false,
                caller_reads: false,
                changed: Vec::new(),
                sender_waiting: false,
                waiting_senders: Vec::new(),
                app_datagrams_seen: 0,
                send_errors: 0,
                #[cfg(test)]
                refuse_flushes: 0,
            }),
            local,
            one_peer,
            connected,
            inbox_limit: inbox_limit.max(1),
            wake_task: tokio::sync::Notify::new(),
        });
        Ok((shared, socket))
    }
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
        let (shared, socket) = Shared::new(socket, endpoint, local, inbox_limit, None, false)?;
        runtime().spawn(run(socket, shared.clone()));
        Ok(Self { shared })
    }

    /// Takes over `socket` (bound; if connected, to `remote`) for `endpoint`, made with
    /// `EndpointConfig::one_peer`, and its one connection, to `remote`: a standalone
    /// connection. Datagrams from the peer are read (and kept by its engine) from now on; the
    /// handshake waits for `start_handshake`. The endpoint ends with that connection.
    pub fn one_peer(
        socket: std::net::UdpSocket,
        mut endpoint: Endpoint,
        remote: SocketAddr,
        role: Role,
        expected_node_id: Option<String>,
        inbox_limit: usize,
    ) -> io::Result<EndpointConnection> {
        debug_assert!(endpoint.config().one_peer);
        let local = socket::bound_address(&socket)?;
        let destination = socket::destination_for(local, remote)?;
        let connected = match socket.peer_addr() {
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
        // Made before the task reads anything: a datagram the peer sent early is its.
        let id = (endpoint.connect_idle(Instant::now(), destination, role, expected_node_id))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let (shared, socket) = Shared::new(socket, endpoint, local, inbox_limit, Some(remote), connected)?;
        {
            let mut inner = lock(&shared.inner);
            inner.conns.insert(id, Conn::new(Progress::Pending));
            // There is no endpoint handle: the endpoint ends with its one connection.
            inner.handle_dropped = true;
        }
        runtime().spawn(run(socket, shared.clone()));
        Ok(EndpointConnection { shared, id })
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

    /// Starts the handshake of a one-peer endpoint's connection (others start at once);
    /// idempotent. The first flight goes out on the caller's thread, without waiting for the
    /// I/O thread to wake up (that wake-up would lie on the handshake's critical path); the
    /// task is then told to arm the timer.
    pub fn start_handshake(&self) {
        self.with(|inner, shared| {
            inner.endpoint.start(Instant::now(), self.id);
            shared.pump(inner);
        });
        self.shared.wake_task.notify_one();
    }

    /// Where the connection is in its life.
    pub fn phase(&self) -> Phase {
        self.with(|inner, _| {
            let progress = inner.conns.get(&self.id).map(|c| &c.progress);
            match (progress, inner.endpoint.connection(self.id).map(Engine::state)) {
                (Some(Progress::Established), _) => Phase::Established,
                (Some(Progress::Closed(_) | Progress::Failed(HandshakeFailure::Closed)) | None, _) => Phase::Closed,
                (Some(Progress::Failed(_)), _) => Phase::Failed,
                (Some(Progress::Pending), Some(State::Closed | State::Failed) | None) => Phase::Closed,
                (Some(Progress::Pending), Some(State::Idle)) => Phase::New,
                (Some(Progress::Pending), _) => Phase::Handshaking,
            }
        })
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

    /// Sends `messages` in order under one lock, flushing every [`SEND_BATCH`] datagrams.
    /// Returns how many were taken: fewer than all when the socket backs up (wait and retry
    /// the rest) or when a later message is refused (the retry reports the error). An error
    /// is returned only if the first message is refused.
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

    /// From now on the caller reads the socket of a one-peer endpoint, with `receive_now`
    /// whenever it is readable, and the driver thread stops reading it: a datagram is then
    /// handled on the thread that wants it, with no wake-up of, or hand-over from, another
    /// thread. Returns the descriptor to watch; None once closed, and for a peer of a shared
    /// endpoint (whose task reads for every peer).
    pub fn take_over_reads(&self) -> Option<super::RawSocket> {
        self.shared.one_peer?;
        if !super::sys::CALLER_READS {
            return None;
        }
        let fd = self.with(|inner, _| {
            let fd = inner.socket.as_ref()?.raw();
            inner.caller_reads = true;
            Some(fd)
        })?;
        self.shared.wake_task.notify_one();
        Some(fd)
    }

    /// Reads and handles what the socket holds (up to a bounded batch) on the caller's
    /// thread; true if the application should look again (messages or state changed).
    pub fn receive_now(&self) -> bool {
        self.with(|inner, shared| {
            let Some(socket) = inner.socket.clone() else {
                return false;
            };
            let deadline = inner.endpoint.poll_timeout();
            // Under the lock: a read by the task cannot interleave with this one.
            let endpoint = &mut inner.endpoint;
            read_batch(
                &socket,
                |now, from, datagram| endpoint.handle(now, from, datagram),
                || {},
            );
            shared.collect(inner);
            shared.flush(inner);
            // The caller looks itself; it need not be woken as well.
            let mine = (inner.conns.get_mut(&self.id)).is_some_and(|c| std::mem::take(&mut c.changed));
            shared.announce(inner);
            // A datagram read here can give the engine a timer (a new handshake from a
            // restarted peer); the task must learn of it to run it.
            if inner.endpoint.poll_timeout() != deadline {
                shared.wake_task.notify_one();
            }
            mine
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

    /// Ends this peer's session (close_notify if established); the others go on. A one-peer
    /// endpoint ends with it and lets go of the socket at once. Messages already received
    /// stay readable. Idempotent.
    pub fn close(&self) {
        self.with(|inner, shared| {
            if shared.one_peer.is_none() {
                inner.endpoint.close_connection(self.id);
                shared.pump(inner);
                return;
            }
            shared.shut(inner);
            inner.socket = None;
            // Closed before the handshake was asked for: it had no handshake to fail, but a
            // pending handshake() must still learn that it is over.
            if let Some(conn) = inner.conns.get_mut(&self.id) {
                if conn.progress == Progress::Pending {
                    conn.progress = Progress::Failed(HandshakeFailure::Closed);
                    conn.notify();
                }
            }
        });
        self.shared.wake_task.notify_one();
    }

    /// Counters so far. A one-peer endpoint's socket is its peer's alone, so datagrams from
    /// other addresses and failed sends are that peer's to count.
    pub fn stats(&self) -> DriverStats {
        self.with(|inner, shared| {
            let own_socket = shared.one_peer.is_some();
            DriverStats {
                engine: (inner.endpoint.connection(self.id))
                    .map(Engine::stats)
                    .unwrap_or_default(),
                dropped_queue_full: inner.conns.get(&self.id).map_or(0, |c| c.dropped_queue_full),
                dropped_wrong_source: if own_socket {
                    inner.endpoint.stats().dropped_unknown_source
                } else {
                    0
                },
                send_errors: if own_socket { inner.send_errors } else { 0 },
            }
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

    /// Where the peer is now (IPv4-mapped addresses shown as IPv4; a one-peer endpoint's as
    /// given).
    pub fn remote_address(&self) -> SocketAddr {
        if let Some(remote) = self.shared.one_peer {
            return remote;
        }
        self.with(|inner, _| inner.endpoint.remote(self.id))
            .map_or(self.shared.local, |a| SocketAddr::new(a.ip().to_canonical(), a.port()))
    }
}

impl Drop for EndpointConnection {
    fn drop(&mut self) {
        self.with(|inner, shared| {
            // A one-peer connection dropped without close(): free the socket, sending nothing.
            if shared.one_peer.is_some() {
                inner.socket = None;
            }
            inner.endpoint.release(self.id);
            inner.conns.remove(&self.id);
            shared.pump(inner);
            shared.stop_if_unused(inner);
        });
        self.shared.wake_task.notify_one();
    }
}

impl Shared {
    /// Sends what the endpoint produced, routes its events and tells whoever waits on them.
    fn pump(&self, inner: &mut Inner) {
        self.collect(inner);
        self.flush(inner);
        self.announce(inner);
    }

    /// Tells each connection with news, once however many events it had.
    fn announce(&self, inner: &mut Inner) {
        for id in std::mem::take(&mut inner.changed) {
            if let Some(conn) = inner.conns.get_mut(&id) {
                if std::mem::take(&mut conn.changed) {
                    conn.notify();
                }
            }
        }
    }

    /// Moves the endpoint's datagrams into the outbox and its events into the connections'
    /// queues, noting which connections have news (`announce` tells them).
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
                    if !std::mem::replace(&mut conn.changed, true) {
                        inner.changed.push(id);
                    }
                }
                EndpointEvent::Channel { id, .. } => {
                    // The application asks the channels what changed.
                    if let Some(conn) = inner.conns.get_mut(&id) {
                        if !std::mem::replace(&mut conn.changed, true) {
                            inner.changed.push(id);
                        }
                    }
                }
            }
        }
        let arrived = inner.endpoint.app_datagrams_in();
        if arrived != inner.app_datagrams_seen {
            inner.app_datagrams_seen = arrived;
            notify(inner.notifier.as_ref());
        }
    }

    /// Takes data-channel packets into the outbox while it is under its limit: SCTP holds
    /// the rest (its congestion window's worth) until there is room.
    fn refill(inner: &mut Inner) {
        while inner.outbox.len() < OUTBOX_LIMIT {
            let Some(transmit) = inner.endpoint.poll_channel_transmit() else {
                break;
            };
            inner.outbox.push_back(transmit);
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
        let Some(socket) = inner.socket.clone() else {
            inner.outbox.clear();
            return;
        };
        // A datagram that fails is lost like loss on the wire. Data channels refill the
        // outbox as it drains (once per flush, not per datagram received: see
        // `Channels::poll_packet`); a few rounds under the lock, then the task carries on.
        for _ in 0..4 {
            Self::refill(inner);
            if inner.outbox.is_empty() {
                break;
            }
            let done = batch_io::send_queue(&socket, &inner.outbox, self.connected, &mut inner.send_errors);
            inner.outbox.drain(..done);
            if !inner.outbox.is_empty() {
                break;
            }
        }
        if inner.outbox.is_empty() && inner.endpoint.has_channel_transmits() {
            self.wake_task.notify_one();
        }
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

    /// The task's read: up to `RECV_BATCH` datagrams, each handed to the endpoint with its
    /// source; true if it read a full batch (the socket may hold more).
    ///
    /// The endpoint's lock is taken per datagram, not per batch: a handshake step costs up to a
    /// millisecond of CPU, and an application call (accept, send, recv) waiting behind a whole
    /// batch of them would stall the event loop for tens of milliseconds. Each datagram's
    /// events reach their connections at once; the datagrams it produced go out together, once
    /// per system-call batch.
    ///
    /// A one-peer endpoint's caller may take over reads at any moment (`take_over_reads`), so
    /// there the task reads under the lock, having checked it still should: two threads'
    /// reads never interleave (which could reorder messages). One peer's handshake steps are
    /// all that can wait behind it.
    fn receive(&self) -> bool {
        if self.one_peer.is_some() {
            let mut inner = lock(&self.inner);
            let Some(socket) = inner.socket.clone().filter(|_| !inner.caller_reads) else {
                return false;
            };
            let endpoint = &mut inner.endpoint;
            let full = read_batch(
                &socket,
                |now, from, datagram| endpoint.handle(now, from, datagram),
                || {},
            );
            self.pump(&mut inner);
            return full;
        }
        let Some(socket) = lock(&self.inner).socket.clone() else {
            return false;
        };
        read_batch(
            &socket,
            |now, from, datagram| {
                let mut inner = lock(&self.inner);
                inner.endpoint.handle(now, from, datagram);
                self.collect(&mut inner);
                self.announce(&mut inner);
            },
            || self.flush(&mut lock(&self.inner)),
        )
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
        for conn in inner.conns.values_mut() {
            conn.changed = false;
            conn.notify();
        }
        inner.changed.clear();
    }

    /// Handshake flights sent again by a one-peer endpoint's connection (0 for a shared
    /// endpoint, whose peers are too many to visit on every timer).
    fn retransmissions(&self, inner: &Inner) -> u64 {
        if self.one_peer.is_none() {
            return 0;
        }
        (inner.conns.keys())
            .filter_map(|id| inner.endpoint.connection(*id))
            .map(|e| e.stats().retransmissions)
            .sum()
    }

    /// Stops once neither the endpoint's handle nor any connection is held.
    fn stop_if_unused(&self, inner: &mut Inner) {
        if inner.handle_dropped && inner.conns.is_empty() {
            self.shut(inner);
        }
    }
}

/// Reads up to `RECV_BATCH` datagrams from `socket`, handing each to `take` with the time of
/// its system call and its source, and calling `batch_done` after each system call's batch;
/// true if it read a full batch (the socket may hold more).
fn read_batch(socket: &Sock, mut take: impl FnMut(Instant, SocketAddr, &[u8]), mut batch_done: impl FnMut()) -> bool {
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
                        take(now, from, datagram);
                    }
                }
            }
            batch_done();
            // A short batch means the socket is (almost surely) empty: skip the read that
            // would only say so, one system call per wake-up.
            if n < batch_io::BATCH && socket.may_stop_short() {
                break;
            }
        }
    });
    read >= RECV_BATCH
}

fn notify(notifier: Option<&Arc<dyn Notify>>) {
    if let Some(n) = notifier {
        n.notify();
    }
}

async fn run(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut registered = Some(socket);
    loop {
        let (deadline, want_read, blocked) = {
            let mut inner = lock(&shared.inner);
            if inner.stopped {
                break;
            }
            // A one-peer endpoint whose handshake failed is over: once its alert is out, let go
            // of the socket, or this task would keep taking datagrams meant for a new
            // connection on the same socket.
            let failed = |c: &Conn| matches!(c.progress, Progress::Failed(_));
            if shared.one_peer.is_some() && inner.outbox.is_empty() && inner.conns.values().all(failed) {
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
            (inner.endpoint.poll_timeout(), registered.is_some(), blocked)
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
                // A socket that keeps this task busy (a flood, thousands of handshakes) must
                // not starve the other sockets on the one I/O thread.
                if readable.is_ok() && shared.receive() {
                    tokio::task::yield_now().await;
                }
            }
            () = timer => {
                let mut inner = lock(&shared.inner);
                let retransmissions = shared.retransmissions(&inner);
                inner.endpoint.handle_timeout(Instant::now());
                shared.pump(&mut inner);
                // A retransmission is news too: the application logs it.
                if shared.retransmissions(&inner) != retransmissions {
                    for conn in inner.conns.values() {
                        conn.notify();
                    }
                }
            }
            () = shared.wake_task.notified() => {
                let mut inner = lock(&shared.inner);
                shared.flush(&mut inner);
            }
            writable = writable, if blocked.is_some() => {
                if writable.is_ok() {
                    let mut inner = lock(&shared.inner);
                    shared.flush(&mut inner);
                }
            }
        }
    }
    // Closed: give a blocked socket a moment to take the close_notify alerts, then let go.
    let blocked = {
        let inner = lock(&shared.inner);
        (!inner.outbox.is_empty()).then(|| inner.socket.clone()).flatten()
    };
    if let Some(socket) = blocked {
        let _ = tokio::time::timeout(CLOSE_FLUSH, socket.writable()).await;
    }
    let mut inner = lock(&shared.inner);
    shared.flush(&mut inner);
    inner.outbox.clear();
    inner.socket = None;
    drop(inner);
    if shared.one_peer.is_some() {
        // Whoever waits learns that the task is gone (a failed handshake let go of the socket).
        let inner = lock(&shared.inner);
        for conn in inner.conns.values() {
            conn.notify();
        }
    }
}
