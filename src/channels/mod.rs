//! WebRTC data channels over one DTLS session, sans-IO: an SCTP association (RFC 8261,
//! `sctp-proto`) with the channel rules of RFC 8831 and in-band opening by DCEP (RFC 8832).
//!
//! The session's decrypted messages come in as SCTP packets (`handle_packet`), and SCTP
//! packets to encrypt go out (`poll_packet`); the application opens, sends on, reads from
//! and closes channels by id. Like the engine it knows no socket and reads no clock.
//!
//! Roles follow DTLS (RFC 8832 §6): the DTLS client starts the association and opens
//! channels on even stream ids, the server on odd ones.
//!
//! Memory: a channel's unread messages are taken out of SCTP only while they stay under
//! `buffer_high_water`, so a slow reader's channel leaves its data in SCTP's receive window
//! while the other channels go on; the window itself is `max_message_size +
//! buffer_high_water` (SCTP here reassembles whole messages only). A sender is asked to
//! wait (`send` returns false) while its channel holds more than `buffer_high_water`.

mod dcep;
mod outgoing;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event,
    PayloadProtocolIdentifier as Ppi, ReliabilityType, ServerConfig, StreamEvent, TransportConfig,
};

pub use dcep::{ChannelOptions, Reliability};

use crate::config::ChannelsConfig;

/// A channel's SCTP stream id.
pub type ChannelId = u16;

/// SCTP's common header; the first chunk's type follows it.
const COMMON_HEADER: usize = 12;
/// The INIT chunk's type.
const CHUNK_INIT: u8 = 1;
/// SCTP's common and DATA chunk headers: a packet is this much larger than its payload.
const SCTP_OVERHEAD: usize = 12 + 16;
/// Channels open at once (both sides' together); beyond this the peer's opens are refused
/// (its stream is reset) and ours fail.
pub const MAX_CHANNELS: usize = 1024;
/// The advertised receive window is at most `buffer_high_water` but not under this
/// (`outgoing`): 1 MiB in flight fills a 100 Mbit/s path with 80 ms of round trip.
const WINDOW_CAP_MIN: usize = 1 << 20;
/// sctp-proto keys associations by address; there is only one here, so any will do.
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);

/// What changed, in order; the application reacts by calling the methods again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The association is up: channels may be opened.
    Connected,
    /// The peer acknowledged a channel we opened: it may carry messages.
    Opened(ChannelId),
    /// The peer opened a channel (`accept` hands it over).
    Incoming(ChannelId),
    /// Messages wait on this channel.
    Readable(ChannelId),
    /// This channel's send buffer fell to the high-water mark.
    Writable(ChannelId),
    /// This channel was closed by the peer.
    Closed(ChannelId),
    /// The association ended: every channel is closed.
    Ended(String),
}

/// Why a call was refused; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The association is not up yet.
    NotConnected,
    /// The association ended (the reason).
    Ended(String),
    /// No channel has this id.
    Unknown(ChannelId),
    /// The peer has not acknowledged this channel yet.
    NotOpen(ChannelId),
    /// The channel was closed (by either side).
    Closed(ChannelId),
    /// The message is larger than `max_message_size`.
    TooLarge {
        /// Its size.
        size: usize,
        /// The largest allowed.
        max: usize,
    },
    /// `MAX_CHANNELS` are open.
    TooManyChannels,
    /// A label or protocol longer than 65,535 bytes.
    NameTooLong,
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConnected => f.write_str("the data channel association is not up yet"),
            Self::Ended(why) => write!(f, "the data channel association ended: {why}"),
            Self::Unknown(id) => write!(f, "no channel has id {id}"),
            Self::NotOpen(id) => write!(f, "channel {id} is not open yet (the peer has not acknowledged it)"),
            Self::Closed(id) => write!(f, "channel {id} is closed"),
            Self::TooLarge { size, max } => {
                write!(f, "a message of {size} bytes exceeds max_channel_message_size ({max})")
            }
            Self::TooManyChannels => write!(f, "{MAX_CHANNELS} channels are open; close one first"),
            Self::NameTooLong => f.write_str("a channel label or protocol is limited to 65535 bytes"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// One message, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its bytes (UTF-8 when `text`).
    pub data: Vec<u8>,
    /// Sent as a string (PPID 51/56), not as binary (53/57).
    pub text: bool,
}

/// Counters for the connection's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Channel messages sent.
    pub messages_out: u64,
    /// Channel messages received.
    pub messages_in: u64,
    /// Session messages that were not SCTP packets (or not for this association).
    pub dropped_not_sctp: u64,
    /// Messages on a stream with no open channel, or with an unknown PPID.
    pub dropped_no_channel: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent DCEP OPEN; waiting for the ACK.
    Opening,
    Open,
    Closed,
}

#[derive(Debug)]
struct Entry {
    options: ChannelOptions,
    stage: Stage,
    inbox: VecDeque<Message>,
    inbox_bytes: usize,
    /// `send` was refused for a full buffer: `Writable` is owed.
    send_blocked: bool,
    /// Bytes queued by `send` and not yet sent once (`count_sent`).
    unsent: usize,
}

impl Entry {
    fn new(options: ChannelOptions, stage: Stage) -> Self {
        Self {
            options,
            stage,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            send_blocked: false,
            unsent: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Connecting,
    Connected,
    Ended(String),
}

/// The data channels of one DTLS session.
pub struct Channels {
    endpoint: Endpoint,
    association: Option<(AssociationHandle, Association)>,
    client: bool,
    config: ChannelsConfig,
    entries: BTreeMap<ChannelId, Entry>,
    incoming: VecDeque<ChannelId>,
    events: VecDeque<ChannelEvent>,
    out: VecDeque<Bytes>,
    phase: Phase,
    next_id: ChannelId,
    now: Instant,
    stats: ChannelStats,
    /// Something happened since SCTP was last asked for packets (`poll_packet`).
    may_transmit: bool,
    /// The largest receive window we advertise (`outgoing`).
    window_cap: u32,
    /// The newest TSN sent so far: a DATA chunk at or before it is a retransmission.
    highest_tsn: Option<u32>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("client", &self.client)
            .field("phase", &self.phase)
            .field("channels", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Channels {
    /// Channels over a session whose DTLS role is client (`client`) or server, whose
    /// messages carry at most `max_packet` bytes. The client starts the association now.
    pub fn new(now: Instant, client: bool, max_packet: usize, config: ChannelsConfig) -> Self {
        let mut endpoint_config = EndpointConfig::new();
        // Our packets must each fit one DTLS message (chunks are padded to 4 bytes).
        let payload = (max_packet.saturating_sub(SCTP_OVERHEAD) & !3).max(4);
        endpoint_config.max_payload_size(u32::try_from(payload).unwrap_or(u32::MAX));
        let transport = Arc::new(transport(&config));
        // Both sides can take an INIT: WebRTC stacks (aiortc among them) start the association
        // from both ends (RFC 8841 §9.3). Without a server config sctp-proto panics on an INIT
        // it cannot route; with one, the peer's INIT makes a second association, dropped in
        // `handle_packet` while ours lives (the peer's stack answers our INIT in turn).
        let mut server = ServerConfig::new();
        server.transport = transport.clone();
        let server = Some(Arc::new(server));
        let mut endpoint = Endpoint::new(Arc::new(endpoint_config), server);
        let mut failure = None;
        let association = if client {
            let mut client_config = ClientConfig::new();
            client_config.transport = transport;
            endpoint
                .connect(client_config, PEER)
                .map_err(|e| failure = Some(format!("SCTP could not start: {e}")))
                .ok()
        } else {
            None
        };
        let mut channels = Self {
            endpoint,
            association,
            client,
            config,
            entries: BTreeMap::new(),
            incoming: VecDeque::new(),
            events: VecDeque::new(),
            out: VecDeque::new(),
            phase: Phase::Connecting,
            next_id: if client { 0 } else { 1 },
            now,
            stats: ChannelStats::default(),
            may_transmit: false,
            window_cap: u32::try_from(config.buffer_high_water.max(WINDOW_CAP_MIN)).unwrap_or(u32::MAX),
            highest_tsn: None,
        };
        if let Some(why) = failure {
            channels.end(why);
        }
        channels.drive();
        channels
    }

    /// One decrypted message of the session: an SCTP packet.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.now = now;
        if matches!(self.phase, Phase::Ended(_)) {
            return;
        }
        // An INIT once the association is up is a stale or duplicated start (WebRTC stacks
        // send one from each end): sctp-proto would take it for a restart, which aiortc then
        // aborts. The session is authenticated, so a real restart comes with a new DTLS
        // handshake, not an INIT.
        if self.phase == Phase::Connected && packet.get(COMMON_HEADER) == Some(&CHUNK_INIT) {
            self.stats.dropped_not_sctp += 1;
            return;
        }
        let handled = self
            .endpoint
            .handle(now, PEER, None, None, Bytes::copy_from_slice(packet));
        match handled {
            Some((handle, DatagramEvent::NewAssociation(association))) if self.association.is_none() => {
                self.association = Some((handle, association));
            }
            Some((handle, DatagramEvent::AssociationEvent(event))) => match &mut self.association {
                Some((ours, association)) if *ours == handle => association.handle_event(event),
                // For an association of the peer's we dropped (below).
                _ => self.stats.dropped_not_sctp += 1,
            },
            // One association per session: a second INIT (the peer's own start, or a retry of
            // it) is not let replace it.
            Some((_, DatagramEvent::NewAssociation(_))) => self.stats.dropped_not_sctp += 1,
            None if self.association.is_none() => {
                // Before any association, something that is not SCTP means the peer sends
                // plain messages: it does not use channels.
                self.stats.dropped_not_sctp += 1;
                return self.end(
                    "the peer sent a message that is not SCTP: it does not use data channels (channels=False?)".into(),
                );
            }
            None => self.stats.dropped_not_sctp += 1,
        }
        self.drive();
    }

    /// Runs SCTP's timers (retransmission, delayed acknowledgement).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some((_, association)) = &mut self.association {
            association.handle_timeout(now);
        }
        self.drive();
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ended(_) => None,
            _ => self.association.as_ref().and_then(|(_, a)| a.poll_timeout()),
        }
    }

    /// The next SCTP packet to encrypt and send.
    ///
    /// SCTP is asked for packets here, when the caller has room for them, not after every
    /// input: sctp-proto walks its whole in-flight queue each time it is asked (partial
    /// reliability's expiry check), so asking once per batch of input instead of once per
    /// packet is what keeps a full window cheap.
    pub fn poll_packet(&mut self) -> Option<Bytes> {
        if self.out.is_empty() && std::mem::take(&mut self.may_transmit) {
            if let Some((_, association)) = &mut self.association {
                let cap = self.window_cap;
                let before = self.out.len();
                while let Some(transmit) = association.poll_transmit(self.now) {
                    if let sctp_proto::Payload::RawEncode(packets) = transmit.payload {
                        self.out.extend(packets.into_iter().map(|p| capped(p, cap)));
                    }
                }
                for i in before..self.out.len() {
                    let packet = self.out[i].clone();
                    self.count_sent(&packet);
                }
                self.owe_writable();
            }
        }
        self.out.pop_front()
    }

    /// Whether `poll_packet` may have a packet.
    pub fn has_packets(&self) -> bool {
        !self.out.is_empty() || self.may_transmit
    }

    /// The next change.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }

    /// Opens a channel; it carries messages once the peer acknowledges it (`Opened`).
    pub fn open(&mut self, options: ChannelOptions) -> Result<ChannelId, ChannelError> {
        self.check_connected()?;
        let open = dcep::encode_open(&options).ok_or(ChannelError::NameTooLong)?;
        if self.entries.len() >= MAX_CHANNELS {
            return Err(ChannelError::TooManyChannels);
        }
        let (_, association) = self.association.as_mut().ok_or(ChannelError::NotConnected)?;
        let existing = association.stream_ids();
        // Stream ids of our parity, skipping any in use (or still being reset).
        let mut id = None;
        for _ in 0..=u16::MAX / 2 {
            let candidate = self.next_id;
            self.next_id = self.next_id.wrapping_add(2);
            if !self.entries.contains_key(&candidate) && !existing.contains(&candidate) {
                id = Some(candidate);
                break;
            }
        }
        let id = id.ok_or(ChannelError::TooManyChannels)?;
        let written = association
            .open_stream(id, Ppi::Binary)
            .and_then(|mut stream| stream.write_sctp(&Bytes::from(open), Ppi::Dcep));
        if let Err(e) = written {
            return Err(ChannelError::Ended(format!("SCTP refused to open stream {id}: {e}")));
        }
        self.entries.insert(id, Entry::new(options, Stage::Opening));
        self.drive();
        Ok(id)
    }

    /// The next channel the peer opened, oldest first.
    pub fn accept(&mut self) -> Option<ChannelId> {
        self.incoming.pop_front()
    }

    /// Queues one message on channel `id`; `Ok(false)` (nothing queued) while the channel's
    /// send buffer is above the high-water mark (`Writable` follows).
    pub fn send(&mut self, id: ChannelId, data: &[u8], text: bool) -> Result<bool, ChannelError> {
        self.check_connected()?;
        let max = self.config.max_message_size;
        if data.len() > max {
            return Err(ChannelError::TooLarge { size: data.len(), max });
        }
        let entry = self.entries.get_mut(&id).ok_or(ChannelError::Unknown(id))?;
        match entry.stage {
            Stage::Opening => return Err(ChannelError::NotOpen(id)),
            Stage::Closed => return Err(ChannelError::Closed(id)),
            Stage::Open => {}
        }
        let (_, association) = self.association.as_mut().ok_or(ChannelError::NotConnected)?;
        let Ok(mut stream) = association.stream(id) else {
            entry.stage = Stage::Closed;
            return Err(ChannelError::Closed(id));
        };
        // The high-water mark bounds what waits to be sent, not what is in flight: a sender
        // kept below it with its data already in flight has nothing pending, and SCTP grows
        // its congestion window only while something is (RFC 9260 §7.2.1).
        let buffered = stream.buffered_amount().unwrap_or(0);
        if entry.unsent.min(buffered) > self.config.buffer_high_water {
            entry.send_blocked = true;
            return Ok(false);
        }
        // RFC 8831 §6.6: an empty message travels as one zero byte under the "empty" PPID.
        let (payload, ppi) = match (data.is_empty(), text) {
            (false, true) => (Bytes::copy_from_slice(data), Ppi::String),
            (false, false) => (Bytes::copy_from_slice(data), Ppi::Binary),
            (true, true) => (Bytes::from_static(&[0]), Ppi::StringEmpty),
            (true, false) => (Bytes::from_static(&[0]), Ppi::BinaryEmpty),
        };
        if let Err(e) = stream.write_sctp(&payload, ppi) {
            return Err(ChannelError::Ended(format!("SCTP refused the message: {e}")));
        }
        entry.unsent += payload.len();
        self.stats.messages_out += 1;
        self.drive();
        Ok(true)
    }

    /// Takes channel `id`'s next message; `Ok(None)` while none is waiting. Once the
    /// channel is closed, its messages received before that are still returned, then
    /// `Closed` (or `Ended`).
    pub fn recv(&mut self, id: ChannelId) -> Result<Option<Message>, ChannelError> {
        let entry = self.entries.get_mut(&id).ok_or(ChannelError::Unknown(id))?;
        if let Some(message) = entry.inbox.pop_front() {
            entry.inbox_bytes -= message.data.len();
            // Room freed: take more out of SCTP (and let its window reopen).
            self.pull(id);
            self.drive();
            return Ok(Some(message));
        }
        match (&entry.stage, &self.phase) {
            (Stage::Closed, Phase::Ended(why)) => Err(ChannelError::Ended(why.clone())),
            (Stage::Closed, _) => Err(ChannelError::Closed(id)),
            _ => Ok(None),
        }
    }

    /// Closes channel `id` (both directions: an SCTP stream reset, RFC 8831 §6.7); messages
    /// already queued are sent first. Idempotent.
    pub fn close(&mut self, id: ChannelId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.stage == Stage::Closed {
            return;
        }
        entry.stage = Stage::Closed;
        if let Some((_, association)) = &mut self.association {
            if let Ok(mut stream) = association.stream(id) {
                // Fails only when the association is not established: then there is
                // nothing left to reset.
                let _ = stream.close();
            }
        }
        self.drive();
    }

    /// The DTLS session under the association ended (`why`): so did every channel.
    pub fn session_ended(&mut self, why: &str) {
        self.end(format!("the DTLS session ended: {why}"));
    }

    /// The association is up.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// Why the association ended, once it has.
    pub fn ended(&self) -> Option<&str> {
        match &self.phase {
            Phase::Ended(why) => Some(why),
            _ => None,
        }
    }

    /// What channel `id` is.
    pub fn options(&self, id: ChannelId) -> Option<&ChannelOptions> {
        self.entries.get(&id).map(|entry| &entry.options)
    }

    /// Whether channel `id` may carry messages (acknowledged and not closed).
    pub fn is_open(&self, id: ChannelId) -> bool {
        self.entries.get(&id).is_some_and(|e| e.stage == Stage::Open)
    }

    /// Bytes queued on channel `id` and not yet acknowledged by the peer.
    pub fn buffered_amount(&mut self, id: ChannelId) -> usize {
        let Some((_, association)) = &mut self.association else {
            return 0;
        };
        association
            .stream(id)
            .ok()
            .and_then(|s| s.buffered_amount().ok())
            .unwrap_or(0)
    }

    /// Bytes queued on every channel together and not yet acknowledged: once 0, closing the
    /// session loses nothing (the peer's SCTP holds every message). The connection closes
    /// that way rather than by SCTP's SHUTDOWN, which sctp-proto does not finish on the side
    /// that starts it, and reports as an abort on the other.
    pub fn buffered_total(&mut self) -> usize {
        let ids: Vec<ChannelId> = self.entries.keys().copied().collect();
        ids.into_iter().map(|id| self.buffered_amount(id)).sum()
    }

    /// Counters so far.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    fn check_connected(&self) -> Result<(), ChannelError> {
        match &self.phase {
            Phase::Connecting => Err(ChannelError::NotConnected),
            Phase::Connected => Ok(()),
            Phase::Ended(why) => Err(ChannelError::Ended(why.clone())),
        }
    }

    /// Handles what the association produced: its events, then its packets.
    fn drive(&mut self) {
        // Bounded: each pass handles what one input produced.
        for _ in 0..1024 {
            let Some((_, association)) = &mut self.association else {
                return;
            };
            // Only one association ever lives here, so the endpoint's bookkeeping for
            // finished ones (`Drained`) is not needed; forwarding it would make the endpoint
            // drop the packets of a shutdown still in progress.
            while association.poll_endpoint_event().is_some() {}
            let Some(event) = association.poll() else {
                break;
            };
            self.on_event(event);
        }
        self.may_transmit = self.association.is_some();
        self.owe_writable();
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected if self.phase == Phase::Connecting => {
                self.phase = Phase::Connected;
                self.events.push_back(ChannelEvent::Connected);
            }
            Event::HandshakeFailed { reason } => self.end(format!("the SCTP handshake failed: {reason}")),
            Event::AssociationLost { reason } => self.end(format!("SCTP association {reason}")),
            Event::Stream(StreamEvent::Opened { .. }) => {
                // Streams the peer opens are announced here and queued by sctp-proto; the
                // channel exists once its DCEP open is read, so only the queue is drained.
                if let Some((_, association)) = &mut self.association {
                    while association.accept_stream().is_some() {}
                }
            }
            Event::Stream(StreamEvent::Readable { id }) => self.pull(id),
            Event::Stream(StreamEvent::Finished { id }) => {
                self.pull(id);
                self.remote_closed(id);
            }
            _ => {}
        }
    }

    /// The peer reset stream `id`: its channel is closed (messages already taken stay
    /// readable) and our direction is reset too (RFC 8831 §6.7).
    fn remote_closed(&mut self, id: ChannelId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.stage != Stage::Closed {
            entry.stage = Stage::Closed;
            self.events.push_back(ChannelEvent::Closed(id));
            if let Some((_, association)) = &mut self.association {
                if let Ok(mut stream) = association.stream(id) {
                    let _ = stream.close();
                }
            }
        }
    }

    /// Takes channel `id`'s complete messages out of SCTP while its inbox has room.
    fn pull(&mut self, id: ChannelId) {
        let high_water = self.config.buffer_high_water;
        let mut readable = false;
        loop {
            if self.entries.get(&id).is_some_and(|e| e.inbox_bytes >= high_water) {
                break;
            }
            let Some((_, association)) = &mut self.association else {
                break;
            };
            let Ok(mut stream) = association.stream(id) else {
                break;
            };
            let Ok(Some(chunks)) = stream.read_sctp() else {
                break;
            };
            let mut data = vec![0; chunks.len()];
            if chunks.read(&mut data).is_err() {
                break;
            }
            match chunks.ppi {
                Ppi::Dcep => self.on_dcep(id, &data),
                ppi => {
                    let text = matches!(ppi, Ppi::String | Ppi::StringEmpty);
                    if matches!(ppi, Ppi::StringEmpty | Ppi::BinaryEmpty) {
                        data.clear();
                    }
                    let known = matches!(ppi, Ppi::String | Ppi::StringEmpty | Ppi::Binary | Ppi::BinaryEmpty);
                    match self.entries.get_mut(&id) {
                        Some(entry) if known && entry.stage == Stage::Open => {
                            entry.inbox_bytes += data.len();
                            entry.inbox.push_back(Message { data, text });
                            self.stats.messages_in += 1;
                            readable = true;
                        }
                        _ => self.stats.dropped_no_channel += 1,
                    }
                }
            }
        }
        if readable {
            self.events.push_back(ChannelEvent::Readable(id));
        }
    }

    fn on_dcep(&mut self, id: ChannelId, message: &[u8]) {
        match (dcep::decode(message), self.entries.get_mut(&id)) {
            (Some(dcep::Dcep::Open(options)), None) => {
                // RFC 8832 §6: the peer opens on its own parity only.
                let theirs = (id % 2 == 0) != self.client;
                if !theirs || self.entries.len() >= MAX_CHANNELS {
                    self.stats.dropped_no_channel += 1;
                    return self.reset(id);
                }
                let Some((_, association)) = &mut self.association else {
                    return;
                };
                let Ok(mut stream) = association.stream(id) else {
                    return;
                };
                let (unordered, kind, value) = sctp_reliability(&options);
                let acked = stream
                    .write_sctp(&Bytes::from(dcep::encode_ack()), Ppi::Dcep)
                    .and_then(|_| stream.set_reliability_params(unordered, kind, value));
                if acked.is_err() {
                    return;
                }
                self.entries.insert(id, Entry::new(options, Stage::Open));
                self.incoming.push_back(id);
                self.events.push_back(ChannelEvent::Incoming(id));
            }
            (Some(dcep::Dcep::Ack), Some(entry)) if entry.stage == Stage::Opening => {
                entry.stage = Stage::Open;
                let (unordered, kind, value) = sctp_reliability(&entry.options);
                if let Some((_, association)) = &mut self.association {
                    if let Ok(mut stream) = association.stream(id) {
                        let _ = stream.set_reliability_params(unordered, kind, value);
                    }
                }
                self.events.push_back(ChannelEvent::Opened(id));
            }
            _ => self.stats.dropped_no_channel += 1,
        }
    }

    fn reset(&mut self, id: ChannelId) {
        if let Some((_, association)) = &mut self.association {
            if let Ok(mut stream) = association.stream(id) {
                let _ = stream.close();
            }
        }
    }

    /// Takes the first transmission of each DATA chunk in `packet` off its channel's unsent
    /// bytes (a retransmission has a TSN sent before: not counted again).
    fn count_sent(&mut self, packet: &[u8]) {
        for chunk in outgoing::data_chunks(packet) {
            let newer = self
                .highest_tsn
                .is_none_or(|high| (chunk.tsn.wrapping_sub(high) as i32) > 0);
            if !newer {
                continue;
            }
            self.highest_tsn = Some(chunk.tsn);
            if chunk.dcep {
                continue;
            }
            if let Some(entry) = self.entries.get_mut(&chunk.stream) {
                entry.unsent = entry.unsent.saturating_sub(chunk.len);
            }
        }
    }

    /// Tells senders that waited for room on a channel whose buffer has drained.
    fn owe_writable(&mut self) {
        let Some((_, association)) = &mut self.association else {
            return;
        };
        let high_water = self.config.buffer_high_water;
        for (id, entry) in &mut self.entries {
            if !entry.send_blocked {
                continue;
            }
            // What SCTP still holds bounds what waits: a message given up unsent (partial
            // reliability) leaves both.
            let buffered = association.stream(*id).ok().and_then(|s| s.buffered_amount().ok());
            if buffered.is_none_or(|b| b.min(entry.unsent) <= high_water) {
                entry.send_blocked = false;
                self.events.push_back(ChannelEvent::Writable(*id));
            }
        }
    }

    fn end(&mut self, why: String) {
        if matches!(self.phase, Phase::Ended(_)) {
            return;
        }
        self.phase = Phase::Ended(why.clone());
        for entry in self.entries.values_mut() {
            entry.stage = Stage::Closed;
        }
        self.events.push_back(ChannelEvent::Ended(why));
    }
}

/// `packet` as `outgoing::adjust` leaves it (copied only if it changes).
fn capped(packet: Bytes, cap: u32) -> Bytes {
    if !outgoing::needs_adjusting(&packet) {
        return packet;
    }
    let mut owned = packet.to_vec();
    outgoing::adjust(&mut owned, cap);
    Bytes::from(owned)
}

/// The association's settings for `config`.
fn transport(config: &ChannelsConfig) -> TransportConfig {
    let max = u32::try_from(config.max_message_size).unwrap_or(u32::MAX);
    let window = config.max_message_size.saturating_add(config.buffer_high_water);
    TransportConfig::default()
        .with_max_send_message_size(max)
        .with_max_receive_message_size(max)
        // Whole messages are reassembled before delivery: the window must hold the largest.
        .with_max_receive_buffer_size(u32::try_from(window).unwrap_or(u32::MAX))
        // Loss is found by RTO when fast retransmit cannot (the last packets of a burst, a
        // lost retransmission): RFC 4960's 1 s minimum stalls a loopback or LAN transfer for a
        // second per such loss. 100 ms, not lower: a peer may hold a lone packet's SACK for
        // its 200 ms delayed-ACK timer (ours do not: the end of a message asks for it at
        // once, `outgoing`), and a spurious timeout costs the whole congestion window. Over a
        // 4 ms round trip with 5% loss each way, 8 MiB took 26.9 s of virtual time with a
        // 200 ms minimum and a 10 s cap, 9.9 s with 50 ms and 2 s (tests/rust/channels.rs's
        // link). The cap keeps a path that recovers from waiting out a long backoff.
        .with_rto_initial_ms(1000)
        .with_rto_min_ms(100)
        .with_rto_max_ms(3_000)
        // The DTLS session's liveness (keepalives, idle timeout) decides when a peer is
        // gone; SCTP keeps retrying meanwhile, as WebRTC stacks do.
        .with_max_init_retransmits(None)
        .with_max_data_retransmits(None)
}

/// sctp-proto's reliability parameters for a channel.
fn sctp_reliability(options: &ChannelOptions) -> (bool, ReliabilityType, u32) {
    let (kind, value) = match options.reliability {
        Reliability::Reliable => (ReliabilityType::Reliable, 0),
        Reliability::MaxRetransmits(n) => (ReliabilityType::Rexmit, n),
        Reliability::MaxLifetime(ms) => (ReliabilityType::Timed, ms),
    };
    (!options.ordered, kind, value)
}

#[cfg(test)]
mod tests;
