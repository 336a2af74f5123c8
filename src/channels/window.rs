//! Caps the receive window we advertise to the peer's SCTP.
//!
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

/// SCTP's CRC32c (RFC 9260 Appendix A), as sctp-proto computes it.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const COMMON_HEADER: usize = 12;
/// INIT, INIT ACK and SACK carry the advertised receiver window at the same offset.
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const SACK: u8 = 3;
const A_RWND: std::ops::Range<usize> = 8..12;

/// Lowers every advertised window in `packet` to `cap`; the checksum is redone if anything
/// changed. A malformed packet (ours never is) is left as it is.
pub(super) fn clamp(packet: &mut [u8], cap: u32) {
    let mut changed = false;
    let mut at = COMMON_HEADER;
    while at + 4 <= packet.len() {
        let kind = packet[at];
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        if len < 4 || at + len > packet.len() {
            return;
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

/// Whether `packet` has a chunk `clamp` may change (most packets carry only DATA).
pub(super) fn advertises_window(packet: &[u8]) -> bool {
    let mut at = COMMON_HEADER;
    while at + 4 <= packet.len() {
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        if matches!(packet[at], INIT | INIT_ACK | SACK) {
            return true;
        }
        if len < 4 {
            return false;
        }
        at += (len + 3) & !3;
    }
    false
}

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
        assert!(advertises_window(&p));
        clamp(&mut p, 1 << 20);
        assert!(checksum_ok(&p));
        assert_eq!(&p[36 + 8..36 + 12], &(1u32 << 20).to_be_bytes());
        assert_eq!(&p[12..33], data, "the DATA chunk is untouched");
    }

    #[test]
    fn a_small_window_and_data_only_packets_are_left_alone() {
        let sack: &[u8] = &[3, 0, 0, 16, 0, 0, 0, 7, 0, 0, 0x10, 0, 0, 0, 0, 0];
        let mut p = packet(&[sack]);
        let before = p.clone();
        clamp(&mut p, 1 << 20);
        assert_eq!(p, before);
        let data: &[u8] = &[0, 3, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 53, b'x'];
        assert!(!advertises_window(&packet(&[data])));
    }

    #[test]
    fn malformed_chunk_lengths_stop_the_walk() {
        let mut p = packet(&[&[3, 0, 0, 2]]);
        let before = p.clone();
        clamp(&mut p, 1);
        assert_eq!(p, before);
        assert!(advertises_window(&p), "the chunk type alone says SACK");
        let mut short = vec![0u8; 13];
        clamp(&mut short, 1);
        assert!(!advertises_window(&short));
    }
}
