//! Stateless DTLS cookies (RFC 6347 §4.2.1): what a ClientHello must look like for us to answer
//! it, and the HMAC that proves a client can receive at the address it sends from.
//!
//! The cookie covers the client's address and the ClientHello fields RFC 6347 says a retried
//! ClientHello keeps (client_version, random, session_id, cipher_suites, compression_methods),
//! never the extensions: pion/dtls offers other groups in its retried ClientHello, and a cookie
//! over the whole message would lock it out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

/// How long a secret makes new cookies; a cookie verifies for one more period after that,
/// so a client always has at least this long to retry.
pub const COOKIE_ROTATION: Duration = Duration::from_secs(60);
/// Bytes in a cookie (an HMAC-SHA256; the listener's OpenSSL callbacks hand out this many).
pub const COOKIE_LEN: usize = crate::engine::LISTEN_COOKIE_LEN;
/// Bytes in a secret.
const SECRET_LEN: usize = 32;

/// A cookie.
pub(crate) type Cookie = [u8; COOKIE_LEN];

const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;

/// The parts of an unfragmented epoch-0 ClientHello the cookie exchange reads, borrowed from
/// the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientHello<'a> {
    pub(crate) client_version: [u8; 2],
    pub(crate) random: &'a [u8],
    pub(crate) session_id: &'a [u8],
    /// Empty in a first ClientHello.
    pub(crate) cookie: &'a [u8],
    pub(crate) cipher_suites: &'a [u8],
    pub(crate) compression_methods: &'a [u8],
    /// Everything after compression_methods (not covered by the cookie).
    pub(crate) extensions: &'a [u8],
}

/// Reads `n` bytes.
fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (body.len() >= n).then(|| body.split_at(n))?;
    *body = rest;
    Some(head)
}

/// Reads a vector with a `width`-byte length prefix.
fn vector<'a>(body: &mut &'a [u8], width: usize) -> Option<&'a [u8]> {
    let len = take(body, width)?.iter().fold(0, |n, &b| n << 8 | usize::from(b));
    take(body, len)
}

impl<'a> ClientHello<'a> {
    /// The ClientHello that opens `datagram`, when the first record is an epoch-0 handshake
    /// record holding exactly one whole (unfragmented) ClientHello that parses. Anything else
    /// is not answered: reassembling fragments would take per-peer state, which is what the
    /// cookie exchange exists to avoid.
    pub(crate) fn parse(datagram: &'a [u8]) -> Option<Self> {
        let header = datagram.get(..RECORD_HEADER)?;
        if header[0] != HANDSHAKE || header[1] != 0xfe || header[3..5] != [0, 0] {
            return None;
        }
        let record_len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        let record = datagram.get(RECORD_HEADER..RECORD_HEADER + record_len)?;
        let (message, mut body) = (record.len() >= HANDSHAKE_HEADER).then(|| record.split_at(HANDSHAKE_HEADER))?;
        let u24 = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let (length, message_seq, offset, fragment) = (
            u24(&message[1..4]),
            u16::from_be_bytes([message[4], message[5]]),
            u24(&message[6..9]),
            u24(&message[9..12]),
        );
        // message_seq is 0, or 1 after a HelloVerifyRequest (OpenSSL takes no other).
        if message[0] != CLIENT_HELLO || message_seq > 1 || offset != 0 || fragment != length || body.len() != length {
            return None;
        }
        let client_version = take(&mut body, 2)?.try_into().ok()?;
        Some(Self {
            client_version,
            random: take(&mut body, 32)?,
            session_id: vector(&mut body, 1)?,
            cookie: vector(&mut body, 1)?,
            cipher_suites: vector(&mut body, 2)?,
            compression_methods: vector(&mut body, 1)?,
            extensions: body,
        })
    }
}

/// The rotating HMAC secrets: the current one makes cookies, it and the previous one verify.
pub(crate) struct CookieSecrets {
    current: PKey<Private>,
    previous: Option<PKey<Private>>,
    /// When `current` took over (set by the first `rotate`).
    since: Option<Instant>,
}

impl std::fmt::Debug for CookieSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("CookieSecrets")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

fn fresh_secret() -> Result<PKey<Private>, ErrorStack> {
    let mut secret = [0; SECRET_LEN];
    openssl::rand::rand_bytes(&mut secret)?;
    PKey::hmac(&secret)
}

impl CookieSecrets {
    pub(crate) fn new() -> Result<Self, ErrorStack> {
        Ok(Self {
            current: fresh_secret()?,
            previous: None,
            since: None,
        })
    }

    /// Moves to the secret for `now`: one period on, the current secret becomes the previous
    /// one; two or more, both are replaced (a cookie that old must not verify).
    pub(crate) fn rotate(&mut self, now: Instant) -> Result<(), ErrorStack> {
        let since = *self.since.get_or_insert(now);
        let periods = now.saturating_duration_since(since).as_nanos() / COOKIE_ROTATION.as_nanos();
        if periods == 0 {
            return Ok(());
        }
        let fresh = fresh_secret()?;
        let old = std::mem::replace(&mut self.current, fresh);
        self.previous = (periods == 1).then_some(old);
        // At most 2^32 periods of 60 s fit in any `Instant` range we meet; saturate anyway.
        self.since = Some(since + COOKIE_ROTATION * u32::try_from(periods).unwrap_or(u32::MAX));
        Ok(())
    }

    /// The cookie a HelloVerifyRequest gives `from` for `hello`, and the one made with the
    /// previous secret (if any): a retried ClientHello must return one of them.
    pub(crate) fn cookies(
        &self,
        from: SocketAddr,
        hello: &ClientHello<'_>,
    ) -> Result<(Cookie, Option<Cookie>), ErrorStack> {
        let current = cookie(&self.current, from, hello)?;
        let previous = self.previous.as_ref().map(|s| cookie(s, from, hello)).transpose()?;
        Ok((current, previous))
    }
}

/// HMAC-SHA256 under `secret` over the address and the kept ClientHello fields, each
/// length-prefixed so no two inputs run together the same way.
fn cookie(secret: &PKey<Private>, from: SocketAddr, hello: &ClientHello<'_>) -> Result<Cookie, ErrorStack> {
    let mut mac = Signer::new(MessageDigest::sha256(), secret)?;
    let ip = match from {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
        SocketAddr::V6(a) => a.ip().octets(),
    };
    mac.update(&ip)?;
    mac.update(&from.port().to_be_bytes())?;
    mac.update(&hello.client_version)?;
    for field in [
        hello.random,
        hello.session_id,
        hello.cipher_suites,
        hello.compression_methods,
    ] {
        // Every field is shorter than 2^16 bytes: it came out of one record.
        mac.update(&u16::try_from(field.len()).unwrap_or(u16::MAX).to_be_bytes())?;
        mac.update(field)?;
    }
    let mut out = [0; COOKIE_LEN];
    mac.sign(&mut out)?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello datagram with these fields (record sequence 0, message_seq 0).
    pub(crate) fn hello_datagram(
        random: [u8; 32],
        session_id: &[u8],
        cookie: &[u8],
        suites: &[u8],
        compression: &[u8],
        extensions: &[u8],
    ) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&random);
        for (width, field) in [(1, session_id), (1, cookie), (2, suites), (1, compression)] {
            body.extend_from_slice(&field.len().to_be_bytes()[8 - width..]);
            body.extend_from_slice(field);
        }
        body.extend_from_slice(extensions);
        let len = body.len().to_be_bytes();
        let mut message = vec![
            CLIENT_HELLO,
            len[5],
            len[6],
            len[7],
            0,
            0,
            0,
            0,
            0,
            len[5],
            len[6],
            len[7],
        ];
        message.extend(body);
        let mut record = vec![HANDSHAKE, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
        record.extend_from_slice(&u16::try_from(message.len()).unwrap().to_be_bytes());
        record.extend(message);
        record
    }

    fn standard(extensions: &[u8]) -> Vec<u8> {
        hello_datagram([7; 32], b"", b"", &[0xc0, 0x2b, 0xcc, 0xa9], &[0], extensions)
    }

    fn cookie_of(secrets: &CookieSecrets, from: SocketAddr, datagram: &[u8]) -> Cookie {
        secrets.cookies(from, &ClientHello::parse(datagram).unwrap()).unwrap().0
    }

    const FROM: &str = "127.0.0.1:40000";

    #[test]
    fn a_client_hello_parses_into_its_fields() {
        let d = hello_datagram([9; 32], b"sid", b"cookie", &[0, 1, 0, 2], &[0], b"ext");
        let hello = ClientHello::parse(&d).unwrap();
        assert_eq!(hello.client_version, [0xfe, 0xfd]);
        assert_eq!(hello.random, [9; 32]);
        assert_eq!(hello.session_id, b"sid");
        assert_eq!(hello.cookie, b"cookie");
        assert_eq!(hello.cipher_suites, [0, 1, 0, 2]);
        assert_eq!(hello.compression_methods, [0]);
        assert_eq!(hello.extensions, b"ext");
    }

    #[test]
    fn fragments_other_records_and_malformed_hellos_do_not_parse() {
        let good = standard(b"");
        let mut cases: Vec<Vec<u8>> = Vec::new();
        let mut epoch = good.clone();
        epoch[4] = 1;
        cases.push(epoch);
        let mut alert = good.clone();
        alert[0] = 21;
        cases.push(alert);
        let mut server_hello = good.clone();
        server_hello[13] = 2;
        cases.push(server_hello);
        // First fragment of a longer message: fragment_length < length.
        let mut fragment = good.clone();
        fragment[16] += 1;
        cases.push(fragment);
        let mut later_fragment = good.clone();
        later_fragment[21] = 1;
        cases.push(later_fragment);
        let mut message_seq = good.clone();
        message_seq[18] = 2;
        cases.push(message_seq);
        // Record length past the datagram's end, and a session_id length past the body's.
        cases.push(good[..good.len() - 1].to_vec());
        let mut session = good.clone();
        session[13 + 12 + 34] = 200;
        cases.push(session);
        cases.push(good[..20].to_vec());
        cases.push(Vec::new());
        for case in &cases {
            assert_eq!(ClientHello::parse(case), None, "{case:?}");
        }
        assert!(ClientHello::parse(&good).is_some());
    }

    #[test]
    fn the_cookie_ignores_extensions_and_the_cookie_itself() {
        let secrets = CookieSecrets::new().unwrap();
        let from = FROM.parse().unwrap();
        let first = cookie_of(&secrets, from, &standard(&[0, 10, 0, 4, 0, 2, 0, 29]));
        let other_groups = cookie_of(&secrets, from, &standard(&[0, 10, 0, 2, 0, 23, 0xff, 1, 0, 1, 0]));
        assert_eq!(first, other_groups);
        let retried = hello_datagram([7; 32], b"", &first, &[0xc0, 0x2b, 0xcc, 0xa9], &[0], b"");
        assert_eq!(cookie_of(&secrets, from, &retried), first);
    }

    #[test]
    fn the_cookie_depends_on_each_kept_field_and_the_address() {
        let secrets = CookieSecrets::new().unwrap();
        let from: SocketAddr = FROM.parse().unwrap();
        let base = cookie_of(&secrets, from, &standard(b""));
        let suites = [0xc0, 0x2b, 0xcc, 0xa9];
        let mut version = standard(b"");
        version[26] = 0xff;
        let changed = [
            version,
            hello_datagram([8; 32], b"", b"", &suites, &[0], b""),
            hello_datagram([7; 32], b"s", b"", &suites, &[0], b""),
            hello_datagram([7; 32], b"", b"", &suites[..2], &[0], b""),
            hello_datagram([7; 32], b"", b"", &suites, &[0, 1], b""),
        ];
        for datagram in &changed {
            assert_ne!(cookie_of(&secrets, from, datagram), base, "{datagram:?}");
        }
        for other in [
            "127.0.0.2:40000",
            "127.0.0.1:40001",
            "[::1]:40000",
            "[::ffff:127.0.0.2]:40000",
        ] {
            assert_ne!(
                cookie_of(&secrets, other.parse().unwrap(), &standard(b"")),
                base,
                "{other}"
            );
        }
        let other_secret = CookieSecrets::new().unwrap();
        assert_ne!(cookie_of(&other_secret, from, &standard(b"")), base);
    }

    #[test]
    fn secrets_rotate_by_the_given_clock_and_keep_one_previous() {
        let mut secrets = CookieSecrets::new().unwrap();
        let from = FROM.parse().unwrap();
        let hello = standard(b"");
        let t0 = Instant::now();
        secrets.rotate(t0).unwrap();
        let (first, previous) = secrets.cookies(from, &ClientHello::parse(&hello).unwrap()).unwrap();
        assert_eq!(previous, None);
        secrets.rotate(t0 + COOKIE_ROTATION - Duration::from_millis(1)).unwrap();
        assert_eq!(cookie_of(&secrets, from, &hello), first, "rotated early");
        secrets.rotate(t0 + COOKIE_ROTATION).unwrap();
        let (second, previous) = secrets.cookies(from, &ClientHello::parse(&hello).unwrap()).unwrap();
        assert_ne!(second, first);
        assert_eq!(previous, Some(first));
        // Two periods later neither of the old secrets survives.
        secrets.rotate(t0 + 3 * COOKIE_ROTATION).unwrap();
        let (third, previous) = secrets.cookies(from, &ClientHello::parse(&hello).unwrap()).unwrap();
        assert!(third != first && third != second);
        assert_eq!(previous, None);
    }
}
