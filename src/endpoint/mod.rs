//! A sans-IO endpoint: many peers on one UDP socket (quinn-proto's model).
//!
//! The endpoint owns the peer table (one [`Engine`] per remote address), the policy for
//! peers that dial us (cookies, the allow policy, the bounds) and the queue of the
//! application's own datagrams. It knows no socket and reads no clock:
//! `handle(now, from, datagram)` in; `poll_transmit`, `poll_event`, `poll_datagram` and
//! `poll_timeout` out. Each engine knows only its own peer.
//!
//! A datagram is routed by its source address. From an address with a connection it goes to
//! that connection's engine (a restarted peer's new ClientHello included: the engine runs the
//! new handshake beside the session, see `engine::successor`). From an unknown address, a
//! ClientHello may open an incoming connection, within the bounds; anything else that looks
//! like DTLS is dropped and counted. What does not look like DTLS (RFC 7983's first byte; a
//! STUN probe, an application's "PUNCH") is the application's, except our own keepalives.

mod channels;
mod cookie;
mod listen;
mod stats;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use openssl::ssl::SslContext;

pub use cookie::{COOKIE_LEN, COOKIE_ROTATION};
pub use listen::{Hello, Listener};
pub use stats::{EndpointStats, ENDPOINT_STAT_FIELDS};

use crate::channels::{ChannelEvent, Channels};
use crate::config::{Config, ConfigError, Role};
use crate::engine::{
    is_keepalive, looks_like_dtls, Engine, Event, HandshakeFailure, SendError, State, VerificationFailure,
};
use crate::identity::Identity;
use crate::policy;
use crate::trust::{Accept, AllowPolicy, Pin};

/// Which connection an event or call is about; never reused within one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// A map keyed by connection: every message looks a connection up several times (endpoint,
/// driver, handle), so the key is hashed with one multiplication, not SipHash. The ids are
/// ours, counted up from 0, never a stranger's choice; a peer's address, which is, stays
/// under SipHash.
pub type IdMap<V> = HashMap<ConnectionId, V, BuildHasherDefault<IdHasher>>;

/// Hashes a [`ConnectionId`] by Fibonacci hashing (consecutive ids spread over every bit,
/// which the table's probing needs).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub contents: Vec<u8>,
}

/// What the application learns from the endpoint, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A peer that dialled us completed its handshake and passed the allow policy; it waits
    /// in the backlog until the application takes it (`accepted`). Its later events follow
    /// under the same id.
    Incoming {
        /// The new connection.
        id: ConnectionId,
        /// Where the peer is.
        remote: SocketAddr,
    },
    /// An event of a connection the application knows (one it dialled, or one announced by
    /// `Incoming`).
    Connection {
        /// Which one.
        id: ConnectionId,
        /// What happened.
        event: Event,
    },
    /// A change in the data channels of a connection the application knows (one made with
    /// `Config::channels`; its session's messages are SCTP and never `Event::Message`).
    Channel {
        /// Which one.
        id: ConnectionId,
        /// What changed.
        event: ChannelEvent,
    },
}

/// Settings for an endpoint; `EndpointConfig::default()` documents every default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Settings for every connection on the endpoint.
    pub peer: Config,
    /// Whether peers may dial us at all (an endpoint used only to dial says no).
    pub accept: bool,
    /// Incoming handshakes in progress at once; beyond this, new ClientHellos are dropped
    /// and counted (default 256).
    pub max_pending_handshakes: usize,
    /// Connections (handshaking or established, dialled or accepted) at once; beyond this,
    /// new ClientHellos are dropped and `connect` refuses (default 4096).
    pub max_connections: usize,
    /// Established incoming connections the application has not taken yet; while it is full
    /// new ClientHellos are dropped and counted (default 128).
    pub accept_backlog: usize,
    /// The application's own datagrams held for `poll_datagram`; beyond this they are
    /// dropped and counted (default 1024).
    pub datagram_queue: usize,
    /// Answer a ClientHello from an unknown address with a stateless HelloVerifyRequest and
    /// create state only for one that returns a valid cookie (RFC 6347 §4.2.1; default on).
    pub require_cookie: bool,
    /// Move an established peer to a new source address when an authenticated record
    /// arrives from there (NAT rebinding; default off, see `migration`).
    pub allow_migration: bool,
    /// An endpoint for exactly one dialled peer (a standalone `DTLSPeerConnection`, see
    /// [`EndpointConfig::one_peer`]): everything from the peer's address is its engine's (what
    /// is not DTLS is counted there), everything from elsewhere is dropped and counted as
    /// `dropped_unknown_source`, and the connection keeps its address after it ends, so its
    /// engine goes on counting what the peer sends late (default off).
    pub one_peer: bool,
}

impl EndpointConfig {
    /// Settings for an endpoint with one peer, dialled with `connect_idle`: no accept, no
    /// cookies, no application datagrams.
    pub fn one_peer(peer: Config) -> Self {
        Self {
            peer,
            accept: false,
            max_connections: 1,
            datagram_queue: 0,
            require_cookie: false,
            one_peer: true,
            ..Self::default()
        }
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            peer: Config::default(),
            accept: true,
            max_pending_handshakes: 256,
            max_connections: 4096,
            accept_backlog: 128,
            datagram_queue: 1024,
            require_cookie: true,
            allow_migration: false,
            one_peer: false,
        }
    }
}

/// Why `connect` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The endpoint is closed.
    Closed,
    /// A live connection to that address exists (one peer per address).
    AddressInUse(SocketAddr),
    /// `max_connections` reached.
    TooManyConnections(usize),
    /// The engine could not be built with these settings.
    Config(ConfigError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("the endpoint is closed"),
            Self::AddressInUse(addr) => write!(f, "the endpoint already has a connection to {addr}"),
            Self::TooManyConnections(max) => write!(f, "the endpoint has max_connections={max} connections"),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why `send_datagram` refused; nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramError {
    /// The endpoint is closed.
    Closed,
    /// Empty datagrams carry nothing.
    Empty,
    /// Larger than a UDP payload can be.
    TooLarge(usize),
    /// Its first byte is in RFC 7983's DTLS range (20..=63): the peer would take it for DTLS.
    LooksLikeDtls(u8),
}

impl std::fmt::Display for DatagramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("the endpoint is closed"),
            Self::Empty => f.write_str("an empty datagram carries nothing"),
            Self::TooLarge(n) => write!(
                f,
                "a datagram of {n} bytes exceeds the UDP maximum of {MAX_UDP_PAYLOAD}"
            ),
            Self::LooksLikeDtls(b) => write!(
                f,
                "a datagram starting with byte {b} is in RFC 7983's DTLS range (20..=63); peers would take it for DTLS"
            ),
        }
    }
}

impl std::error::Error for DatagramError {}

/// Established connections a datagram from an unknown address is tried on (`migrate`).
const MIGRATION_CANDIDATES: usize = 16;

/// Largest UDP payload (IPv4).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// One connection in the table.
#[derive(Debug)]
struct Slot {
    engine: Engine,
    remote: SocketAddr,
    /// Dialled by us, or announced to the application with `Incoming`.
    known: bool,
    /// Still in the address table (not yet ended and drained).
    routed: bool,
    /// When a datagram last came from its address (migration tries the quietest first).
    last_input: Instant,
    /// The engine's `poll_timeout` as last filed in `Endpoint::timers`.
    deadline: Option<Instant>,
    /// A dial in the server role still waiting for the peer's ClientHello to pass the cookie
    /// exchange, and whom it accepts.
    awaiting_hello: Option<Pin>,
    /// A handshake a peer started before the application dialled it in the server role: the
    /// node ID that dial expects (`None`: anyone), checked once it is verified.
    claim: Option<Option<String>>,
    /// The session's data channels, once established (with `Config::channels`).
    channels: Option<Box<Channels>>,
    /// In `Endpoint::channel_senders`.
    channel_queued: bool,
}

/// Many DTLS peers on one socket.
#[derive(Debug)]
pub struct Endpoint {
    identity: Identity,
    config: EndpointConfig,
    /// The one OpenSSL context every connection of the endpoint uses.
    context: SslContext,
    /// Whom an incoming handshake accepts: the allow policy, checked inside it.
    allow: Pin,
    /// Answers ClientHellos from unknown addresses with cookies (`require_cookie`).
    listener: Option<Listener>,
    /// Boxed: an engine is about 1 KiB, and a table holds up to twice as many buckets as
    /// entries (four for a one-peer endpoint's one).
    slots: IdMap<Box<Slot>>,
    by_address: HashMap<SocketAddr, ConnectionId>,
    /// Every connection's next deadline, earliest first: with thousands of peers, finding
    /// what is due must not visit them all.
    timers: BTreeSet<(Instant, ConnectionId)>,
    next_id: u64,
    /// Incoming connections still handshaking.
    pending: usize,
    /// Established incoming connections announced and not yet taken.
    backlog: VecDeque<ConnectionId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    datagrams: VecDeque<(SocketAddr, Vec<u8>)>,
    stats: EndpointStats,
    closed: bool,
    /// The latest time given to any call: the data channels' clock for work done in
    /// `collect`, which is reached from calls that carry no time.
    now: Option<Instant>,
    /// Connections whose data channels have SCTP packets waiting (`poll_channel_transmit`).
    channel_senders: VecDeque<ConnectionId>,
}

impl Endpoint {
    /// An endpoint that authenticates as `identity` and lets in a peer that dials it when
    /// `allow` admits its node ID (`None`: any verified peer).
    pub fn new(
        identity: &Identity,
        config: EndpointConfig,
        allow: Option<Arc<dyn AllowPolicy>>,
    ) -> Result<Self, ConfigError> {
        config.peer.validate()?;
        u32::try_from(config.peer.mtu).map_err(|_| ConfigError::Mtu(config.peer.mtu))?;
        let context = policy::context(identity, &config.peer)?;
        let accept = allow.map_or(Accept::Any, Accept::Allowed);
        let allow = Pin::accepting(accept, identity.scheme().clone());
        // Cookies also serve a dial in the server role (see `connect`), so an endpoint that
        // does not accept still keeps a listener.
        let listener = config
            .require_cookie
            .then(|| Listener::from_context(context.clone(), config.peer.clone(), allow.clone()))
            .transpose()?;
        Ok(Self {
            identity: identity.clone(),
            allow,
            listener,
            context,
            config,
            slots: IdMap::default(),
            by_address: HashMap::new(),
            timers: BTreeSet::new(),
            next_id: 0,
            pending: 0,
            backlog: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            datagrams: VecDeque::new(),
            stats: EndpointStats::default(),
            closed: false,
            now: None,
            channel_senders: VecDeque::new(),
        })
    }

    /// Starts a handshake with `remote` in `role` (a server waits for the peer's ClientHello
    /// at that address, with no cookie asked), accepting only `expected_node_id` (normalised
    /// by the identity's scheme; `None` accepts any verified peer).
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        role: Role,
        expected_node_id: Option<String>,
    ) -> Result<ConnectionId, ConnectError> {
        let id = self.connect_idle(now, remote, role, expected_node_id)?;
        self.start(now, id);
        Ok(id)
    }

    /// Makes a connection to `remote` as `connect` does, but leaves its handshake for
    /// `start`: datagrams from the peer are routed to it and kept by its engine until then
    /// (a ClientHello that comes before the application asks for the handshake).
    pub fn connect_idle(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        role: Role,
        expected_node_id: Option<String>,
    ) -> Result<ConnectionId, ConnectError> {
        if self.closed {
            return Err(ConnectError::Closed);
        }
        if let Some(&id) = self.by_address.get(&remote) {
            // A peer we now dial as the server may have dialled us first (both sides of a
            // hole punch connect at once): its handshake becomes this dial's.
            return match role {
                Role::Server => self
                    .claim(id, expected_node_id)
                    .ok_or(ConnectError::AddressInUse(remote)),
                Role::Client => Err(ConnectError::AddressInUse(remote)),
            };
        }
        if self.live() >= self.config.max_connections {
            return Err(ConnectError::TooManyConnections(self.config.max_connections));
        }
        let pin = Pin::new(expected_node_id, self.identity.scheme().clone());
        let engine = Engine::from_context(self.context.clone(), role, pin.clone(), self.config.peer.clone())
            .map_err(ConnectError::Config)?;
        let id = self.insert(now, engine, remote, true);
        // A server waits for the peer's ClientHello. That hello may have come before this
        // call and been answered with a cookie, so the retried one carries a cookie (and
        // message_seq 1) that only the cookie path can take: it goes through the listener like
        // any other, with this dial's pin (once started). Until then the started engine holds
        // the deadline.
        if role == Role::Server && self.listener.is_some() {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.awaiting_hello = Some(pin);
            }
        }
        Ok(id)
    }

    /// Starts connection `id`'s handshake if it has not started (see `connect_idle`); its
    /// timeout counts from `now`.
    pub fn start(&mut self, now: Instant, id: ConnectionId) {
        self.now = Some(now);
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.engine.state() == State::Idle {
                slot.engine.start(now);
            }
        }
        self.collect(id);
    }

    /// Feeds one datagram received from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.now = Some(now);
        self.stats.datagrams_in += 1;
        if self.closed {
            return;
        }
        let known = self.by_address.get(&from).copied();
        if self.config.one_peer && known.is_none() {
            self.stats.dropped_unknown_source += 1;
            return;
        }
        // Our keepalives are STUN-shaped; from a peer's address (or, when peers may move, from
        // anywhere) they are the engine's.
        let keepalive = (known.is_some() || self.config.allow_migration) && is_keepalive(datagram);
        // A one-peer endpoint has no application datagrams: its engine counts them.
        if !looks_like_dtls(datagram) && !keepalive && !self.config.one_peer {
            return self.take_app_datagram(from, datagram);
        }
        match known {
            Some(id) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.last_input = now;
                    let started = slot.engine.state() != State::Idle;
                    match slot.awaiting_hello.clone() {
                        Some(pin) if started => {
                            if let Some(engine) = self.exchange_cookie(now, from, datagram, Some(&pin)) {
                                if let Some(slot) = self.slots.get_mut(&id) {
                                    slot.engine = engine;
                                    slot.awaiting_hello = None;
                                }
                            }
                        }
                        _ => slot.engine.handle_datagram(now, datagram),
                    }
                }
                self.collect(id);
            }
            None if self.config.allow_migration && !crate::engine::starts_with_client_hello(datagram) => {
                self.migrate(now, from, datagram);
            }
            None => self.incoming(now, from, datagram),
        }
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        let due: Vec<ConnectionId> = (self.timers.iter())
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.engine.handle_timeout(now);
                if let Some(channels) = &mut slot.channels {
                    if channels.poll_timeout().is_some_and(|at| at <= now) {
                        channels.handle_timeout(now);
                    }
                }
            }
            self.collect(id);
        }
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let transmit = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(transmit)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// The next datagram that was not DTLS (the application's own protocol), oldest first.
    pub fn poll_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.datagrams.pop_front()
    }

    /// Queues a plaintext datagram of the application's own protocol.
    pub fn send_datagram(&mut self, destination: SocketAddr, contents: &[u8]) -> Result<(), DatagramError> {
        if self.closed {
            return Err(DatagramError::Closed);
        }
        match contents.first() {
            None => return Err(DatagramError::Empty),
            Some(&b) if (20..=63).contains(&b) => return Err(DatagramError::LooksLikeDtls(b)),
            Some(_) if contents.len() > MAX_UDP_PAYLOAD => return Err(DatagramError::TooLarge(contents.len())),
            Some(_) => {}
        }
        self.stats.app_datagrams_out += 1;
        self.transmits.push_back(Transmit {
            destination,
            contents: contents.to_vec(),
        });
        Ok(())
    }

    /// Encrypts one message to connection `id`.
    pub fn send(&mut self, id: ConnectionId, message: &[u8]) -> Result<(), SendError> {
        let slot = self.slots.get_mut(&id).ok_or(SendError::Closed)?;
        slot.engine.send(message)?;
        self.collect(id);
        Ok(())
    }

    /// Ends connection `id` (close_notify if established); its id stays readable until
    /// `release`.
    pub fn close_connection(&mut self, id: ConnectionId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.engine.close();
        }
        self.collect(id);
    }

    /// Forgets connection `id` (the application dropped it): it is closed first if live.
    pub fn release(&mut self, id: ConnectionId) {
        self.close_connection(id);
        self.backlog.retain(|queued| *queued != id);
        if let Some(slot) = self.slots.remove(&id) {
            self.unroute(id, &slot);
            if let Some(at) = slot.deadline {
                self.timers.remove(&(at, id));
            }
        }
    }

    /// Makes connection `id`, opened by a peer that dialled us, the application's dial in the
    /// server role accepting `expected_node_id`: a handshake still running is checked against
    /// it when it completes (`collect`); an established one waiting in the backlog is taken
    /// out of it if its node ID is the one expected. `None` if it cannot be claimed (it is
    /// already the application's, or another node is established there).
    fn claim(&mut self, id: ConnectionId, expected_node_id: Option<String>) -> Option<ConnectionId> {
        let slot = self.slots.get_mut(&id)?;
        if !slot.known {
            slot.known = true;
            slot.claim = Some(expected_node_id);
            self.pending -= 1;
            return Some(id);
        }
        let waiting = self.backlog.contains(&id);
        let matches = expected_node_id.is_none() || slot.engine.peer_node_id() == expected_node_id.as_deref();
        if !(waiting && matches) {
            return None;
        }
        self.backlog.retain(|queued| *queued != id);
        Some(id)
    }

    /// The application took an incoming connection out of the backlog.
    pub fn accepted(&mut self, id: ConnectionId) {
        self.backlog.retain(|queued| *queued != id);
    }

    /// Closes every connection and refuses new work. Datagrams already produced (the
    /// close_notify alerts) can still be polled.
    pub fn close(&mut self) {
        self.closed = true;
        let ids: Vec<ConnectionId> = self.slots.keys().copied().collect();
        for id in ids {
            self.close_connection(id);
        }
        self.datagrams.clear();
    }

    /// The application's datagrams received so far (what `stats` counts, without the copy).
    pub fn app_datagrams_in(&self) -> u64 {
        self.stats.app_datagrams_in
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The engine of connection `id`, for its properties.
    pub fn connection(&self, id: ConnectionId) -> Option<&Engine> {
        self.slots.get(&id).map(|slot| &slot.engine)
    }

    /// Where connection `id`'s peer is now.
    pub fn remote(&self, id: ConnectionId) -> Option<SocketAddr> {
        self.slots.get(&id).map(|slot| slot.remote)
    }

    /// The settings in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Counters so far, with the current table sizes.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            connections: self.live() as u64,
            pending_handshakes: self.pending as u64,
            backlog: self.backlog.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Connections still routed (handshaking or established).
    fn live(&self) -> usize {
        self.by_address.len()
    }

    fn insert(&mut self, now: Instant, engine: Engine, remote: SocketAddr, known: bool) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        self.by_address.insert(remote, id);
        let slot = Slot {
            engine,
            remote,
            known,
            routed: true,
            last_input: now,
            deadline: None,
            awaiting_hello: None,
            claim: None,
            channels: None,
            channel_queued: false,
        };
        self.slots.insert(id, Box::new(slot));
        id
    }

    /// Runs the stateless cookie exchange on a ClientHello from `from` (the endpoint has a
    /// listener): sends the HelloVerifyRequest, or counts a datagram it ignored, or returns the
    /// server engine a valid cookie made, accepting whom `pin` names (the allow policy when
    /// `None`).
    fn exchange_cookie(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        pin: Option<&Pin>,
    ) -> Option<Engine> {
        match self.listener.as_mut()?.hello_pinned(now, from, datagram, pin) {
            Hello::Accepted(engine) => return Some(*engine),
            Hello::Answer(hvr) => {
                self.stats.hello_verify_requests += 1;
                self.transmits.push_back(Transmit {
                    destination: from,
                    contents: hvr,
                });
            }
            Hello::Ignored => self.stats.dropped_unknown_source += 1,
        }
        None
    }

    /// A datagram from an address with no connection.
    fn incoming(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if !self.config.accept || !crate::engine::starts_with_client_hello(datagram) {
            self.stats.dropped_unknown_source += 1;
            return;
        }
        if self.pending >= self.config.max_pending_handshakes
            || self.live() >= self.config.max_connections
            || self.backlog.len() >= self.config.accept_backlog
        {
            self.stats.dropped_over_limit += 1;
            return;
        }
        let engine = match self.listener {
            Some(_) => match self.exchange_cookie(now, from, datagram, None) {
                Some(engine) => engine,
                None => return,
            },
            None => {
                let engine = Engine::from_context(
                    self.context.clone(),
                    Role::Server,
                    self.allow.clone(),
                    self.config.peer.clone(),
                );
                let Ok(mut engine) = engine else {
                    self.stats.dropped_over_limit += 1;
                    return;
                };
                engine.start(now);
                engine.handle_datagram(now, datagram);
                engine
            }
        };
        self.pending += 1;
        self.stats.handshakes_started += 1;
        let id = self.insert(now, engine, from, false);
        self.collect(id);
    }

    /// A datagram from an unknown address while peers may move (NAT rebinding): the
    /// established connection under whose keys it authenticates moves to `from`. Trial
    /// decryption costs one AEAD check per candidate, so at most `MIGRATION_CANDIDATES` are
    /// tried, those that have been quiet longest (a peer whose mapping changed has gone quiet
    /// at its old address). A datagram that proves no one's is dropped and counted.
    fn migrate(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let mut candidates: Vec<(Instant, ConnectionId)> = (self.slots.iter())
            .filter(|(_, slot)| slot.routed && slot.known && slot.engine.state() == State::Established)
            .map(|(id, slot)| (slot.last_input, *id))
            .collect();
        let n = candidates.len().min(MIGRATION_CANDIDATES);
        if n < candidates.len() {
            candidates.select_nth_unstable(n);
        }
        candidates.truncate(n);
        candidates.sort_unstable();
        for (_, id) in candidates {
            let Some(slot) = self.slots.get_mut(&id) else { continue };
            if slot.engine.try_from_new_address(now, datagram) {
                let old = std::mem::replace(&mut slot.remote, from);
                slot.last_input = now;
                self.by_address.remove(&old);
                self.by_address.insert(from, id);
                self.stats.migrations += 1;
                self.collect(id);
                return;
            }
        }
        self.stats.dropped_unknown_source += 1;
    }

    /// A datagram that is not DTLS: the application's.
    fn take_app_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        if self.datagrams.len() >= self.config.datagram_queue {
            self.stats.dropped_datagram_queue_full += 1;
            return;
        }
        self.stats.app_datagrams_in += 1;
        self.datagrams.push_back((from, datagram.to_vec()));
    }

    /// Moves what connection `id`'s engine produced into the endpoint's queues, and takes it
    /// out of the address table once it has ended.
    fn collect(&mut self, id: ConnectionId) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        while let Some(contents) = slot.engine.poll_transmit() {
            self.transmits.push_back(Transmit {
                destination: slot.remote,
                contents,
            });
        }
        while let Some(event) = slot.engine.poll_event() {
            match (&event, &mut slot.channels) {
                (Event::Connected, _) => Self::open_channels(slot, self.now, &self.config.peer),
                (Event::Closed(reason), Some(channels)) => channels.session_ended(&reason.to_string()),
                _ => {}
            }
            match event {
                Event::Connected if !slot.known => {
                    self.pending -= 1;
                    self.stats.handshakes_accepted += 1;
                    slot.known = true;
                    self.backlog.push_back(id);
                    self.events.push_back(EndpointEvent::Incoming {
                        id,
                        remote: slot.remote,
                    });
                }
                Event::Connected if slot.claim.is_some() => {
                    let expected = slot.claim.take().flatten();
                    let actual = slot.engine.peer_node_id().unwrap_or_default().to_owned();
                    match expected {
                        Some(expected) if expected != actual => {
                            // Verified, but not the node this dial expects: the session ends
                            // (its close_notify goes out now) and the dial fails as a pin
                            // mismatch would.
                            slot.known = false;
                            slot.engine.close();
                            while let Some(contents) = slot.engine.poll_transmit() {
                                self.transmits.push_back(Transmit {
                                    destination: slot.remote,
                                    contents,
                                });
                            }
                            let failure = VerificationFailure::NodeIdMismatch { expected, actual };
                            let event = Event::HandshakeFailed(HandshakeFailure::PeerVerification(failure));
                            self.events.push_back(EndpointEvent::Connection { id, event });
                            self.stats.handshakes_refused += 1;
                        }
                        _ => self.events.push_back(EndpointEvent::Connection { id, event }),
                    }
                }
                Event::HandshakeFailed(_) if !slot.known => {
                    self.pending -= 1;
                    self.stats.handshakes_refused += 1;
                }
                Event::Message(packet) if slot.channels.is_some() => {
                    if let (Some(channels), Some(now)) = (&mut slot.channels, self.now) {
                        channels.handle_packet(now, &packet);
                    }
                }
                event if slot.known => self.events.push_back(EndpointEvent::Connection { id, event }),
                _ => {}
            }
        }
        Self::collect_channels(slot, id, &mut self.events, &mut self.channel_senders);
        let deadline = Self::deadline(slot);
        if deadline != slot.deadline {
            if let Some(at) = slot.deadline {
                self.timers.remove(&(at, id));
            }
            if let Some(at) = deadline {
                self.timers.insert((at, id));
            }
            slot.deadline = deadline;
        }
        // A one-peer endpoint's peer keeps its address: its engine counts what comes late.
        if matches!(slot.engine.state(), State::Failed | State::Closed) && slot.routed && !self.config.one_peer {
            slot.routed = false;
            let (remote, known) = (slot.remote, slot.known);
            if self.by_address.get(&remote) == Some(&id) {
                self.by_address.remove(&remote);
            }
            // Nobody will ever ask about an incoming handshake that failed.
            if !known {
                if let Some(at) = self.slots.remove(&id).and_then(|slot| slot.deadline) {
                    self.timers.remove(&(at, id));
                }
            }
        }
    }

    fn unroute(&mut self, id: ConnectionId, slot: &Slot) {
        if self.by_address.get(&slot.remote) == Some(&id) {
            self.by_address.remove(&slot.remote);
        }
    }
}
