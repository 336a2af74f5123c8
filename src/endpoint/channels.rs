//! The endpoint's side of data channels: each connection made with `Config::channels` gets
//! a [`Channels`] once its session is established. The session's messages feed it, its SCTP
//! packets go out as the session's messages, and its changes become
//! [`EndpointEvent::Channel`].
//!
//! SCTP may have a whole congestion window of packets ready at once (megabytes on a fast
//! path); they stay in the association until the driver has room for them
//! (`poll_channel_transmit`), rather than filling its outbox past its bounds.

use std::collections::VecDeque;
use std::time::Instant;

use super::{ConnectionId, Endpoint, EndpointEvent, Slot, Transmit};
use crate::channels::Channels;
use crate::config::{Config, Role};

impl Endpoint {
    /// Runs `f` on connection `id`'s data channels at `now`, then moves what they produced
    /// into the endpoint's queues. `None` if the connection has no channels (yet).
    pub fn with_channels<R>(
        &mut self,
        now: Instant,
        id: ConnectionId,
        f: impl FnOnce(&mut Channels) -> R,
    ) -> Option<R> {
        self.now = Some(now);
        let channels = self.slots.get_mut(&id)?.channels.as_mut()?;
        let result = f(channels);
        self.collect(id);
        Some(result)
    }

    /// Whether connection `id` carries data channels (its session is established and made
    /// with `Config::channels`).
    pub fn has_channels(&self, id: ConnectionId) -> bool {
        self.slots.get(&id).is_some_and(|slot| slot.channels.is_some())
    }

    /// The next datagram of some connection's data channels, round robin between
    /// connections; `None` when no channel has a packet ready.
    pub fn poll_channel_transmit(&mut self) -> Option<Transmit> {
        while let Some(id) = self.channel_senders.pop_front() {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            slot.channel_queued = false;
            let Some(packet) = slot.channels.as_mut().and_then(|c| c.poll_packet()) else {
                continue;
            };
            // Refused only once the session has ended: the packet is lost with it.
            let _ = slot.engine.send(&packet);
            self.collect(id);
            if let Some(transmit) = self.poll_transmit() {
                return Some(transmit);
            }
        }
        None
    }

    /// Whether some connection's data channels may have packets to send.
    pub fn has_channel_transmits(&self) -> bool {
        !self.channel_senders.is_empty()
    }

    /// Gives an established session its data channels, if its settings ask for them.
    pub(super) fn open_channels(slot: &mut Slot, now: Option<Instant>, config: &Config) {
        let (Some(settings), Some(now)) = (config.channels, now) else {
            return;
        };
        if slot.channels.is_none() {
            let client = slot.engine.role() == Role::Client;
            let max_packet = slot.engine.max_message_size();
            slot.channels = Some(Box::new(Channels::new(now, client, max_packet, settings)));
        }
    }

    /// Moves connection `id`'s channel changes into `events` (if the application knows the
    /// connection) and queues it in `senders` once if it has packets to send (a flag, not a
    /// search of the queue: this runs for every datagram).
    pub(super) fn collect_channels(
        slot: &mut Slot,
        id: ConnectionId,
        events: &mut VecDeque<EndpointEvent>,
        senders: &mut VecDeque<ConnectionId>,
    ) {
        let Some(channels) = &mut slot.channels else {
            return;
        };
        while let Some(event) = channels.poll_event() {
            if slot.known {
                events.push_back(EndpointEvent::Channel { id, event });
            }
        }
        if channels.has_packets() && !slot.channel_queued {
            slot.channel_queued = true;
            senders.push_back(id);
        }
    }

    /// The earliest of the engine's and the channels' deadlines.
    pub(super) fn deadline(slot: &Slot) -> Option<Instant> {
        let channels = slot.channels.as_ref().and_then(|c| c.poll_timeout());
        [slot.engine.poll_timeout(), channels].into_iter().flatten().min()
    }
}
