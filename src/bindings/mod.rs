//! The `dtls_peer._native` extension module: type and error conversion only.

mod allow;
mod channel;
mod connection;
mod endpoint;
mod errors;
mod identity;
mod options;
mod waker;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_native")]
mod native {
    #[pymodule_export]
    use super::connection::Connection;
    #[pymodule_export]
    use super::endpoint::Endpoint;
    #[pymodule_export]
    use super::identity::{node_id_from_certificate, Identity};
    #[pymodule_export]
    use super::waker::Waker;
}
