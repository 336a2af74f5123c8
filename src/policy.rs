//! The OpenSSL context every connection uses: the security posture in one place.

use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslSessionCacheMode, SslVersion};

use crate::config::{Config, ConfigError};
use crate::identity::Identity;

/// Key exchange groups offered: X25519 first, P-256 for peers without it.
const GROUPS: &str = "X25519:P-256";
/// Signatures accepted in the handshake: ECDSA only, so an RSA-keyed peer cannot authenticate.
const SIGALGS: &str = "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512";

/// The DTLS 1.2 context for `identity` and `config`'s ciphers, built once and then shared by
/// every connection of that identity (a context holds no per-connection state: the pin and
/// the timer are set on each `Ssl`).
pub(crate) fn context(identity: &Identity, config: &Config) -> Result<SslContext, ConfigError> {
    identity.context_for(&config.ciphers, || build(identity, config))
}

/// Builds the DTLS 1.2 context: ECDHE-ECDSA AEAD suites, both sides present certificates,
/// no renegotiation, compression, tickets or session cache.
fn build(identity: &Identity, config: &Config) -> Result<SslContext, ConfigError> {
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
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_certificate(identity.certificate()).map_err(openssl)?;
    b.set_private_key(identity.private_key()).map_err(openssl)?;
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
