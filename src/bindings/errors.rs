//! Rust errors to the Python exceptions defined in `dtls_peer.exceptions`.

use pyo3::exceptions::{PyFileExistsError, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::channels::ChannelError;
use crate::config::ConfigError;
use crate::driver::Progress;
use crate::engine::{HandshakeFailure, SendError, VerificationFailure};
use crate::identity::IdentityError;

pyo3::import_exception!(dtls_peer.exceptions, DTLSError);
pyo3::import_exception!(dtls_peer.exceptions, HandshakeError);
pyo3::import_exception!(dtls_peer.exceptions, HandshakeTimeout);
pyo3::import_exception!(dtls_peer.exceptions, PeerVerificationError);
pyo3::import_exception!(dtls_peer.exceptions, ConnectionClosed);
pyo3::import_exception!(dtls_peer.exceptions, MessageTooLarge);
pyo3::import_exception!(dtls_peer.exceptions, ChannelClosed);

pub(crate) fn identity_error(e: IdentityError) -> PyErr {
    match e {
        IdentityError::Io(_) => PyOSError::new_err(e.to_string()),
        IdentityError::Exists(_) => PyFileExistsError::new_err(e.to_string()),
        IdentityError::InvalidPem(_)
        | IdentityError::UnsupportedKey(_)
        | IdentityError::KeyMismatch
        | IdentityError::Scheme(_) => PyValueError::new_err(e.to_string()),
    }
}

pub(crate) fn channel_error(e: ChannelError) -> PyErr {
    let message = e.to_string();
    match e {
        ChannelError::Closed(_) => ChannelClosed::new_err(message),
        ChannelError::Ended(_) => ConnectionClosed::new_err(message),
        ChannelError::TooLarge { .. } => MessageTooLarge::new_err(message),
        ChannelError::Unknown(_) | ChannelError::NameTooLong => PyValueError::new_err(message),
        ChannelError::NotConnected | ChannelError::NotOpen(_) | ChannelError::TooManyChannels => {
            DTLSError::new_err(message)
        }
    }
}

pub(crate) fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

pub(crate) fn send_error(e: SendError) -> PyErr {
    match e {
        SendError::TooLarge { .. } => MessageTooLarge::new_err(e.to_string()),
        SendError::Empty => PyValueError::new_err(e.to_string()),
        SendError::NotEstablished => DTLSError::new_err(format!("send(): {e}")),
        SendError::Closed => ConnectionClosed::new_err(e.to_string()),
    }
}

/// The exception for a handshake or session that can no longer carry messages.
pub(crate) fn ended(progress: &Progress) -> PyErr {
    match progress {
        Progress::Pending | Progress::Established => DTLSError::new_err("internal: connection has not ended"),
        Progress::Closed(reason) => ConnectionClosed::new_err(reason.to_string()),
        Progress::Failed(failure) => handshake_failure(failure),
    }
}

fn handshake_failure(failure: &HandshakeFailure) -> PyErr {
    let message = failure.to_string();
    match failure {
        HandshakeFailure::Timeout => HandshakeTimeout::new_err(message),
        HandshakeFailure::PeerVerification(VerificationFailure::NodeIdMismatch { expected, actual }) => {
            PeerVerificationError::new_err((message, Some(expected.clone()), Some(actual.clone())))
        }
        HandshakeFailure::PeerVerification(_) => {
            PeerVerificationError::new_err((message, None::<String>, None::<String>))
        }
        HandshakeFailure::Closed => ConnectionClosed::new_err(message),
        HandshakeFailure::AlertReceived(_) | HandshakeFailure::Protocol(_) => HandshakeError::new_err(message),
    }
}
