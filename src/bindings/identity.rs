//! `Identity` and `node_id_from_certificate` for Python, and the node-ID scheme given as a
//! Python callable.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::errors::identity_error;
use crate::identity;
use crate::trust::{scheme_named, KeyType, NodeIdScheme, PublicNodeKey};

/// A node's key, node certificate, DTLS certificate and node ID.
///
/// Node keys: ECDSA P-256, Ed25519, RSA (2048 to 8192 bits) or ECDSA secp256k1, in PKCS#8,
/// SEC1 or PKCS#1 PEM. A P-256 key under a scheme other than "libp2p" presents its own
/// certificate in DTLS; every other identity presents an ephemeral P-256 certificate, made once
/// per Identity, that the node key endorses through libp2p's key extension.
///
/// node_id_scheme: "sha256" (hex SHA-256 of the node key's DER SubjectPublicKeyInfo, the
/// default), "libp2p" (base58btc peer ID), or a callable taking that DER and returning a str.
/// Both peers must use the same scheme. A callable runs inside every handshake, on the
/// library's I/O thread (or the event loop's thread once it reads the socket) with the GIL
/// taken and the connection locked: it holds up every other connection on that thread while
/// it runs, so it must be a quick pure function of the key (a hash: microseconds) that never
/// blocks and never touches a connection. If it raises or returns a non-str, that handshake
/// fails with PeerVerificationError.
#[pyclass(frozen, module = "dtls_peer")]
pub(crate) struct Identity {
    pub(crate) inner: identity::Identity,
    /// The application's scheme, when it is a callable (returned by `node_id_scheme`).
    callable: Option<Py<PyAny>>,
}

impl Identity {
    /// Whether verifying a peer runs Python code (the scheme is a callable): the handshake
    /// then takes the GIL on the thread that drives it (see docs/design.md §7).
    pub(crate) fn runs_python(&self) -> bool {
        self.callable.is_some()
    }
}

/// A node-ID scheme that calls a Python function with the node key's DER SPKI.
///
/// It runs inside the handshake on the thread driving it (the I/O thread, or the event loop's
/// thread once that reads the socket), holding the connection's lock, and takes the GIL for
/// the call. Every binding method that locks a connection whose identity has such a scheme
/// releases the GIL first (`Connection::unlocked`), so the call cannot deadlock against them.
struct PythonScheme(Py<PyAny>);

impl NodeIdScheme for PythonScheme {
    fn name(&self) -> &str {
        "callable"
    }

    fn node_id(&self, key: &PublicNodeKey) -> Result<String, String> {
        let call = |py: Python<'_>| {
            let result = self.0.bind(py).call1((PyBytes::new(py, key.spki_der()),));
            match result {
                Err(e) => Err(format!("node_id_scheme raised {e}")),
                Ok(value) => match value.cast::<PyString>() {
                    Ok(s) if s.is_empty().unwrap_or(false) => Err("node_id_scheme returned an empty str".into()),
                    Ok(s) => s
                        .to_cow()
                        .map(|s| s.into_owned())
                        .map_err(|e| format!("node_id_scheme returned a str that is not UTF-8: {e}")),
                    Err(_) => Err(format!("node_id_scheme returned {}, not str", type_name(&value))),
                },
            }
        };
        // No GIL can be had while the interpreter shuts down: fail the handshake, don't hang.
        Python::try_attach(call).unwrap_or_else(|| Err("node_id_scheme could not run: Python is shutting down".into()))
    }

    fn parse(&self, text: &str) -> Result<String, String> {
        if text.is_empty() {
            return Err("expected_node_id must not be empty".into());
        }
        Ok(text.to_owned())
    }
}

/// A scheme, and the callable it calls when it is the application's.
type Scheme = (Arc<dyn NodeIdScheme>, Option<Py<PyAny>>);

/// The scheme `value` names: "sha256", "libp2p" or a callable.
fn scheme_from(value: &Bound<'_, PyAny>) -> PyResult<Scheme> {
    if let Ok(name) = value.cast::<PyString>() {
        let scheme = scheme_named(&name.to_cow()?).map_err(PyValueError::new_err)?;
        return Ok((scheme, None));
    }
    if value.is_callable() {
        let callable = value.clone().unbind();
        return Ok((Arc::new(PythonScheme(callable.clone_ref(value.py()))), Some(callable)));
    }
    Err(PyTypeError::new_err(format!(
        "node_id_scheme must be 'sha256', 'libp2p' or a callable taking the DER public key, not {}",
        type_name(value)
    )))
}

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

pub(super) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

#[pymethods]
impl Identity {
    /// A fresh node key of `key_type` and a self-signed node certificate whose subject CN is
    /// the node ID.
    #[staticmethod]
    #[pyo3(signature = (key_type = "p256", *, node_id_scheme = None),
        text_signature = "(key_type='p256', *, node_id_scheme='sha256')")]
    fn generate(py: Python<'_>, key_type: &str, node_id_scheme: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let key_type = KeyType::parse(key_type).map_err(PyValueError::new_err)?;
        let (scheme, callable) = scheme_or_default(node_id_scheme)?;
        // Key generation (RSA: tens of milliseconds) runs without the GIL.
        let inner = py
            .detach(|| identity::Identity::generate_with(key_type, scheme))
            .map_err(identity_error)?;
        Ok(Self { inner, callable })
    }

    /// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1) and, unless `cert_path` is None, the
    /// PEM certificate that carries its public key.
    #[staticmethod]
    #[pyo3(signature = (cert_path, key_path, *, node_id_scheme = None),
        text_signature = "(cert_path, key_path, *, node_id_scheme='sha256')")]
    fn load(
        cert_path: Option<PathBuf>,
        key_path: PathBuf,
        node_id_scheme: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (scheme, callable) = scheme_or_default(node_id_scheme)?;
        let inner = identity::Identity::load_with(cert_path.as_deref(), &key_path, scheme).map_err(identity_error)?;
        Ok(Self { inner, callable })
    }

    /// Builds an identity from PEM text or bytes; `cert_pem` may be None.
    #[staticmethod]
    #[pyo3(signature = (cert_pem, key_pem, *, node_id_scheme = None),
        text_signature = "(cert_pem, key_pem, *, node_id_scheme='sha256')")]
    fn from_pem(
        cert_pem: Option<&Bound<'_, PyAny>>,
        key_pem: &Bound<'_, PyAny>,
        node_id_scheme: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let cert = cert_pem.map(|c| pem_bytes(c, "cert_pem")).transpose()?;
        let key = pem_bytes(key_pem, "key_pem")?;
        let (scheme, callable) = scheme_or_default(node_id_scheme)?;
        let inner = identity::Identity::from_pem_with(cert.as_deref(), &key, scheme).map_err(identity_error)?;
        Ok(Self { inner, callable })
    }

    /// Writes the node certificate and the node key (PKCS#8, mode 0600); refuses to replace
    /// files unless asked.
    #[pyo3(signature = (cert_path, key_path, overwrite = false))]
    fn save(&self, cert_path: PathBuf, key_path: PathBuf, overwrite: bool) -> PyResult<()> {
        self.inner
            .save(&cert_path, &key_path, overwrite)
            .map_err(identity_error)
    }

    #[getter]
    fn node_id(&self) -> &str {
        self.inner.node_id()
    }

    /// "p256", "ed25519", "rsa" or "secp256k1".
    #[getter]
    fn key_type(&self) -> &'static str {
        self.inner.key_type().as_str()
    }

    /// DER SubjectPublicKeyInfo of the node key.
    #[getter]
    fn public_key_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.public_key_der())
    }

    /// "sha256", "libp2p" or the callable given.
    #[getter]
    fn node_id_scheme(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.callable {
            Some(callable) => callable.clone_ref(py),
            None => PyString::new(py, self.inner.scheme().name()).into_any().unbind(),
        }
    }

    /// SHA-256 of the DTLS certificate DER as "AB:CD:...".
    #[getter]
    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }

    #[getter]
    fn certificate_pem(&self) -> String {
        self.inner.certificate_pem()
    }

    #[getter]
    fn certificate_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.certificate_der())
    }

    #[getter]
    fn dtls_certificate_pem(&self) -> String {
        self.inner.dtls_certificate_pem()
    }

    #[getter]
    fn dtls_certificate_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.dtls_certificate_der())
    }

    fn __repr__(&self) -> String {
        format!("Identity(node_id='{}')", self.inner.node_id())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().inner.certificate_der() == self.inner.certificate_der())
    }

    fn __hash__(&self) -> u64 {
        let digest = openssl::sha::sha256(&self.inner.certificate_der());
        u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

fn scheme_or_default(value: Option<&Bound<'_, PyAny>>) -> PyResult<Scheme> {
    match value {
        Some(value) => scheme_from(value),
        None => Ok((Arc::new(crate::trust::Sha256), None)),
    }
}

/// The node ID of a certificate given as PEM or DER bytes, under `node_id_scheme`.
#[pyfunction]
#[pyo3(signature = (pem_or_der, *, node_id_scheme = None),
    text_signature = "(pem_or_der, *, node_id_scheme='sha256')")]
pub(crate) fn node_id_from_certificate(
    pem_or_der: &Bound<'_, PyAny>,
    node_id_scheme: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let data = pem_bytes(pem_or_der, "pem_or_der")?;
    let (scheme, _) = scheme_or_default(node_id_scheme)?;
    identity::node_id_from_certificate(&data, scheme.as_ref()).map_err(identity_error)
}
