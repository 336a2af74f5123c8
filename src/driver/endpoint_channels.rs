//! A connection's data channels as its application handle sees them: each call locks the
//! endpoint, acts on the connection's [`Channels`] on the caller's thread (no thread hop),
//! and sends what SCTP produced. Whoever waits is told through the connection's notifier.

use std::time::Instant;

use super::{EndpointConnection, Progress};
use crate::channels::{ChannelError, ChannelId, ChannelOptions, Channels, Message};
use crate::driver::Sent;

impl EndpointConnection {
    /// Runs `f` on this connection's channels, then sends and announces what they produced.
    fn channels<R>(&self, f: impl FnOnce(&mut Channels) -> R) -> Result<R, ChannelError> {
        let (result, moved) = self.with(|inner, shared| {
            let deadline = inner.endpoint.poll_timeout();
            let progress = inner.conns.get(&self.id).map(|c| c.progress.clone());
            match progress {
                Some(Progress::Established) => {}
                Some(Progress::Pending) => return (Err(ChannelError::NotConnected), false),
                Some(Progress::Failed(why)) => {
                    return (Err(ChannelError::Ended(format!("the handshake failed: {why}"))), false)
                }
                Some(Progress::Closed(why)) => {
                    // What arrived before the close stays readable: the channels decide.
                    if !inner.endpoint.has_channels(self.id) {
                        return (
                            Err(ChannelError::Ended(format!("the DTLS session ended: {why}"))),
                            false,
                        );
                    }
                }
                None => return (Err(ChannelError::Ended("the connection was released".into())), false),
            }
            let result = inner.endpoint.with_channels(Instant::now(), self.id, f);
            shared.pump(inner);
            (
                result.ok_or(ChannelError::NotConnected),
                inner.endpoint.poll_timeout() != deadline,
            )
        });
        // SCTP's timers moved: the task must re-read the deadline (packets left behind are
        // the flush's to hand over; a wake-up per message would be a futex call each).
        if moved {
            self.shared.wake_task.notify_one();
        }
        result
    }

    /// Whether the channels' association is up (`Ok(false)`: not yet).
    pub fn channels_ready(&self) -> Result<bool, ChannelError> {
        match self.channels(|c| c.ended().map(str::to_owned).ok_or(c.is_connected())) {
            Ok(Ok(why)) => Err(ChannelError::Ended(why)),
            Ok(Err(connected)) => Ok(connected),
            Err(ChannelError::NotConnected) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens a channel (see `Channels::open`).
    pub fn open_channel(&self, options: ChannelOptions) -> Result<ChannelId, ChannelError> {
        self.channels(|c| c.open(options))?
    }

    /// Whether channel `id` may carry messages: `Ok(false)` while the peer has not
    /// acknowledged it; an error once it is closed.
    pub fn channel_open(&self, id: ChannelId) -> Result<bool, ChannelError> {
        self.channels(|c| {
            if c.is_open(id) {
                return Ok(true);
            }
            if let Some(why) = c.ended() {
                return Err(ChannelError::Ended(why.to_owned()));
            }
            match c.options(id) {
                None => Err(ChannelError::Unknown(id)),
                // Opening, or closed: a recv on it tells which (the peer refused it by a reset).
                Some(_) => c.recv(id).map(|_| false),
            }
        })?
    }

    /// The next channel the peer opened.
    pub fn accept_channel(&self) -> Result<Option<ChannelId>, ChannelError> {
        self.channels(|c| match c.accept() {
            Some(id) => Ok(Some(id)),
            None => c
                .ended()
                .map_or(Ok(None), |why| Err(ChannelError::Ended(why.to_owned()))),
        })?
    }

    /// Queues one message on channel `id`; `Busy` while its buffer is above the high-water mark.
    pub fn channel_send(&self, id: ChannelId, data: &[u8], text: bool) -> Result<Sent, ChannelError> {
        let queued = self.channels(|c| c.send(id, data, text))??;
        Ok(if queued { Sent::Done } else { Sent::Busy })
    }

    /// Takes channel `id`'s next message.
    pub fn channel_recv(&self, id: ChannelId) -> Result<Option<Message>, ChannelError> {
        self.channels(|c| c.recv(id))?
    }

    /// Closes channel `id` (idempotent).
    pub fn close_channel(&self, id: ChannelId) {
        let _ = self.channels(|c| c.close(id));
    }

    /// What channel `id` is.
    pub fn channel_options(&self, id: ChannelId) -> Option<ChannelOptions> {
        self.channels(|c| c.options(id).cloned()).ok().flatten()
    }

    /// Bytes queued on channel `id` and not yet acknowledged.
    pub fn buffered_amount(&self, id: ChannelId) -> usize {
        self.channels(|c| c.buffered_amount(id)).unwrap_or(0)
    }

    /// Whether everything sent on the channels has been acknowledged by the peer (or the
    /// association ended, or there is none): closing the session now loses nothing.
    pub fn channels_flushed(&self) -> bool {
        self.channels(|c| c.ended().is_some() || c.buffered_total() == 0)
            .unwrap_or(true)
    }
}
