//! Conversions for data channels: Python's channel options in, messages and channel
//! descriptions out.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::channels::{ChannelOptions, Message, Reliability};
use crate::config::ChannelsConfig;

/// The connection's channel settings from `(max_message_size, buffer_high_water)`.
pub(super) fn config((max_message_size, buffer_high_water): (usize, usize)) -> ChannelsConfig {
    ChannelsConfig {
        max_message_size,
        buffer_high_water,
    }
}

/// A channel's options; partial reliability is by count or by age, not both.
pub(super) fn options(
    label: String,
    protocol: String,
    ordered: bool,
    max_retransmits: Option<u32>,
    max_lifetime_ms: Option<u32>,
) -> PyResult<ChannelOptions> {
    let reliability = match (max_retransmits, max_lifetime_ms) {
        (None, None) => Reliability::Reliable,
        (Some(n), None) => Reliability::MaxRetransmits(n),
        (None, Some(ms)) => Reliability::MaxLifetime(ms),
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "max_retransmits and max_lifetime are mutually exclusive (RFC 8831 §6.1)",
            ))
        }
    };
    Ok(ChannelOptions {
        label,
        protocol,
        ordered,
        reliability,
    })
}

/// `(label, protocol, ordered, max_retransmits, max_lifetime_ms)`.
pub(super) fn info(options: ChannelOptions) -> (String, String, bool, Option<u32>, Option<u32>) {
    let (retransmits, lifetime) = match options.reliability {
        Reliability::Reliable => (None, None),
        Reliability::MaxRetransmits(n) => (Some(n), None),
        Reliability::MaxLifetime(ms) => (None, Some(ms)),
    };
    (options.label, options.protocol, options.ordered, retransmits, lifetime)
}

/// bytes, or str for a text message (a peer's invalid UTF-8 is replaced, as browsers do).
pub(super) fn message(py: Python<'_>, message: Message) -> Bound<'_, PyAny> {
    if message.text {
        PyString::new(py, &String::from_utf8_lossy(&message.data)).into_any()
    } else {
        PyBytes::new(py, &message.data).into_any()
    }
}
