//! A connection's counters and the one schema users see them through: each key, its value and
//! what it means, in the order `stats()` shows them. The Python dict is built from
//! [`DriverStats::fields`], and a unit test holds the README's stats table to it, so a counter
//! cannot be added, renamed or dropped in one place only.

use std::time::Duration;

use crate::engine::Stats;

/// Counters kept by the driver on top of the engine's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// The engine's counters.
    pub engine: Stats,
    /// Datagrams from an address other than the peer's.
    pub dropped_wrong_source: u64,
    /// Decrypted messages dropped because the receive queue was full.
    pub dropped_queue_full: u64,
    /// Socket errors on send (the datagram is lost, like any UDP loss).
    pub send_errors: u64,
}

/// One value as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatValue {
    /// A count.
    Count(u64),
    /// A duration in seconds, or nothing yet.
    Seconds(Option<Duration>),
}

/// One key of the stats schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatField {
    /// The key; `group.name` puts `name` in the nested dict `group` (`dropped.not_dtls`).
    pub key: &'static str,
    /// Its value now.
    pub value: StatValue,
    /// What it counts, as the README's stats table says it (Markdown, one line).
    pub doc: &'static str,
}

/// Number of keys in the schema.
pub const STAT_FIELDS: usize = 22;

impl DriverStats {
    /// Every key users see, with its value and meaning, in the order `stats()` shows them.
    pub fn fields(&self) -> [StatField; STAT_FIELDS] {
        use StatValue::{Count, Seconds};
        // Taken apart without `..`: a counter added to either struct does not compile until
        // it is in the schema (and so in the Python dict and the README).
        let Self {
            engine,
            dropped_wrong_source,
            dropped_queue_full,
            send_errors,
        } = self;
        let Stats {
            datagrams_in,
            bytes_in,
            datagrams_out,
            bytes_out,
            retransmissions,
            messages_in,
            messages_out,
            dropped_not_dtls,
            dropped_invalid,
            dropped_early,
            dropped_after_close,
            dropped_stale_handshake,
            dropped_new_handshake,
            peer_restarts,
            handshake_attempts,
            handshake_duration,
            handshake_rtt,
            keepalives_out,
            keepalives_in,
        } = engine;
        let field = |key, value, doc| StatField { key, value, doc };
        [
            field("datagrams_in", Count(*datagrams_in), "Datagrams received from the peer's address."),
            field("bytes_in", Count(*bytes_in), "Bytes in those datagrams."),
            field("datagrams_out", Count(*datagrams_out), "Datagrams sent to the peer."),
            field("bytes_out", Count(*bytes_out), "Bytes in those datagrams."),
            field("messages_in", Count(*messages_in), "Application messages received."),
            field("messages_out", Count(*messages_out), "Application messages sent."),
            field(
                "retransmissions",
                Count(*retransmissions),
                "Handshake flights sent again (see \"Damaged handshakes, restarted peers\").",
            ),
            field(
                "handshake_attempts",
                Count(*handshake_attempts),
                "Handshake attempts; more than 1 when a damaged or aborted attempt was started again.",
            ),
            field(
                "peer_restarts",
                Count(*peer_restarts),
                "Times the peer restarted and its new, verified handshake replaced the session.",
            ),
            field(
                "send_errors",
                Count(*send_errors),
                "Socket errors on send (the datagram is lost, like any UDP loss).",
            ),
            field(
                "handshake_duration",
                Seconds(*handshake_duration),
                "Seconds from the start of the handshake to the verified session, or `None`.",
            ),
            field(
                "handshake_rtt",
                Seconds(*handshake_rtt),
                "Seconds, or `None`: the one round trip the handshake measures (below).",
            ),
            field(
                "keepalives_out",
                Count(*keepalives_out),
                "Keepalives sent (see \"Liveness\").",
            ),
            field("keepalives_in", Count(*keepalives_in), "Authenticated keepalives received."),
            field(
                "dropped.not_dtls",
                Count(*dropped_not_dtls),
                "Datagrams that were not DTLS (late hole-punch packets, noise).",
            ),
            field(
                "dropped.invalid",
                Count(*dropped_invalid),
                "Bad MAC, replay, truncated, or any other record an established session discards, such as a forged ClientHello.",
            ),
            field(
                "dropped.early",
                Count(*dropped_early),
                "Datagrams beyond the 64 kept before the handshake starts.",
            ),
            field(
                "dropped.after_close",
                Count(*dropped_after_close),
                "Datagrams that arrived after the session ended.",
            ),
            field(
                "dropped.stale_handshake",
                Count(*dropped_stale_handshake),
                "The peer still sending a handshake attempt that was abandoned, a ClientHello other than the one the handshake answers, or a session this side no longer has.",
            ),
            field(
                "dropped.new_handshake",
                Count(*dropped_new_handshake),
                "Datagrams of a new handshake that arrived on an established connection (a restarted peer's or a forged one); they go to that handshake, not to the session.",
            ),
            field(
                "dropped.wrong_source",
                Count(*dropped_wrong_source),
                "Datagrams from an address other than the peer's.",
            ),
            field(
                "dropped.queue_full",
                Count(*dropped_queue_full),
                "Decrypted messages dropped because the receive queue was full (`receive_queue_size`).",
            ),
        ]
    }
}

/// Asserts that the first `| key | meaning |` table after `heading` in the README has exactly
/// `expected` as its rows: the test that holds each stats table to its schema.
#[cfg(test)]
pub(crate) fn assert_readme_table(heading: &str, expected: &[String]) {
    let readme = include_str!("../../README.md");
    let section = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README has a {heading:?} section"))
        .1;
    let rows: Vec<&str> = (section.lines())
        .skip_while(|line| !line.starts_with("| key |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .collect();
    assert_eq!(
        rows,
        expected,
        "the README's table under {heading:?} must read:\n| key | meaning |\n|---|---|\n{}",
        expected.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's stats table as it must read: one row per key, in schema order.
    fn expected_rows() -> Vec<String> {
        DriverStats::default()
            .fields()
            .iter()
            .map(|f| format!("| `{}` | {} |", f.key, f.doc))
            .collect()
    }

    #[test]
    fn the_readme_table_lists_exactly_the_schema() {
        assert_readme_table("### Properties and stats", &expected_rows());
    }

    #[test]
    fn every_counter_is_in_the_schema_once_with_its_own_value() {
        // Give each counter a distinct value; the schema must show each under its own key.
        let mut stats = DriverStats::default();
        let e = &mut stats.engine;
        let counters = [
            &mut e.datagrams_in,
            &mut e.bytes_in,
            &mut e.datagrams_out,
            &mut e.bytes_out,
            &mut e.messages_in,
            &mut e.messages_out,
            &mut e.retransmissions,
            &mut e.handshake_attempts,
            &mut e.peer_restarts,
            &mut e.keepalives_out,
            &mut e.keepalives_in,
            &mut e.dropped_not_dtls,
            &mut e.dropped_invalid,
            &mut e.dropped_early,
            &mut e.dropped_after_close,
            &mut e.dropped_stale_handshake,
            &mut e.dropped_new_handshake,
        ];
        for (n, counter) in (1..).zip(counters) {
            *counter = n;
        }
        stats.send_errors = 18;
        stats.dropped_wrong_source = 19;
        stats.dropped_queue_full = 20;
        stats.engine.handshake_duration = Some(Duration::from_millis(21));
        stats.engine.handshake_rtt = Some(Duration::from_millis(22));
        let fields = stats.fields();
        let value = |key: &str| fields.iter().find(|f| f.key == key).map(|f| f.value);
        assert_eq!(value("bytes_out"), Some(StatValue::Count(4)));
        assert_eq!(value("peer_restarts"), Some(StatValue::Count(9)));
        assert_eq!(value("dropped.new_handshake"), Some(StatValue::Count(17)));
        assert_eq!(value("send_errors"), Some(StatValue::Count(18)));
        assert_eq!(value("dropped.queue_full"), Some(StatValue::Count(20)));
        assert_eq!(
            value("handshake_rtt"),
            Some(StatValue::Seconds(Some(Duration::from_millis(22))))
        );
        let mut counts: Vec<u64> = fields
            .iter()
            .filter_map(|f| match f.value {
                StatValue::Count(n) => Some(n),
                StatValue::Seconds(_) => None,
            })
            .collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=20).collect::<Vec<_>>(),
            "a counter is missing or shown twice"
        );
        let mut keys: Vec<&str> = fields.iter().map(|f| f.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), STAT_FIELDS, "a key is used twice");
    }
}
