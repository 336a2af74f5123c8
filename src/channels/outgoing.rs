//! What we change in our own outgoing SCTP packets: the receive window we advertise, and
//! the SACK-IMMEDIATELY bit on the last chunk of each message.
//!
//! **The window.**
//! The window must hold the largest message whole (sctp-proto reassembles whole messages
//! only), 17 MiB with the defaults, and a sender fills what it is offered. But sctp-proto's
//! send and receive queues cost time in proportion to what is in flight for every packet
//! (they re-sort, and rescan for expired and lost chunks, on each one): with 17 MiB in
//! flight a transfer spent most of its CPU there (perf, docs/design.md §11). So every
//! window we advertise (in INIT, INIT ACK and SACK chunks) is lowered to `cap` when it is
//! larger. The receive buffer itself stays large: bytes that arrived count against the
//! window only until they are acknowledged, so a message larger than the cap still
//! completes, `cap` bytes in flight at a time. Rewriting our own packet is plain SCTP: a
//! receiver may offer any window (RFC 9260 §6.2).
//!
//! **The end of a message.** A receiver acknowledges every second packet at once and an odd
//! last one only after its delayed-ACK timer (200 ms in sctp-proto). A sender that waits for
//! its buffer to drain before queueing the next message waited that long after each one. So
//! the chunk that ends a message carries the I bit (RFC 7053), which asks for the SACK at
//! once; stacks without RFC 7053 ignore it.

/// SCTP's CRC32c (RFC 9260 Appendix A), as sctp-proto computes it.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const COMMON_HEADER: usize = 12;
/// INIT, INIT ACK and SACK carry the advertised receiver window at the same offset.
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const SACK: u8 = 3;
const DATA: u8 = 0;
const A_RWND: std::ops::Range<usize> = 8..12;
/// DATA chunk flags: E (the message's last fragment) and I (SACK immediately, RFC 7053).
const ENDING: u8 = 0x01;
const SACK_IMMEDIATELY: u8 = 0x08;

/// Lowers every advertised window in `packet` to `cap` and asks for an immediate SACK on a
/// message's last chunk; the checksum is redone if anything changed. A malformed packet
/// (ours never is) is left as it is.
pub(super) fn adjust(packet: &mut [u8], cap: u32) {
    let mut changed = false;
    let mut at = COMMON_HEADER;
    while at + 4 <= packet.len() {
        let kind = packet[at];
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        if len < 4 || at + len > packet.len() {
            return;
        }
        if kind == DATA && packet[at + 1] & (ENDING | SACK_IMMEDIATELY) == ENDING {
            packet[at + 1] |= SACK_IMMEDIATELY;
            changed = true;
        }
        if matches!(kind, INIT | INIT_ACK | SACK) && len >= A_RWND.end {
            let field = &mut packet[at + A_RWND.start..at + A_RWND.end];
            let window = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            if window > cap {
                field.copy_from_slice(&cap.to_be_bytes());
                changed = true;
            }
        }
        at += (len + 3) & !3;
    }
    if changed {
        packet[8..12].fill(0);
        let sum = CRC32C.checksum(packet);
        packet[8..12].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Whether `packet` has a chunk `adjust` may change (most packets carry only DATA chunks
/// in the middle of a message).
pub(super) fn needs_adjusting(packet: &[u8]) -> bool {
    let mut at = COMMON_HEADER;
    while at + 4 <= packet.len() {
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        if matches!(packet[at], INIT | INIT_ACK | SACK) || (packet[at] == DATA && packet[at + 1] & ENDING != 0) {
            return true;
        }
        if len < 4 {
            return false;
        }
        at += (len + 3) & !3;
    }
    false
}

/// One DATA chunk's identity, as `data_chunks` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataChunk {
    pub(super) tsn: u32,
    pub(super) stream: u16,
    /// Bytes of user data.
    pub(super) len: usize,
    /// A DCEP message (PPID 50), not the application's.
    pub(super) dcep: bool,
}

/// The DATA chunks of one of our packets.
pub(super) fn data_chunks(packet: &[u8]) -> impl Iterator<Item = DataChunk> + '_ {
    let mut at = COMMON_HEADER;
    std::iter::from_fn(move || {
        while at + 16 <= packet.len() {
            let chunk = &packet[at..];
            let len = usize::from(u16::from_be_bytes([chunk[2], chunk[3]]));
            if len < 4 || at + len > packet.len() {
                return None;
            }
            at += (len + 3) & !3;
            if chunk[0] == DATA && len >= 16 {
                return Some(DataChunk {
                    tsn: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
                    stream: u16::from_be_bytes([chunk[8], chunk[9]]),
                    len: len - 16,
                    dcep: u32::from_be_bytes([chunk[12], chunk[13], chunk[14], chunk[15]]) == DCEP_PPID,
                });
            }
        }
        None
    })
}

/// DCEP's payload protocol identifier (RFC 8832 §8.1).
const DCEP_PPID: u32 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(chunks: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x13, 0x88, 0x13, 0x88, 1, 2, 3, 4, 0, 0, 0, 0];
        for c in chunks {
            p.extend_from_slice(c);
            while p.len() % 4 != 0 {
                p.push(0);
            }
        }
        let sum = CRC32C.checksum(&p);
        p[8..12].copy_from_slice(&sum.to_le_bytes());
        p
    }

    fn checksum_ok(p: &[u8]) -> bool {
        let mut copy = p.to_vec();
        copy[8..12].fill(0);
        CRC32C.checksum(&copy).to_le_bytes() == p[8..12]
    }

    #[test]
    fn a_large_sack_window_is_lowered_and_the_checksum_redone() {
        // SACK: cumulative TSN 7, a_rwnd 17 MiB, no gaps; after a DATA chunk of 5 bytes.
        let data: &[u8] = &[
            0, 3, 0, 21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 53, b'h', b'e', b'l', b'l', b'o',
        ];
        let sack: &[u8] = &[3, 0, 0, 16, 0, 0, 0, 7, 0x01, 0x10, 0, 0, 0, 0, 0, 0];
        let mut p = packet(&[data, sack]);
        assert!(needs_adjusting(&p));
        adjust(&mut p, 1 << 20);
        assert!(checksum_ok(&p));
        assert_eq!(&p[36 + 8..36 + 12], &(1u32 << 20).to_be_bytes());
        assert_eq!(
            p[13],
            0x03 | 0x08,
            "the message's last chunk asks for an immediate SACK"
        );
        assert_eq!(&p[14..33], &data[2..], "the rest of the DATA chunk is untouched");
    }

    #[test]
    fn a_small_window_and_data_only_packets_are_left_alone() {
        let sack: &[u8] = &[3, 0, 0, 16, 0, 0, 0, 7, 0, 0, 0x10, 0, 0, 0, 0, 0];
        let mut p = packet(&[sack]);
        let before = p.clone();
        adjust(&mut p, 1 << 20);
        assert_eq!(p, before);
        // A middle fragment (no E bit) is left alone.
        let data: &[u8] = &[0, 0, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 53, b'x'];
        assert!(!needs_adjusting(&packet(&[data])));
    }

    #[test]
    fn data_chunks_are_read_with_their_tsn_stream_and_length() {
        let data: &[u8] = &[
            0, 3, 0, 21, 0, 0, 0, 9, 0, 4, 0, 0, 0, 0, 0, 53, b'h', b'e', b'l', b'l', b'o',
        ];
        let dcep: &[u8] = &[0, 3, 0, 17, 0, 0, 0, 10, 0, 4, 0, 0, 0, 0, 0, 50, 2];
        let sack: &[u8] = &[3, 0, 0, 16, 0, 0, 0, 7, 0, 0, 0x10, 0, 0, 0, 0, 0];
        let p = packet(&[data, sack, dcep]);
        let chunks: Vec<DataChunk> = data_chunks(&p).collect();
        assert_eq!(
            chunks,
            [
                DataChunk {
                    tsn: 9,
                    stream: 4,
                    len: 5,
                    dcep: false
                },
                DataChunk {
                    tsn: 10,
                    stream: 4,
                    len: 1,
                    dcep: true
                },
            ]
        );
    }

    #[test]
    fn malformed_chunk_lengths_stop_the_walk() {
        let mut p = packet(&[&[3, 0, 0, 2]]);
        let before = p.clone();
        adjust(&mut p, 1);
        assert_eq!(p, before);
        assert!(needs_adjusting(&p), "the chunk type alone says SACK");
        let mut short = vec![0u8; 13];
        adjust(&mut short, 1);
        assert!(!needs_adjusting(&short));
    }
}
