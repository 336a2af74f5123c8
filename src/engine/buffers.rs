//! OpenSSL's record buffers, given back between bursts of traffic.
//!
//! Each session's record layer allocates a read buffer of about 18 KiB (the largest record
//! plus overhead) and, while writing, a write buffer of the same size. `SSL_MODE_RELEASE_BUFFERS`
//! frees the write buffer after each write, but for DTLS OpenSSL keeps the read buffer once a
//! read has asked for more than there was, which every read loop ends with. With thousands of
//! established peers on one endpoint that idle buffer was most of a peer's memory, so the
//! engine frees both buffers whenever a read loop has taken everything (OpenSSL refuses while
//! anything is pending, and allocates again on the next datagram).
#![allow(unsafe_code)]

use foreign_types::ForeignTypeRef;
use libc::c_int;
use openssl::ssl::SslRef;
use openssl_sys::SSL;

extern "C" {
    // Present in OpenSSL >= 1.1.0 (we vendor 3.x); see openssl/ssl.h.
    fn SSL_free_buffers(s: *mut SSL) -> c_int;
}

/// Frees `ssl`'s record buffers if nothing is pending in them (otherwise a no-op).
pub(super) fn release(ssl: &SslRef) {
    // SAFETY: `ssl` is a live SSL; SSL_free_buffers only frees buffers holding no data.
    unsafe {
        SSL_free_buffers(ssl.as_ptr());
    }
}
