//! Guards the security posture against peers that ask for less: DTLS 1.0, CBC or non-ECDSA
//! suites, and RSA certificates are all refused.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use dtls_peer::{Config, Engine, Event, HandshakeFailure, Identity, Role, State};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::ssl::{ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::{X509Name, X509};

#[derive(Default)]
struct Pipe {
    incoming: VecDeque<Vec<u8>>,
    outgoing: Vec<Vec<u8>>,
}

impl io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let d = self.incoming.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        buf[..d.len()].copy_from_slice(&d);
        Ok(d.len())
    }
}

impl io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the raw OpenSSL peer misbehaves.
struct Offer {
    max_version: SslVersion,
    ciphers: &'static str,
    rsa: bool,
}

fn rsa_identity() -> (X509, PKey<openssl::pkey::Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", "rsa peer").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// Runs our engine (as `role`) against a raw OpenSSL peer making `offer`; returns what our
/// engine reported and whether the raw peer believed it had connected.
fn against_raw_peer(role: Role, offer: Offer) -> (Vec<Event>, bool) {
    let ours = Identity::generate().unwrap();
    let (cert, key) = if offer.rsa {
        rsa_identity()
    } else {
        let id = Identity::generate().unwrap();
        (id.certificate().to_owned(), id.private_key().to_owned())
    };
    let mut b = SslContextBuilder::new(SslMethod::dtls()).unwrap();
    b.set_max_proto_version(Some(offer.max_version)).unwrap();
    b.set_min_proto_version(None).unwrap();
    b.set_cipher_list(offer.ciphers).unwrap();
    b.set_options(SslOptions::NO_QUERY_MTU);
    b.set_certificate(&cert).unwrap();
    b.set_private_key(&key).unwrap();
    b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    let mut ssl = Ssl::new(&b.build()).unwrap();
    ssl.set_mtu(1200).unwrap();
    match role {
        Role::Client => ssl.set_accept_state(),
        Role::Server => ssl.set_connect_state(),
    }
    let mut raw = SslStream::new(ssl, Pipe::default()).unwrap();
    let mut engine = Engine::new(role, &ours, None, Config::default()).unwrap();
    let now = Instant::now();
    engine.start(now);
    let mut events = Vec::new();
    let mut raw_connected = false;
    for _ in 0..20 {
        match raw.do_handshake() {
            Ok(()) => raw_connected = true,
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Err(_) => {}
        }
        for d in std::mem::take(&mut raw.get_mut().outgoing) {
            engine.handle_datagram(now, &d);
        }
        while let Some(d) = engine.poll_transmit() {
            raw.get_mut().incoming.push_back(d);
        }
        events.extend(std::iter::from_fn(|| engine.poll_event()));
        if engine.state() != State::Handshaking && raw.get_mut().incoming.is_empty() {
            break;
        }
    }
    // Our engine may still be waiting for the raw peer to try again (see `engine::restart`);
    // at the handshake deadline it reports why the last attempt failed.
    if engine.state() == State::Handshaking {
        engine.handle_timeout(now + Config::default().handshake_timeout);
        events.extend(std::iter::from_fn(|| engine.poll_event()));
    }
    (events, raw_connected && engine.state() == State::Established)
}

fn refused(events: &[Event]) -> bool {
    !events.contains(&Event::Connected)
        && events.iter().any(|e| {
            matches!(
                e,
                Event::HandshakeFailed(
                    HandshakeFailure::Protocol(_)
                        | HandshakeFailure::AlertReceived(_)
                        | HandshakeFailure::PeerVerification(_)
                )
            )
        })
}

const OLD_PROTOCOLS: &str = "ALL:@SECLEVEL=0";

#[test]
fn a_sane_raw_peer_connects_so_the_refusals_below_mean_something() {
    for role in [Role::Client, Role::Server] {
        let offer = Offer {
            max_version: SslVersion::DTLS1_2,
            ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256",
            rsa: false,
        };
        let (events, connected) = against_raw_peer(role, offer);
        assert!(connected && events.contains(&Event::Connected), "{role:?}: {events:?}");
    }
}

#[test]
fn dtls_1_0_only_peer_is_refused() {
    for role in [Role::Client, Role::Server] {
        let offer = Offer {
            max_version: SslVersion::DTLS1,
            ciphers: OLD_PROTOCOLS,
            rsa: false,
        };
        let (events, connected) = against_raw_peer(role, offer);
        assert!(!connected && refused(&events), "{role:?}: {events:?}");
    }
}

#[test]
fn cbc_only_peer_is_refused() {
    for role in [Role::Client, Role::Server] {
        let offer = Offer {
            max_version: SslVersion::DTLS1_2,
            ciphers: "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA",
            rsa: false,
        };
        let (events, connected) = against_raw_peer(role, offer);
        assert!(!connected && refused(&events), "{role:?}: {events:?}");
    }
}

#[test]
fn rsa_suites_and_rsa_certificates_are_refused() {
    for role in [Role::Client, Role::Server] {
        let offer = Offer {
            max_version: SslVersion::DTLS1_2,
            ciphers: "ECDHE-RSA-AES128-GCM-SHA256",
            rsa: true,
        };
        let (events, connected) = against_raw_peer(role, offer);
        assert!(!connected && refused(&events), "{role:?}: {events:?}");
    }
}
