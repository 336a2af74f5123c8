//! The OpenSSL context every connection uses: the security posture in one place.

use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode, SslVersion};

use crate::config::{Config, ConfigError};
use crate::identity::Identity;

/// Key exchange groups offered: X25519 first, P-256 for peers without it.
const GROUPS: &str = "X25519:P-256";
/// Signatures accepted in the handshake: ECDSA only, so an RSA-keyed peer cannot authenticate.
const SIGALGS: &str = "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512";

/// Builds the DTLS 1.2 context: ECDHE-ECDSA AEAD suites, both sides present certificates,
/// no renegotiation, compression, tickets or session cache.
pub(crate) fn context(identity: &Identity, config: &Config) -> Result<SslContext, ConfigError> {
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
    b.set_certificate(identity.certificate()).map_err(openssl)?;
    b.set_private_key(identity.private_key()).map_err(openssl)?;
    b.check_private_key().map_err(openssl)?;
    Ok(b.build())
}
