//! The few DTLS record-layer facts the engine reads before OpenSSL does.

const RECORD_HEADER: usize = 13;
const HANDSHAKE: u8 = 22;
/// The alert content type.
pub(super) const ALERT: u8 = 21;
const CLIENT_HELLO: u8 = 1;

/// Whether `datagram` begins with the first fragment of a ClientHello (epoch 0), the only
/// thing a server that restarted can make progress with.
pub(crate) fn starts_with_client_hello(datagram: &[u8]) -> bool {
    // Record header (13 bytes): type, version, epoch, sequence, length; then the handshake
    // header: type, length (3), message_seq (2), fragment_offset (3), fragment_length (3).
    datagram.len() >= 25
        && datagram[0] == HANDSHAKE
        && datagram[3..5] == [0, 0]
        && datagram[13] == CLIENT_HELLO
        && datagram[19..22] == [0, 0, 0]
}

/// The client random of the ClientHello that starts `datagram`, if it does.
pub(super) fn client_hello_random(datagram: &[u8]) -> Option<[u8; 32]> {
    // After the headers: client_version (2 bytes), then the 32-byte random.
    starts_with_client_hello(datagram)
        .then(|| datagram.get(27..59)?.try_into().ok())
        .flatten()
}

/// Whether `datagram` is an epoch-0 HelloRequest (a server asking for a new handshake).
pub(super) fn is_hello_request(datagram: &[u8]) -> bool {
    const HELLO_REQUEST: u8 = 0;
    datagram.len() >= 25 && datagram[0] == HANDSHAKE && datagram[3..5] == [0, 0] && datagram[13] == HELLO_REQUEST
}

/// A HelloRequest record with sequence number `seq` (epoch 0, empty body).
pub(super) fn hello_request(seq: u64) -> Vec<u8> {
    let mut record = vec![HANDSHAKE, 0xfe, 0xfd, 0, 0];
    record.extend_from_slice(&seq.to_be_bytes()[2..]);
    record.extend_from_slice(&[0, 12]);
    // msg_type 0, length 0, message_seq 0, fragment_offset 0, fragment_length 0.
    record.extend_from_slice(&[0; 12]);
    record
}

/// Whether `datagram` carries handshake traffic rather than records of an established
/// session: anything in epoch 0, or a handshake record (Finished) in a later epoch, which an
/// established session without renegotiation never receives.
pub(super) fn is_handshake_traffic(datagram: &[u8]) -> bool {
    datagram.len() >= RECORD_HEADER && (datagram[3..5] == [0, 0] || datagram[0] == HANDSHAKE)
}

/// Whether the first record of `datagram` is from epoch 0.
pub(super) fn is_epoch_zero(datagram: &[u8]) -> bool {
    datagram.len() >= RECORD_HEADER && datagram[3..5] == [0, 0]
}

/// One record header in a datagram, as [`records`] finds it.
struct Record<'a> {
    /// Offset of the header in the datagram.
    at: usize,
    header: &'a [u8],
    /// The body length the header declares (it may run past the datagram's end).
    length: usize,
}

impl Record<'_> {
    fn is_epoch_zero(&self) -> bool {
        self.header[3..5] == [0, 0]
    }

    /// Where the record's body ends, by its header (past the datagram if truncated).
    fn end(&self) -> usize {
        self.at + RECORD_HEADER + self.length
    }
}

/// The records of `datagram` in order, as far as whole 13-byte headers go: the one walk over
/// record headers that the checks below share.
fn records(datagram: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = datagram.get(at..at + RECORD_HEADER)?;
        let record = Record {
            at,
            header,
            length: usize::from(u16::from_be_bytes([header[11], header[12]])),
        };
        at = record.end();
        Some(record)
    })
}

/// Gives every epoch-0 record in `datagram` the next number from `next`.
///
/// Epoch-0 records carry no MAC, so a corrupted sequence number is accepted as it is and moves
/// OpenSSL's replay window far ahead; every later record of the handshake then looks like a
/// replay and the attempt stalls until the deadline (one flipped bit did this in our corruption
/// tests). Handshake messages have their own numbering for duplicates and order, so nothing
/// relies on these sequence numbers; numbering them locally keeps the window sane. Later
/// epochs are authenticated (the sequence number is part of the AEAD input) and left alone.
pub(super) fn renumber_epoch_zero(datagram: &mut [u8], next: &mut u64) {
    // Offsets first: the walk borrows the datagram that the numbering then writes.
    let epoch_zero: Vec<usize> = records(datagram).filter(Record::is_epoch_zero).map(|r| r.at).collect();
    for at in epoch_zero {
        datagram[at + 5..at + 11].copy_from_slice(&next.to_be_bytes()[2..]);
        *next += 1;
    }
}

/// A key that is the same for two copies of one datagram, whether the sender copied it
/// byte for byte or OpenSSL sent it again with new epoch-0 record numbers (later epochs are
/// encrypted under their number, so only byte-identical copies match there).
pub(super) fn repeat_key(datagram: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut covered = 0;
    for record in records(datagram) {
        let end = record.end().min(datagram.len());
        if record.is_epoch_zero() {
            record.header[..5].hash(&mut hasher);
            datagram[record.at + 11..end].hash(&mut hasher);
        } else {
            datagram[record.at..end].hash(&mut hasher);
        }
        covered = end;
    }
    datagram[covered..].hash(&mut hasher);
    hasher.finish()
}

/// Whether `datagram` holds an epoch-0 record no DTLS 1.2 peer sends: a ChangeCipherSpec
/// other than the single byte 1, an alert that is not 2 bytes, a handshake record too short
/// for its header, or application data before any keys exist. OpenSSL aborts the handshake on
/// such a record; since it carries no MAC it is as likely damage as anything, so the engine
/// drops the datagram instead and lets retransmission bring a good copy.
pub(super) fn has_impossible_epoch_zero_record(datagram: &[u8]) -> bool {
    const CHANGE_CIPHER_SPEC: u8 = 20;
    const APPLICATION_DATA: u8 = 23;
    records(datagram).filter(Record::is_epoch_zero).any(|record| {
        let body = datagram.get(record.at + RECORD_HEADER..record.end());
        match (record.header[0], body) {
            (CHANGE_CIPHER_SPEC, Some(body)) => body != [1],
            (ALERT, _) => record.length != 2,
            (HANDSHAKE, _) => record.length < 12,
            (APPLICATION_DATA, _) => true,
            _ => false,
        }
    })
}

/// Whether a datagram holds an encrypted record (epoch > 0) too short to carry the AEAD's
/// explicit nonce and tag. OpenSSL does not drop such a record quietly like other bad ones:
/// it fails the session with an internal_error alert, so one forged datagram from anyone who
/// can spoof the peer's address would end an established session.
pub(super) fn has_short_encrypted_record(datagram: &[u8], min_len: usize) -> bool {
    records(datagram).any(|record| !record.is_epoch_zero() && record.length < min_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_is_recognised_by_its_headers() {
        let mut hello = vec![
            22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 1, 0, 0, 88, 0, 0, 0, 0, 0, 0, 0, 88,
        ];
        hello.resize(113, 0);
        assert!(starts_with_client_hello(&hello));
        let mut later_epoch = hello.clone();
        later_epoch[4] = 1;
        assert!(!starts_with_client_hello(&later_epoch));
        let mut second_fragment = hello.clone();
        second_fragment[21] = 40;
        assert!(!starts_with_client_hello(&second_fragment));
        assert!(!starts_with_client_hello(&hello[..20]));
    }

    #[test]
    fn hello_request_is_recognised_and_routed_as_handshake_traffic() {
        let request = hello_request(3);
        assert_eq!(request.len(), 25);
        assert!(is_hello_request(&request) && is_handshake_traffic(&request) && is_epoch_zero(&request));
        assert!(!starts_with_client_hello(&request));
        assert_eq!(client_hello_random(&request), None);
        let data = record(23, 1, b"message");
        assert!(!is_handshake_traffic(&data) && !is_epoch_zero(&data));
        assert!(is_handshake_traffic(&record(22, 1, &[0; 40])));
    }

    fn record(content: u8, epoch: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 1];
        r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn records_no_peer_sends_in_epoch_zero_are_recognised() {
        let ccs = record(20, 0, &[1]);
        let finished = record(22, 1, &[7; 40]);
        assert!(!has_impossible_epoch_zero_record(
            &[ccs.clone(), finished.clone()].concat()
        ));
        assert!(!has_impossible_epoch_zero_record(&record(21, 0, &[2, 40])));
        assert!(!has_impossible_epoch_zero_record(&record(22, 0, &[0; 12])));
        for bad in [
            record(20, 0, &[2]),
            record(20, 0, &[1, 1]),
            record(21, 0, &[2]),
            record(22, 0, &[1; 5]),
            record(23, 0, b"data"),
        ] {
            assert!(
                has_impossible_epoch_zero_record(&[finished.clone(), bad.clone()].concat()),
                "{bad:?}"
            );
            // The same records in epoch 1 are OpenSSL's to judge (they carry a MAC).
            let mut later = bad.clone();
            later[4] = 1;
            assert!(!has_impossible_epoch_zero_record(&later), "{later:?}");
        }
    }

    #[test]
    fn epoch_zero_records_are_numbered_locally_and_later_epochs_kept() {
        let record = |epoch: u8, seq: u64, body: &[u8]| {
            let mut r = vec![22, 0xfe, 0xfd, 0, epoch];
            r.extend_from_slice(&seq.to_be_bytes()[2..]);
            r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
            r.extend_from_slice(body);
            r
        };
        let far_ahead = 1 << 40;
        let mut datagram = [record(0, far_ahead, b"abc"), record(1, 7, b"de"), record(0, 3, b"")].concat();
        let mut next = 5;
        renumber_epoch_zero(&mut datagram, &mut next);
        assert_eq!(
            datagram,
            [record(0, 5, b"abc"), record(1, 7, b"de"), record(0, 6, b"")].concat()
        );
        assert_eq!(next, 7);
        // A length running past the end stops the walk without touching anything further.
        let mut truncated = record(0, 9, b"abcdef");
        truncated.truncate(15);
        renumber_epoch_zero(&mut truncated, &mut next);
        assert_eq!(truncated[5..11], 7u64.to_be_bytes()[2..]);
    }
}
