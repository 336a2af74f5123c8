//! The native side of `DTLSPeerConnection`: argument conversion around a
//! `driver::EndpointConnection`, one peer of an endpoint (a standalone connection is an
//! endpoint with one peer). Every method returns at once; the Python class turns "not yet"
//! into awaiting the waker.

use std::net::SocketAddr;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::errors::{channel_error, config_error, ended, send_error, DTLSError};
use super::identity::Identity;
use super::options::{ip_literal, nested_dict, peer_config};
use super::waker::Waker;
use crate::config::Role;
use crate::driver::{self, EndpointConnection, Progress, Received, Sent, StatValue};
use crate::endpoint::EndpointConfig;
use crate::engine::{Engine, SendError};

/// One DTLS connection driven on the I/O thread.
#[pyclass(frozen, module = "dtls_peer._native")]
pub(crate) struct Connection {
    /// Always `Some` until dropped (see `Drop`).
    inner: Option<EndpointConnection>,
    role: Role,
    /// The identity's node-ID scheme (or an endpoint's allow policy) is Python code, which
    /// the handshake calls holding this connection's lock: every method then releases the
    /// GIL before locking (see `unlocked`).
    runs_python: bool,
}

fn not_established() -> PyErr {
    DTLSError::new_err("recv(): the handshake has not completed; await handshake() first")
}

#[pymethods]
impl Connection {
    /// `fd` is a descriptor this object takes over (a duplicate of the application's socket),
    /// even when it raises.
    #[new]
    #[pyo3(signature = (fd, host, port, identity, expected_node_id, role, mtu, handshake_timeout,
        initial_retransmit_timeout, ciphers, receive_queue_size, keepalive_interval, idle_timeout,
        channels=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        fd: driver::RawSocket,
        host: &str,
        port: u16,
        identity: &Identity,
        expected_node_id: Option<&str>,
        role: &str,
        mtu: usize,
        handshake_timeout: f64,
        initial_retransmit_timeout: f64,
        ciphers: Option<String>,
        receive_queue_size: usize,
        keepalive_interval: Option<f64>,
        idle_timeout: Option<f64>,
        channels: Option<(usize, usize)>,
    ) -> PyResult<Self> {
        // Owned from here on: closed exactly once, on every error path too.
        let fd = driver::take_socket(fd).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let ip = ip_literal(host)?;
        let scheme = identity.inner.scheme();
        let expected = expected_node_id
            .map(|id| scheme.parse(id))
            .transpose()
            .map_err(PyValueError::new_err)?;
        let role = super::options::role(role)?;
        let config = peer_config(
            mtu,
            handshake_timeout,
            initial_retransmit_timeout,
            ciphers,
            keepalive_interval,
            idle_timeout,
            channels,
        )?;
        let endpoint = crate::endpoint::Endpoint::new(&identity.inner, EndpointConfig::one_peer(config), None)
            .map_err(config_error)?;
        let socket = driver::udp_socket_from(fd).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let remote = SocketAddr::new(ip, port);
        let inner = driver::EndpointDriver::one_peer(socket, endpoint, remote, role, expected, receive_queue_size)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            inner: Some(inner),
            role,
            runs_python: identity.runs_python(),
        })
    }

    /// Routes this connection's notifications to `waker` under `token`.
    fn attach(&self, py: Python<'_>, waker: &Waker, token: u64) {
        let notifier = Arc::new(waker.token(token));
        self.unlocked(py, |c| c.set_notifier(notifier));
    }

    /// Sends the first flight (a server answers a ClientHello that came early), always with
    /// the GIL released: it is a handshake step, which may call a Python node-ID scheme.
    fn start_handshake(&self, py: Python<'_>) {
        let conn = self.conn();
        py.detach(|| conn.start_handshake());
    }

    /// True once established, False while pending; raises the failure otherwise.
    fn handshake_done(&self, py: Python<'_>) -> PyResult<bool> {
        match self.unlocked(py, |c| c.progress()) {
            Progress::Pending => Ok(false),
            Progress::Established => Ok(true),
            ended_progress => Err(ended(&ended_progress)),
        }
    }

    /// True if sent, False if the socket is backed up (wait and retry).
    fn send(&self, py: Python<'_>, data: &[u8]) -> PyResult<bool> {
        match py.detach(|| self.conn().send(data)) {
            Ok(Sent::Done) => Ok(true),
            Ok(Sent::Busy) => Ok(false),
            Err(e) => Err(self.refused(py, e)),
        }
    }

    /// Stops the I/O thread reading the socket; returns the descriptor the event loop must
    /// watch (calling `receive_now` when readable), or None once closed.
    fn take_over_reads(&self, py: Python<'_>) -> Option<driver::RawSocket> {
        self.unlocked(py, |c| c.take_over_reads())
    }

    /// Reads and decrypts what the socket holds, with the GIL released; true if anything
    /// changed that a waiting `recv()` or `handshake()` should look at.
    fn receive_now(&self, py: Python<'_>) -> bool {
        py.detach(|| self.conn().receive_now())
    }

    /// Sends `messages[start:]` in order; returns how many were taken (fewer than all when the
    /// socket is backed up or a later message is refused: call again with the new start).
    fn send_many(&self, py: Python<'_>, messages: &Bound<'_, PyList>, start: usize) -> PyResult<usize> {
        // Owned references keep every buffer alive while the GIL is released.
        let owned = messages
            .iter()
            .skip(start)
            .map(|m| m.cast_into::<PyBytes>().map_err(PyErr::from))
            .collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<&[u8]> = owned.iter().map(|b| b.as_bytes()).collect();
        py.detach(|| self.conn().send_many(&slices))
            .map_err(|e| self.refused(py, e))
    }

    /// Up to `max_messages` queued messages (oldest first), or None if none is queued;
    /// raises once no message can come.
    fn try_recv_many<'py>(&self, py: Python<'py>, max_messages: usize) -> PyResult<Option<Bound<'py, PyList>>> {
        match self.unlocked(py, |c| c.try_recv_many(max_messages)) {
            Received::Message(batch) => Ok(Some(PyList::new(py, batch.iter().map(|m| PyBytes::new(py, m)))?)),
            Received::NotEstablished => Err(not_established()),
            Received::Empty => Ok(None),
            Received::Ended(progress) => Err(ended(&progress)),
        }
    }

    /// The next message, or None if none is queued; raises once no message can come.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.unlocked(py, |c| c.try_recv()) {
            Received::Message(m) => Ok(Some(PyBytes::new(py, &m))),
            Received::NotEstablished => Err(not_established()),
            Received::Empty => Ok(None),
            Received::Ended(progress) => Err(ended(&progress)),
        }
    }

    fn close(&self, py: Python<'_>) {
        py.detach(|| self.conn().close());
    }

    /// The peer's node ID under the local identity's scheme, once verified.
    #[getter]
    fn peer_node_id(&self, py: Python<'_>) -> Option<String> {
        self.with_engine(py, |e| e.peer_node_id().map(str::to_owned)).flatten()
    }

    /// DER SubjectPublicKeyInfo of the peer's node key, once verified.
    #[getter]
    fn peer_public_key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let der = self
            .with_engine(py, |e| e.peer_public_key().map(<[u8]>::to_vec))
            .flatten()?;
        Some(PyBytes::new(py, &der))
    }

    #[getter]
    fn peer_certificate<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let der = self
            .with_engine(py, |e| e.peer_certificate().map(<[u8]>::to_vec))
            .flatten()?;
        Some(PyBytes::new(py, &der))
    }

    #[getter]
    fn cipher(&self, py: Python<'_>) -> Option<&'static str> {
        self.with_engine(py, Engine::cipher).flatten()
    }

    #[getter]
    fn protocol_version(&self, py: Python<'_>) -> Option<&'static str> {
        self.with_engine(py, Engine::protocol_version).flatten()
    }

    #[getter]
    fn role(&self) -> &'static str {
        self.role.as_str()
    }

    #[getter]
    fn local_address(&self, py: Python<'_>) -> (String, u16) {
        let a = self.unlocked(py, |c| c.local_address());
        (a.ip().to_string(), a.port())
    }

    /// Where the peer is (an endpoint's peer may have moved: read under its lock).
    #[getter]
    fn remote_address(&self, py: Python<'_>) -> (String, u16) {
        let a = self.unlocked(py, |c| c.remote_address());
        (a.ip().to_string(), a.port())
    }

    #[getter]
    fn max_message_size(&self, py: Python<'_>) -> usize {
        self.with_engine(py, Engine::max_message_size).unwrap_or_default()
    }

    /// "new", "handshaking", "established", "closed" or "failed".
    #[getter]
    fn state(&self, py: Python<'_>) -> &'static str {
        self.unlocked(py, |c| c.phase()).as_str()
    }

    /// Why the handshake failed or the session ended, once it has.
    #[getter]
    fn end_reason(&self, py: Python<'_>) -> Option<String> {
        match self.unlocked(py, |c| c.progress()) {
            Progress::Pending | Progress::Established => None,
            Progress::Failed(failure) => Some(failure.to_string()),
            Progress::Closed(reason) => Some(reason.to_string()),
        }
    }

    #[getter]
    fn is_established(&self, py: Python<'_>) -> bool {
        self.unlocked(py, |c| c.progress()) == Progress::Established
    }

    // -- data channels (see `super::channel` for the conversions) --

    /// True once the channels' association is up, False before; raises once it ended.
    fn channels_ready(&self, py: Python<'_>) -> PyResult<bool> {
        self.unlocked(py, |c| c.channels_ready()).map_err(channel_error)
    }

    /// Opens a channel; returns its id (it carries messages once `channel_open` says so).
    #[pyo3(signature = (label, protocol, ordered, max_retransmits, max_lifetime_ms))]
    fn open_channel(
        &self,
        py: Python<'_>,
        label: String,
        protocol: String,
        ordered: bool,
        max_retransmits: Option<u32>,
        max_lifetime_ms: Option<u32>,
    ) -> PyResult<u16> {
        let options = super::channel::options(label, protocol, ordered, max_retransmits, max_lifetime_ms)?;
        self.unlocked(py, |c| c.open_channel(options)).map_err(channel_error)
    }

    /// True once the peer acknowledged channel `id`; raises if it is closed.
    fn channel_open(&self, py: Python<'_>, id: u16) -> PyResult<bool> {
        self.unlocked(py, |c| c.channel_open(id)).map_err(channel_error)
    }

    /// The id of the next channel the peer opened, or None.
    fn accept_channel(&self, py: Python<'_>) -> PyResult<Option<u16>> {
        self.unlocked(py, |c| c.accept_channel()).map_err(channel_error)
    }

    /// True if queued, False while the channel's buffer is above its high-water mark.
    fn channel_send(&self, py: Python<'_>, id: u16, data: &[u8], text: bool) -> PyResult<bool> {
        let sent = py.detach(|| self.conn().channel_send(id, data, text));
        Ok(sent.map_err(channel_error)? == Sent::Done)
    }

    /// Channel `id`'s next message (bytes, or str for a text message), or None.
    fn channel_recv<'py>(&self, py: Python<'py>, id: u16) -> PyResult<Option<Bound<'py, PyAny>>> {
        let message = self.unlocked(py, |c| c.channel_recv(id)).map_err(channel_error)?;
        Ok(message.map(|m| super::channel::message(py, m)))
    }

    fn close_channel(&self, py: Python<'_>, id: u16) {
        self.unlocked(py, |c| c.close_channel(id));
    }

    /// (label, protocol, ordered, max_retransmits, max_lifetime_ms) of channel `id`.
    #[allow(clippy::type_complexity)]
    fn channel_info(&self, py: Python<'_>, id: u16) -> Option<(String, String, bool, Option<u32>, Option<u32>)> {
        self.unlocked(py, |c| c.channel_options(id)).map(super::channel::info)
    }

    fn buffered_amount(&self, py: Python<'_>, id: u16) -> usize {
        self.unlocked(py, |c| c.buffered_amount(id))
    }

    /// True once everything sent on the channels is acknowledged (closing loses nothing).
    fn channels_flushed(&self, py: Python<'_>) -> bool {
        self.unlocked(py, |c| c.channels_flushed())
    }

    /// Counters as a dict (see the README for each key).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.unlocked(py, |c| c.stats());
        let mut fields = Vec::new();
        for field in stats.fields() {
            let value = match field.value {
                StatValue::Count(n) => n.into_pyobject(py)?.into_any(),
                StatValue::Seconds(t) => t.map(|t| t.as_secs_f64()).into_pyobject(py)?,
            };
            fields.push((field.key, value));
        }
        nested_dict(py, fields)
    }
}

impl Connection {
    /// One peer of an endpoint. Its endpoint may run Python (an allow policy, a node-ID
    /// scheme) under the lock, so the GIL is always released first.
    pub(super) fn from_endpoint(conn: EndpointConnection, role: Role) -> Self {
        Self {
            inner: Some(conn),
            role,
            runs_python: true,
        }
    }

    fn conn(&self) -> &EndpointConnection {
        self.inner.as_ref().expect("taken only by Drop")
    }

    /// Runs `f`, which locks the connection, with the GIL released when the node-ID scheme is
    /// Python code: the handshake may hold the lock while it waits for the GIL to call the
    /// scheme, so holding the GIL while waiting for the lock would deadlock. Without such a
    /// scheme no Python runs under the lock, and the GIL is kept (releasing it costs a
    /// hand-over when other Python threads run).
    fn unlocked<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&EndpointConnection) -> R + Send) -> R {
        let conn = self.conn();
        if self.runs_python {
            py.detach(|| f(conn))
        } else {
            f(conn)
        }
    }

    /// Runs `f` on the engine under the lock; None once an endpoint let go of it.
    fn with_engine<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&Engine) -> R + Send) -> Option<R> {
        self.unlocked(py, |c| {
            let (mut f, mut out) = (Some(f), None);
            c.with_engine(&mut |engine| {
                if let (Some(engine), Some(f)) = (engine, f.take()) {
                    out = Some(f(engine));
                }
            });
            out
        })
    }

    /// The exception for a refused send: once the handshake failed or the session ended, the
    /// same one (and message) `recv()` gives, rather than a bare "closed".
    fn refused(&self, py: Python<'_>, e: SendError) -> PyErr {
        match (e, self.unlocked(py, |c| c.progress())) {
            (SendError::Closed, ended_progress @ (Progress::Failed(_) | Progress::Closed(_))) => ended(&ended_progress),
            (e, _) => send_error(e),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.runs_python {
            // Dropping locks the connection, which a handshake may hold while it waits for the
            // GIL (see `unlocked`). Without a GIL to release (Python shutting down) the closure,
            // and the connection with it, is dropped here.
            let _ = Python::try_attach(|py| py.detach(move || drop(inner)));
        }
    }
}
