//! The data channel establishment protocol (DCEP, RFC 8832): the two messages that open a
//! channel in band, and the channel options they carry.
//!
//! Hand-written because it is two fixed layouts (no crate carries them apart from whole
//! WebRTC stacks); every length is checked against the message before it is read.

/// `DATA_CHANNEL_OPEN` (RFC 8832 §5.1).
const OPEN: u8 = 0x03;
/// `DATA_CHANNEL_ACK` (RFC 8832 §5.2).
const ACK: u8 = 0x02;
/// The channel-type bit for unordered delivery.
const UNORDERED: u8 = 0x80;
/// Fixed part of an open message: type, channel type, priority, reliability, two lengths.
const OPEN_HEADER: usize = 12;

/// How hard a channel tries to deliver (RFC 8831 §6.1; partial reliability is RFC 3758).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reliability {
    /// Every message is delivered, retransmitted as often as it takes.
    #[default]
    Reliable,
    /// A message is given up after this many retransmissions (0: sent once).
    MaxRetransmits(u32),
    /// A message is given up once it is this many milliseconds old.
    MaxLifetime(u32),
}

/// What a channel is: its name, its sub-protocol and its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelOptions {
    /// The application's name for it (need not be unique).
    pub label: String,
    /// The sub-protocol the application speaks on it ("" for none).
    pub protocol: String,
    /// Messages arrive in the order they were sent.
    pub ordered: bool,
    /// How hard a message is delivered.
    pub reliability: Reliability,
}

/// A parsed DCEP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Dcep {
    /// The peer opens a channel on this stream.
    Open(ChannelOptions),
    /// The peer accepted the channel we opened.
    Ack,
}

impl ChannelOptions {
    /// Reliable and ordered, with this label.
    pub fn reliable(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            ordered: true,
            ..Self::default()
        }
    }

    /// The channel-type byte and reliability parameter of an open message.
    fn channel_type(&self) -> (u8, u32) {
        let (kind, parameter) = match self.reliability {
            Reliability::Reliable => (0x00, 0),
            Reliability::MaxRetransmits(n) => (0x01, n),
            Reliability::MaxLifetime(ms) => (0x02, ms),
        };
        (if self.ordered { kind } else { kind | UNORDERED }, parameter)
    }
}

/// The `DATA_CHANNEL_OPEN` message for `options`; `None` if the label or protocol is longer
/// than the 16-bit length field can say.
pub(super) fn encode_open(options: &ChannelOptions) -> Option<Vec<u8>> {
    let label = u16::try_from(options.label.len()).ok()?;
    let protocol = u16::try_from(options.protocol.len()).ok()?;
    let (kind, parameter) = options.channel_type();
    let mut out = Vec::with_capacity(OPEN_HEADER + options.label.len() + options.protocol.len());
    out.push(OPEN);
    out.push(kind);
    out.extend_from_slice(&0u16.to_be_bytes()); // priority: unused here
    out.extend_from_slice(&parameter.to_be_bytes());
    out.extend_from_slice(&label.to_be_bytes());
    out.extend_from_slice(&protocol.to_be_bytes());
    out.extend_from_slice(options.label.as_bytes());
    out.extend_from_slice(options.protocol.as_bytes());
    Some(out)
}

/// The `DATA_CHANNEL_ACK` message.
pub(super) fn encode_ack() -> Vec<u8> {
    vec![ACK]
}

/// Parses a DCEP message; `None` for anything malformed or unknown (RFC 8832 §5: ignored).
pub(super) fn decode(message: &[u8]) -> Option<Dcep> {
    match *message.first()? {
        ACK => Some(Dcep::Ack),
        OPEN => decode_open(message).map(Dcep::Open),
        _ => None,
    }
}

fn decode_open(message: &[u8]) -> Option<ChannelOptions> {
    let header = message.get(..OPEN_HEADER)?;
    let kind = header[1];
    let parameter = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let label_len = usize::from(u16::from_be_bytes([header[8], header[9]]));
    let protocol_len = usize::from(u16::from_be_bytes([header[10], header[11]]));
    let label = message.get(OPEN_HEADER..OPEN_HEADER + label_len)?;
    let protocol = message.get(OPEN_HEADER + label_len..OPEN_HEADER + label_len + protocol_len)?;
    let reliability = match kind & !UNORDERED {
        0x00 => Reliability::Reliable,
        0x01 => Reliability::MaxRetransmits(parameter),
        0x02 => Reliability::MaxLifetime(parameter),
        _ => return None,
    };
    Some(ChannelOptions {
        // RFC 8832 §5.1: both are UTF-8; a peer that sends otherwise gets the lossy reading.
        label: String::from_utf8_lossy(label).into_owned(),
        protocol: String::from_utf8_lossy(protocol).into_owned(),
        ordered: kind & UNORDERED == 0,
        reliability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_round_trips_every_channel_type() {
        for (ordered, reliability) in [
            (true, Reliability::Reliable),
            (false, Reliability::Reliable),
            (true, Reliability::MaxRetransmits(3)),
            (false, Reliability::MaxRetransmits(0)),
            (false, Reliability::MaxLifetime(1500)),
        ] {
            let options = ChannelOptions {
                label: "chat ✓".into(),
                protocol: "json".into(),
                ordered,
                reliability,
            };
            let wire = encode_open(&options).unwrap();
            assert_eq!(decode(&wire), Some(Dcep::Open(options)));
        }
    }

    #[test]
    fn the_wire_layout_is_rfc_8832s() {
        let options = ChannelOptions {
            label: "ab".into(),
            protocol: "p".into(),
            ordered: false,
            reliability: Reliability::MaxRetransmits(7),
        };
        let wire = encode_open(&options).unwrap();
        assert_eq!(wire, [3, 0x81, 0, 0, 0, 0, 0, 7, 0, 2, 0, 1, b'a', b'b', b'p']);
        assert_eq!(decode(&[2]), Some(Dcep::Ack));
    }

    #[test]
    fn truncated_or_unknown_messages_are_ignored() {
        let wire = encode_open(&ChannelOptions::reliable("label")).unwrap();
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(&[0x04]), None);
        let mut bad_type = wire.clone();
        bad_type[1] = 0x03;
        assert_eq!(decode(&bad_type), None);
    }
}
