//! Connection settings, their documented defaults, and validation.

use std::fmt;
use std::time::Duration;

/// The cipher suites offered by default, strongest-first by speed on common hardware.
pub const DEFAULT_CIPHERS: &str =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384";

/// Suites a `ciphers` setting may choose from: ECDHE-ECDSA with an AEAD, nothing else.
const ALLOWED_CIPHERS: [&str; 3] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
];

/// Bytes a record adds to a message with the largest-overhead allowed suite
/// (AES-GCM: 13-byte DTLS header, 8-byte explicit nonce, 16-byte tag).
pub const RECORD_OVERHEAD: usize = 37;

/// Smallest MTU OpenSSL accepts for DTLS.
pub const MIN_MTU: usize = 256;
/// Largest UDP payload over IPv4.
pub const MAX_MTU: usize = 65_507;

/// Shortest `initial_retransmit_timeout`: a shorter one would resend flights faster than most
/// paths answer them.
pub const MIN_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(50);

/// Longest `handshake_timeout`: an hour.
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Longest `keepalive_interval` or `idle_timeout`: a day.
pub const MAX_LIVENESS_PERIOD: Duration = Duration::from_secs(86_400);

/// Which side of the DTLS handshake this engine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the ClientHello.
    Client,
    /// Waits for the ClientHello.
    Server,
}

impl Role {
    /// The role name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }

    /// The deterministic choice both peers agree on: the smaller node ID is the client.
    pub fn auto(local_node_id: &str, peer_node_id: &str) -> Self {
        if local_node_id < peer_node_id {
            Self::Client
        } else {
            Self::Server
        }
    }
}

/// Settings for one connection. `Config::default()` documents every default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest UDP payload sent, handshake included (default 1200, safe on IPv4 and IPv6 paths).
    pub mtu: usize,
    /// Time from `start` after which the handshake fails with `Timeout` (default 10 s).
    pub handshake_timeout: Duration,
    /// First retransmission timeout; it doubles per retry (default 250 ms, OpenSSL's is 1 s).
    pub initial_retransmit_timeout: Duration,
    /// Cap on the doubling retransmission timeout (default 500 ms: under 30% loss each way a
    /// 1 s cap left 5 handshakes in 2000 slower than 3 s, 500 ms none; see docs/benchmarks.md,
    /// "Handshakes under loss". A peer that never answers costs about 40 ClientHellos of
    /// 114 bytes in the default 10 s).
    pub max_retransmit_timeout: Duration,
    /// OpenSSL cipher list; only suites from the default list, in any order.
    pub ciphers: String,
    /// While established, send an authenticated keepalive when nothing else was sent for
    /// this long, so NAT bindings stay open (default `None`: off; see `engine::liveness`).
    pub keepalive_interval: Option<Duration>,
    /// While established, close the session when no authenticated datagram (a message or
    /// the peer's keepalive) arrived for this long (default `None`: off).
    pub idle_timeout: Option<Duration>,
    /// Carry WebRTC data channels (SCTP over DTLS, RFC 8261) instead of plain messages
    /// (default `None`: plain messages; see `channels`).
    pub channels: Option<ChannelsConfig>,
}

/// Settings of a connection's data channels; `ChannelsConfig::default()` documents every default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelsConfig {
    /// Largest message sent or received on a channel (default 16 MiB). The peer's SCTP may
    /// hold this much of one message while it reassembles it, so it also sizes the receive
    /// window.
    pub max_message_size: usize,
    /// A channel's send buffer above which the application is asked to wait, and its
    /// unread messages above which no more are taken out of SCTP for it (default 1 MiB).
    pub buffer_high_water: usize,
}

/// Largest `ChannelsConfig::max_message_size`: SCTP's window is a 32-bit count.
pub const MAX_CHANNEL_MESSAGE_SIZE: usize = 1 << 30;

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            buffer_high_water: 1 << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mtu: 1200,
            handshake_timeout: Duration::from_secs(10),
            initial_retransmit_timeout: Duration::from_millis(250),
            max_retransmit_timeout: Duration::from_millis(500),
            ciphers: DEFAULT_CIPHERS.to_owned(),
            keepalive_interval: None,
            idle_timeout: None,
            channels: None,
        }
    }
}

/// A setting outside what the engine can honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `mtu` outside `MIN_MTU..=MAX_MTU`.
    Mtu(usize),
    /// `handshake_timeout` zero or over an hour.
    HandshakeTimeout(Duration),
    /// `initial_retransmit_timeout` below the minimum or above `handshake_timeout`.
    InitialRetransmitTimeout {
        /// The value given.
        value: Duration,
        /// The largest allowed: the handshake timeout.
        max: Duration,
    },
    /// `max_retransmit_timeout` below the initial timeout or above 60 s.
    MaxRetransmitTimeout(Duration),
    /// A cipher list that is empty, repeats a suite, or names one outside the allowed family.
    Ciphers(String),
    /// OpenSSL refused to set up the context (message from OpenSSL).
    OpenSsl(String),
    /// `keepalive_interval` or `idle_timeout` (named) zero or over a day.
    Liveness(&'static str, Duration),
    /// A `ChannelsConfig` size (named) zero or over `MAX_CHANNEL_MESSAGE_SIZE`.
    Channels(&'static str, usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mtu(mtu) => write!(f, "mtu must be between {MIN_MTU} and {MAX_MTU} bytes, got {mtu}"),
            Self::HandshakeTimeout(d) => write!(
                f,
                "handshake_timeout must be more than 0 and at most 3600 seconds, got {}",
                d.as_secs_f64()
            ),
            Self::InitialRetransmitTimeout { value, max } => write!(
                f,
                "initial_retransmit_timeout must be between {} and {} seconds (handshake_timeout), got {}",
                MIN_RETRANSMIT_TIMEOUT.as_secs_f64(),
                max.as_secs_f64(),
                value.as_secs_f64()
            ),
            Self::MaxRetransmitTimeout(d) => write!(
                f,
                "max_retransmit_timeout must be between initial_retransmit_timeout and 60 seconds, got {}",
                d.as_secs_f64()
            ),
            Self::Ciphers(why) => write!(
                f,
                "ciphers must be a ':'-separated list drawn from {}: {why}",
                ALLOWED_CIPHERS.join(", ")
            ),
            Self::OpenSsl(why) => write!(f, "OpenSSL refused the settings: {why}"),
            Self::Liveness(name, d) => write!(
                f,
                "{name} must be more than 0 and at most {} seconds, got {}",
                MAX_LIVENESS_PERIOD.as_secs(),
                d.as_secs_f64()
            ),
            Self::Channels(name, n) => write!(
                f,
                "{name} must be between 1 and {MAX_CHANNEL_MESSAGE_SIZE} bytes, got {n}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every setting; the engine refuses a config that fails this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if self.handshake_timeout.is_zero() || self.handshake_timeout > MAX_HANDSHAKE_TIMEOUT {
            return Err(ConfigError::HandshakeTimeout(self.handshake_timeout));
        }
        let initial = self.initial_retransmit_timeout;
        if initial < MIN_RETRANSMIT_TIMEOUT || initial > self.handshake_timeout {
            return Err(ConfigError::InitialRetransmitTimeout {
                value: initial,
                max: self.handshake_timeout,
            });
        }
        // OpenSSL's own cap is 60 s; a cap below the start would never let the timer grow.
        let max = self.max_retransmit_timeout;
        if max < initial || max > Duration::from_secs(60) {
            return Err(ConfigError::MaxRetransmitTimeout(max));
        }
        for (name, period) in [
            ("keepalive_interval", self.keepalive_interval),
            ("idle_timeout", self.idle_timeout),
        ] {
            if let Some(d) = period.filter(|d| d.is_zero() || *d > MAX_LIVENESS_PERIOD) {
                return Err(ConfigError::Liveness(name, d));
            }
        }
        if let Some(c) = &self.channels {
            if !(1..=MAX_CHANNEL_MESSAGE_SIZE).contains(&c.max_message_size) {
                return Err(ConfigError::Channels("max_message_size", c.max_message_size));
            }
            if !(1..=MAX_CHANNEL_MESSAGE_SIZE).contains(&c.buffer_high_water) {
                return Err(ConfigError::Channels("buffer_high_water", c.buffer_high_water));
            }
        }
        validate_ciphers(&self.ciphers)
    }

    /// Largest message `send` accepts: one record in one datagram of `mtu` bytes.
    pub fn max_message_size(&self) -> usize {
        self.mtu - RECORD_OVERHEAD
    }
}

fn validate_ciphers(list: &str) -> Result<(), ConfigError> {
    let names: Vec<&str> = list.split(':').collect();
    if list.is_empty() {
        return Err(ConfigError::Ciphers("the list is empty".into()));
    }
    for (i, name) in names.iter().enumerate() {
        if !ALLOWED_CIPHERS.contains(name) {
            return Err(ConfigError::Ciphers(format!("{name:?} is not allowed")));
        }
        if names[..i].contains(name) {
            return Err(ConfigError::Ciphers(format!("{name:?} appears twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.mtu, 1200);
        assert_eq!(c.max_message_size(), 1163);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.initial_retransmit_timeout, Duration::from_millis(250));
        assert_eq!(c.max_retransmit_timeout, Duration::from_millis(500));
        assert_eq!((c.keepalive_interval, c.idle_timeout), (None, None));
    }

    #[test]
    fn ciphers_may_narrow_or_reorder_within_the_family_only() {
        let ok = |s: &str| {
            Config {
                ciphers: s.into(),
                ..Config::default()
            }
            .validate()
        };
        assert!(ok("ECDHE-ECDSA-CHACHA20-POLY1305").is_ok());
        assert!(ok("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256").is_ok());
        for bad in [
            "",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-SHA",
            "ALL",
            "DEFAULT",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256:",
        ] {
            assert!(matches!(ok(bad), Err(ConfigError::Ciphers(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let base = Config::default();
        assert_eq!(
            Config {
                mtu: 255,
                ..base.clone()
            }
            .validate(),
            Err(ConfigError::Mtu(255))
        );
        assert_eq!(
            Config {
                mtu: 65_508,
                ..base.clone()
            }
            .validate(),
            Err(ConfigError::Mtu(65_508))
        );
        assert!(Config {
            handshake_timeout: Duration::ZERO,
            ..base.clone()
        }
        .validate()
        .is_err());
        let fast = Duration::from_millis(10);
        assert_eq!(
            Config {
                initial_retransmit_timeout: fast,
                ..base.clone()
            }
            .validate(),
            Err(ConfigError::InitialRetransmitTimeout {
                value: fast,
                max: Duration::from_secs(10)
            })
        );
        let long = Duration::from_secs(20);
        assert!(Config {
            initial_retransmit_timeout: long,
            ..base
        }
        .validate()
        .is_err());
    }

    #[test]
    fn auto_role_is_complementary() {
        let (a, b) = ("0a".repeat(32), "0b".repeat(32));
        assert_eq!(Role::auto(&a, &b), Role::Client);
        assert_eq!(Role::auto(&b, &a), Role::Server);
    }
}
