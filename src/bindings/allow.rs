//! The `allow` argument of an endpoint (whom `accept()` lets in) converted to an allow policy:
//! a collection of node IDs, a Python callable, or None for any verified peer.

use std::fmt;
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFrozenSet, PyList, PySet, PyString, PyTuple};

use super::identity::type_name;
use crate::trust::{AllowList, AllowPolicy, NodeIdScheme};

/// The policy (`None`: any verified peer) and whether it runs Python code, in which case the
/// handshake takes the GIL on the thread driving it and the binding must release the GIL
/// before locking a connection (as for a callable node-ID scheme, see `identity`).
pub(crate) type Allow = (Option<Arc<dyn AllowPolicy>>, bool);

/// An allow policy that calls a Python function with the peer's node ID.
///
/// Like `PythonScheme` (bindings/identity.rs) it runs inside the handshake on the thread
/// driving it (the I/O thread), holding the connection's lock, and takes the GIL for the call.
/// A raise or a result that is not a bool refuses the peer, with a failure that says which.
struct PythonAllow(Py<PyAny>);

impl fmt::Debug for PythonAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PythonAllow(callable)")
    }
}

impl AllowPolicy for PythonAllow {
    fn allows(&self, node_id: &str) -> Result<bool, String> {
        let call = |py: Python<'_>| match self.0.bind(py).call1((node_id,)) {
            Err(e) => Err(format!("allow raised {e} for peer node ID {node_id}")),
            Ok(value) => match value.cast::<PyBool>() {
                Ok(verdict) => Ok(verdict.is_true()),
                Err(_) => Err(format!(
                    "allow returned {}, not bool, for peer node ID {node_id}",
                    type_name(&value)
                )),
            },
        };
        // No GIL can be had while the interpreter shuts down: refuse the peer, don't hang.
        Python::try_attach(call).unwrap_or_else(|| Err("allow could not run: Python is shutting down".into()))
    }
}

/// The allow policy `value` gives, with node IDs checked by `scheme` (the identity's):
/// - a set, frozenset, list or tuple of str: exactly those node IDs. A malformed one is a
///   ValueError naming it; a member that is not a str is a TypeError. The IDs are copied now,
///   so later changes to the collection do not count (a callable sees the application's
///   current view). An empty collection is accepted and refuses every peer: fail closed, and
///   the way to say that an endpoint only dials.
/// - a callable taking the node ID (str) and returning a bool;
/// - None: any peer with a valid certificate.
///
/// Anything else, a lone str included (it would be taken as a collection of characters), is
/// a TypeError saying what is accepted.
pub(crate) fn allow_from(value: &Bound<'_, PyAny>, scheme: &dyn NodeIdScheme) -> PyResult<Allow> {
    if value.is_none() {
        return Ok((None, false));
    }
    let collection = value.is_instance_of::<PySet>()
        || value.is_instance_of::<PyFrozenSet>()
        || value.is_instance_of::<PyList>()
        || value.is_instance_of::<PyTuple>();
    if collection {
        let mut ids = Vec::new();
        for item in value.try_iter()? {
            let item = item?;
            let id = item.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("allow must hold node IDs as str, found {}", type_name(&item)))
            })?;
            ids.push(id.to_cow()?.into_owned());
        }
        let list = AllowList::parse(ids.iter().map(String::as_str), scheme).map_err(PyValueError::new_err)?;
        return Ok((Some(Arc::new(list)), false));
    }
    if value.is_callable() {
        return Ok((Some(Arc::new(PythonAllow(value.clone().unbind()))), true));
    }
    Err(PyTypeError::new_err(format!(
        "allow must be a set (or frozenset, list, tuple) of node IDs, a callable taking a node ID \
         and returning a bool, or None for any verified peer, not {}",
        type_name(value)
    )))
}
