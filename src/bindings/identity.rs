//! `Identity` and `node_id_from_certificate` for Python.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::errors::identity_error;
use crate::identity;

/// A node's ECDSA P-256 certificate and private key. The node ID is the lowercase hex
/// SHA-256 of the certificate's SubjectPublicKeyInfo.
#[pyclass(frozen, module = "dtls_peer")]
pub(crate) struct Identity(pub(crate) identity::Identity);

/// PEM given as `str` or bytes-like.
fn pem_bytes(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    value
        .extract::<Vec<u8>>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be str or bytes, not {}", type_name(value))))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

#[pymethods]
impl Identity {
    /// A fresh P-256 key and self-signed certificate whose subject CN is the node ID.
    #[staticmethod]
    fn generate(py: Python<'_>) -> PyResult<Self> {
        py.detach(identity::Identity::generate)
            .map(Self)
            .map_err(identity_error)
    }

    /// Reads a PEM certificate and a PEM private key (PKCS#8 or SEC1).
    #[staticmethod]
    fn load(cert_path: PathBuf, key_path: PathBuf) -> PyResult<Self> {
        identity::Identity::load(&cert_path, &key_path)
            .map(Self)
            .map_err(identity_error)
    }

    /// Builds an identity from PEM text or bytes.
    #[staticmethod]
    fn from_pem(cert_pem: &Bound<'_, PyAny>, key_pem: &Bound<'_, PyAny>) -> PyResult<Self> {
        let cert = pem_bytes(cert_pem, "cert_pem")?;
        let key = pem_bytes(key_pem, "key_pem")?;
        identity::Identity::from_pem(&cert, &key)
            .map(Self)
            .map_err(identity_error)
    }

    /// Writes the certificate and the key (mode 0600); refuses to replace files unless asked.
    #[pyo3(signature = (cert_path, key_path, overwrite = false))]
    fn save(&self, cert_path: PathBuf, key_path: PathBuf, overwrite: bool) -> PyResult<()> {
        self.0.save(&cert_path, &key_path, overwrite).map_err(identity_error)
    }

    /// 64 lowercase hex characters.
    #[getter]
    fn node_id(&self) -> &str {
        self.0.node_id()
    }

    /// SHA-256 of the certificate DER as "AB:CD:...".
    #[getter]
    fn fingerprint(&self) -> String {
        self.0.fingerprint()
    }

    #[getter]
    fn certificate_pem(&self) -> String {
        self.0.certificate_pem()
    }

    #[getter]
    fn certificate_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.certificate_der())
    }

    fn __repr__(&self) -> String {
        format!("Identity(node_id='{}')", self.0.node_id())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().0.certificate_der() == self.0.certificate_der())
    }

    fn __hash__(&self) -> u64 {
        u64::from_str_radix(&self.0.node_id()[..16], 16).unwrap_or(0)
    }
}

/// The node ID of a certificate given as PEM or DER bytes.
#[pyfunction]
pub(crate) fn node_id_from_certificate(pem_or_der: &Bound<'_, PyAny>) -> PyResult<String> {
    let data = pem_bytes(pem_or_der, "pem_or_der")?;
    identity::node_id_from_certificate(&data).map_err(identity_error)
}
