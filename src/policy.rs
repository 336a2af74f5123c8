//! The OpenSSL context every connection uses: the security posture in one place.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use openssl::ssl::{
    select_next_proto, AlpnError, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslSessionCacheMode,
    SslVersion,
};

use crate::config::{Config, ConfigError};
use crate::engine;
use crate::identity::{CertifiedKey, Identity};

/// Key exchange groups offered: X25519 first, P-256 for peers without it.
const GROUPS: &str = "X25519:P-256";
/// Signatures accepted in the handshake: ECDSA only, so an RSA-keyed peer cannot authenticate.
const SIGALGS: &str = "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512";

/// ALPN's "webrtc" (RFC 8833) in wire form: offered by a client with data channels.
pub(crate) const ALPN_WEBRTC: &[u8] = b"\x06webrtc";

/// Contexts built so far, by the DTLS credentials (held weakly: an identity dropped by every
/// user frees its contexts at the next build), cipher list and whether they carry data
/// channels (which decides the ALPN answer).
type Cache = Vec<(Weak<CertifiedKey>, String, bool, SslContext)>;
static CONTEXTS: Mutex<Cache> = Mutex::new(Vec::new());

/// The DTLS 1.2 context for `identity`'s DTLS credentials and `config`'s ciphers, built once
/// and then shared by every connection of that identity and its clones (a context holds no
/// per-connection state: the pin and the timer are set on each `Ssl`; each context costs about
/// 17 KiB and its build time, docs/benchmarks.md).
pub(crate) fn context(identity: &Identity, config: &Config) -> Result<SslContext, ConfigError> {
    let credentials = identity.dtls_credentials();
    let mut cache = CONTEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    let channels = config.channels.is_some();
    let hit = cache.iter().find(|(owner, ciphers, with_channels, _)| {
        owner.as_ptr() == Arc::as_ptr(credentials) && *ciphers == config.ciphers && *with_channels == channels
    });
    if let Some((_, _, _, context)) = hit {
        return Ok(context.clone());
    }
    let context = build(credentials, config)?;
    cache.retain(|(owner, _, _, _)| owner.strong_count() > 0);
    cache.push((
        Arc::downgrade(credentials),
        config.ciphers.clone(),
        channels,
        context.clone(),
    ));
    Ok(context)
}

/// Builds the DTLS 1.2 context: ECDHE-ECDSA AEAD suites, both sides present certificates,
/// no renegotiation, compression, tickets or session cache.
fn build(credentials: &CertifiedKey, config: &Config) -> Result<SslContext, ConfigError> {
    let openssl = |e: openssl::error::ErrorStack| ConfigError::OpenSsl(e.to_string());
    let mut b = SslContextBuilder::new(SslMethod::dtls()).map_err(openssl)?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2)).map_err(openssl)?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2)).map_err(openssl)?;
    b.set_cipher_list(&config.ciphers)
        .map_err(|e| ConfigError::Ciphers(e.to_string()))?;
    b.set_groups_list(GROUPS).map_err(openssl)?;
    b.set_sigalgs_list(SIGALGS).map_err(openssl)?;
    b.set_options(
        SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_COMPRESSION
            | SslOptions::NO_TICKET
            // Without this OpenSSL asks our BIO for the MTU, gets 0 and falls back to 256 bytes.
            | SslOptions::NO_QUERY_MTU
            | SslOptions::CIPHER_SERVER_PREFERENCE,
    );
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    // Stateless cookies for the endpoint's listener (engine::listened); no server engine
    // sets COOKIE_EXCHANGE, so they are used only there.
    b.set_cookie_generate_cb(engine::generate_cookie);
    b.set_cookie_verify_cb(engine::verify_cookie);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    // A server with data channels picks "webrtc" when offered and lets in a client that
    // offers no ALPN at all (WebRTC stacks need not); one without refuses a client that
    // offers "webrtc" (alert no_application_protocol), which would send it SCTP packets.
    let channels = config.channels.is_some();
    b.set_alpn_select_callback(
        move |_, offered| match (channels, select_next_proto(ALPN_WEBRTC, offered)) {
            (true, Some(webrtc)) => Ok(webrtc),
            (false, None) => Err(AlpnError::NOACK),
            (true, None) | (false, Some(_)) => Err(AlpnError::ALERT_FATAL),
        },
    );
    b.set_certificate(credentials.certificate()).map_err(openssl)?;
    b.set_private_key(credentials.private_key()).map_err(openssl)?;
    b.check_private_key().map_err(openssl)?;
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use foreign_types::ForeignType;

    use super::*;

    #[test]
    fn connections_of_one_identity_and_cipher_list_share_one_context() {
        let identity = Identity::generate().unwrap();
        let config = Config::default();
        let first = context(&identity, &config).unwrap();
        assert_eq!(context(&identity.clone(), &config).unwrap().as_ptr(), first.as_ptr());
        let chacha = Config {
            ciphers: "ECDHE-ECDSA-CHACHA20-POLY1305".into(),
            ..Config::default()
        };
        assert_ne!(context(&identity, &chacha).unwrap().as_ptr(), first.as_ptr());
        let stranger = Identity::generate().unwrap();
        assert_ne!(context(&stranger, &config).unwrap().as_ptr(), first.as_ptr());
    }
}
