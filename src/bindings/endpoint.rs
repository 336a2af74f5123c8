//! The native side of `DTLSEndpoint`: argument and error conversion around
//! `driver::EndpointDriver`. Its connections are the same `Connection` class as a standalone
//! one. The endpoint's handshakes may call Python (a node-ID scheme, an allow policy) while
//! they hold its lock, so every method releases the GIL before it locks.

use std::net::SocketAddr;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::allow::allow_from;
use super::connection::Connection;
use super::errors::{config_error, DTLSError};
use super::identity::Identity;
use super::options::{ip_literal, nested_dict, peer_config, role};
use super::waker::Waker;
use crate::config::Role;
use crate::driver::{self, Accepted, Sent};
use crate::endpoint::{ConnectError, DatagramError, EndpointConfig};
use crate::trust::NodeIdScheme;

pyo3::import_exception!(dtls_peer.exceptions, EndpointClosed);

/// Many peers on one UDP socket.
#[pyclass(frozen, module = "dtls_peer._native")]
pub(crate) struct Endpoint {
    /// Always `Some` until dropped (see `Drop`).
    inner: Option<driver::EndpointDriver>,
    scheme: Arc<dyn NodeIdScheme>,
}

fn connect_error(e: ConnectError) -> PyErr {
    match e {
        ConnectError::Closed => EndpointClosed::new_err(format!("connect(): {e}")),
        ConnectError::AddressInUse(_) | ConnectError::Config(_) => PyValueError::new_err(e.to_string()),
        ConnectError::TooManyConnections(_) => DTLSError::new_err(format!("connect(): {e}")),
    }
}

fn datagram_error(e: DatagramError) -> PyErr {
    match e {
        DatagramError::Closed => EndpointClosed::new_err(format!("send_datagram(): {e}")),
        DatagramError::Empty | DatagramError::TooLarge(_) | DatagramError::LooksLikeDtls(_) => {
            PyValueError::new_err(e.to_string())
        }
    }
}

fn address_tuple(a: SocketAddr) -> (String, u16) {
    (a.ip().to_canonical().to_string(), a.port())
}

#[pymethods]
impl Endpoint {
    /// `fd` is a descriptor this object takes over (a duplicate of the application's socket),
    /// even when it raises.
    #[new]
    #[pyo3(signature = (fd, identity, allow, mtu, handshake_timeout, initial_retransmit_timeout, ciphers,
        receive_queue_size, keepalive_interval, idle_timeout, max_pending_handshakes, max_connections,
        accept_backlog, datagram_queue_size, require_cookie, allow_migration, channels=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        fd: driver::RawSocket,
        identity: &Identity,
        allow: &Bound<'_, PyAny>,
        mtu: usize,
        handshake_timeout: f64,
        initial_retransmit_timeout: f64,
        ciphers: Option<String>,
        receive_queue_size: usize,
        keepalive_interval: Option<f64>,
        idle_timeout: Option<f64>,
        max_pending_handshakes: usize,
        max_connections: usize,
        accept_backlog: usize,
        datagram_queue_size: usize,
        require_cookie: bool,
        allow_migration: bool,
        channels: Option<(usize, usize)>,
    ) -> PyResult<Self> {
        // Owned from here on: closed exactly once, on every error path too.
        let fd = driver::take_socket(fd).map_err(|e| PyValueError::new_err(e.to_string()))?;
        // Whether the policy is Python code does not matter here: every method releases the GIL.
        let (allow, _) = allow_from(allow, identity.inner.scheme().as_ref())?;
        let peer = peer_config(
            mtu,
            handshake_timeout,
            initial_retransmit_timeout,
            ciphers,
            keepalive_interval,
            idle_timeout,
            channels,
        )?;
        let config = EndpointConfig {
            peer,
            accept: true,
            max_pending_handshakes,
            max_connections,
            accept_backlog,
            datagram_queue: datagram_queue_size,
            require_cookie,
            allow_migration,
            one_peer: false,
        };
        let endpoint = crate::endpoint::Endpoint::new(&identity.inner, config, allow).map_err(config_error)?;
        let socket = driver::udp_socket_from(fd).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let inner = driver::EndpointDriver::spawn(socket, endpoint, receive_queue_size)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            inner: Some(inner),
            scheme: identity.inner.scheme().clone(),
        })
    }

    /// Routes the endpoint's notifications (accept queue, datagrams, close) to `waker`.
    fn attach(&self, py: Python<'_>, waker: &Waker, token: u64) {
        let notifier = Arc::new(waker.token(token));
        py.detach(|| self.driver().set_notifier(notifier));
    }

    /// Starts a handshake with `(host, port)`; the connection is returned at once (await its
    /// handshake). `role` is "client" or "server" ("auto" is resolved by the caller).
    fn connect(
        &self,
        py: Python<'_>,
        host: &str,
        port: u16,
        expected_node_id: Option<&str>,
        role_name: &str,
    ) -> PyResult<Connection> {
        let ip = ip_literal(host)?;
        if port == 0 {
            return Err(PyValueError::new_err("remote port must be between 1 and 65535, got 0"));
        }
        let destination =
            (self.driver().destination(SocketAddr::new(ip, port))).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let expected = expected_node_id
            .map(|id| self.scheme.parse(id))
            .transpose()
            .map_err(PyValueError::new_err)?;
        let role = role(role_name)?;
        let conn = py
            .detach(|| self.driver().connect(destination, role, expected))
            .map_err(connect_error)?;
        Ok(Connection::from_endpoint(conn, role))
    }

    /// The next verified incoming peer, or None; raises EndpointClosed once closed.
    fn try_accept(&self, py: Python<'_>) -> PyResult<Option<Connection>> {
        match py.detach(|| self.driver().try_accept()) {
            Accepted::Connection(conn) => Ok(Some(Connection::from_endpoint(conn, Role::Server))),
            Accepted::Empty => Ok(None),
            Accepted::Closed => Err(EndpointClosed::new_err("accept(): the endpoint is closed")),
        }
    }

    /// The next datagram that was not DTLS with its source, or None; raises EndpointClosed
    /// once closed.
    #[allow(clippy::type_complexity)]
    fn try_recv_datagram<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyBytes>, (String, u16))>> {
        match py.detach(|| self.driver().try_recv_datagram()) {
            Ok(Some((data, from))) => Ok(Some((PyBytes::new(py, &data), address_tuple(from)))),
            Ok(None) => Ok(None),
            Err(_) => Err(EndpointClosed::new_err("recv_datagram(): the endpoint is closed")),
        }
    }

    /// Sends a plaintext datagram; False if the socket is backed up (wait and retry).
    fn send_datagram(&self, py: Python<'_>, data: &[u8], host: &str, port: u16) -> PyResult<bool> {
        let ip = ip_literal(host)?;
        if port == 0 {
            return Err(PyValueError::new_err(
                "destination port must be between 1 and 65535, got 0",
            ));
        }
        let destination =
            (self.driver().destination(SocketAddr::new(ip, port))).map_err(|e| PyValueError::new_err(e.to_string()))?;
        match py.detach(|| self.driver().send_datagram(destination, data)) {
            Ok(Sent::Done) => Ok(true),
            Ok(Sent::Busy) => Ok(false),
            Err(e) => Err(datagram_error(e)),
        }
    }

    /// Closes every connection (close_notify) and the endpoint. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.driver().close());
    }

    #[getter]
    fn is_closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.driver().is_closed())
    }

    /// Connections handshaking or established now.
    #[getter]
    fn connections(&self, py: Python<'_>) -> usize {
        py.detach(|| self.driver().connections())
    }

    #[getter]
    fn local_address(&self) -> (String, u16) {
        let a = self.driver().local_address();
        (a.ip().to_string(), a.port())
    }

    /// Counters as a dict (dotted keys nest, as a connection's do).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = py.detach(|| self.driver().stats());
        let mut fields = Vec::new();
        for (key, value, _) in stats.fields() {
            fields.push((key, value.into_pyobject(py)?.into_any()));
        }
        nested_dict(py, fields)
    }
}

impl Endpoint {
    fn driver(&self) -> &driver::EndpointDriver {
        self.inner.as_ref().expect("taken only by Drop")
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // Dropping locks the endpoint, which a handshake may hold while it waits for the GIL.
        // Without a GIL to release (Python shutting down) it is dropped here.
        let _ = Python::try_attach(|py| py.detach(move || drop(inner)));
    }
}
