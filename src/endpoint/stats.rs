//! The endpoint's own counters, and their one schema (key, value, meaning) from which the
//! Python dict and the README's endpoint stats table are made.

/// What happened on the endpoint as a whole; each connection keeps its own stats besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed to the endpoint.
    pub datagrams_in: u64,
    /// Datagrams it produced (DTLS and the application's own).
    pub datagrams_out: u64,
    /// Connections handshaking or established now.
    pub connections: u64,
    /// Incoming handshakes in progress now.
    pub pending_handshakes: u64,
    /// Established incoming connections not yet accepted, now.
    pub backlog: u64,
    /// HelloVerifyRequests sent (stateless cookie challenges).
    pub hello_verify_requests: u64,
    /// Incoming handshakes started (a ClientHello with a valid cookie, or any ClientHello
    /// when cookies are off).
    pub handshakes_started: u64,
    /// Incoming handshakes that ended verified and allowed.
    pub handshakes_accepted: u64,
    /// Incoming handshakes that failed or were refused (allow policy, pin, timeout).
    pub handshakes_refused: u64,
    /// ClientHellos dropped because a bound was reached (pending handshakes, connections or
    /// the accept backlog).
    pub dropped_over_limit: u64,
    /// DTLS datagrams from an address with no connection that were not a ClientHello we
    /// answer (or any, when the endpoint does not accept).
    pub dropped_unknown_source: u64,
    /// The application's datagrams dropped because its queue was full.
    pub dropped_datagram_queue_full: u64,
    /// Datagrams that were not DTLS, queued for the application.
    pub app_datagrams_in: u64,
    /// The application's datagrams sent.
    pub app_datagrams_out: u64,
    /// Established peers moved to a new address (`allow_migration`).
    pub migrations: u64,
}

/// Number of keys in the schema.
pub const ENDPOINT_STAT_FIELDS: usize = 15;

impl EndpointStats {
    /// Every key users see, its value and what it counts (the README's wording), in order.
    pub fn fields(&self) -> [(&'static str, u64, &'static str); ENDPOINT_STAT_FIELDS] {
        // Taken apart without `..`: a counter added here does not compile until it is listed.
        let Self {
            datagrams_in,
            datagrams_out,
            connections,
            pending_handshakes,
            backlog,
            hello_verify_requests,
            handshakes_started,
            handshakes_accepted,
            handshakes_refused,
            dropped_over_limit,
            dropped_unknown_source,
            dropped_datagram_queue_full,
            app_datagrams_in,
            app_datagrams_out,
            migrations,
        } = self.clone();
        [
            ("datagrams_in", datagrams_in, "Datagrams read from the socket."),
            (
                "datagrams_out",
                datagrams_out,
                "Datagrams sent (DTLS and the application's own).",
            ),
            (
                "connections",
                connections,
                "Connections handshaking or established now.",
            ),
            (
                "pending_handshakes",
                pending_handshakes,
                "Incoming handshakes in progress now.",
            ),
            (
                "backlog",
                backlog,
                "Established incoming connections not yet accepted, now.",
            ),
            (
                "hello_verify_requests",
                hello_verify_requests,
                "HelloVerifyRequests sent (stateless cookie challenges).",
            ),
            (
                "handshakes_started",
                handshakes_started,
                "Incoming handshakes started (after a valid cookie).",
            ),
            (
                "handshakes_accepted",
                handshakes_accepted,
                "Incoming handshakes verified and allowed.",
            ),
            (
                "handshakes_refused",
                handshakes_refused,
                "Incoming handshakes that failed or were refused.",
            ),
            (
                "dropped.over_limit",
                dropped_over_limit,
                "ClientHellos dropped at `max_pending_handshakes`, `max_connections` or a full backlog.",
            ),
            (
                "dropped.unknown_source",
                dropped_unknown_source,
                "DTLS datagrams from an address with no connection that were not a ClientHello.",
            ),
            (
                "dropped.datagram_queue_full",
                dropped_datagram_queue_full,
                "The application's datagrams dropped because `recv_datagram()`'s queue was full.",
            ),
            (
                "app_datagrams_in",
                app_datagrams_in,
                "Datagrams that were not DTLS, queued for `recv_datagram()`.",
            ),
            (
                "app_datagrams_out",
                app_datagrams_out,
                "Datagrams sent with `send_datagram()`.",
            ),
            (
                "migrations",
                migrations,
                "Established peers moved to a new address (`allow_migration`).",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's endpoint stats table as it must read: one row per key, in schema order.
    fn expected_rows() -> Vec<String> {
        (EndpointStats::default().fields().iter())
            .map(|(key, _, doc)| format!("| `{key}` | {doc} |"))
            .collect()
    }

    #[test]
    fn the_readme_table_lists_exactly_the_schema() {
        crate::driver::assert_readme_table("### Endpoint stats", &expected_rows());
    }

    #[test]
    fn every_counter_is_in_the_schema_once_with_its_own_value() {
        let mut stats = EndpointStats::default();
        let counters = [
            &mut stats.datagrams_in,
            &mut stats.datagrams_out,
            &mut stats.connections,
            &mut stats.pending_handshakes,
            &mut stats.backlog,
            &mut stats.hello_verify_requests,
            &mut stats.handshakes_started,
            &mut stats.handshakes_accepted,
            &mut stats.handshakes_refused,
            &mut stats.dropped_over_limit,
            &mut stats.dropped_unknown_source,
            &mut stats.dropped_datagram_queue_full,
            &mut stats.app_datagrams_in,
            &mut stats.app_datagrams_out,
            &mut stats.migrations,
        ];
        for (n, counter) in (1..).zip(counters) {
            *counter = n;
        }
        let values: Vec<u64> = stats.fields().iter().map(|(_, value, _)| *value).collect();
        assert_eq!(values, (1..=ENDPOINT_STAT_FIELDS as u64).collect::<Vec<_>>());
    }
}
