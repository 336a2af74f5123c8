//! Conversions shared by `Connection` and `Endpoint`: the per-peer settings (same names and
//! checks on both), roles, address literals and the nested stats dict.

use std::net::IpAddr;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config::{Config, Role};

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be a positive number of seconds, got {value}")))
}

/// The settings of one peer from the constructor arguments both classes take.
pub(super) fn peer_config(
    mtu: usize,
    handshake_timeout: f64,
    initial_retransmit_timeout: f64,
    ciphers: Option<String>,
    keepalive_interval: Option<f64>,
    idle_timeout: Option<f64>,
    channels: Option<(usize, usize)>,
) -> PyResult<Config> {
    let initial_retransmit_timeout = seconds("initial_retransmit_timeout", initial_retransmit_timeout)?;
    Ok(Config {
        mtu,
        handshake_timeout: seconds("handshake_timeout", handshake_timeout)?,
        initial_retransmit_timeout,
        // The cap is not exposed; it never undercuts a longer initial timeout.
        max_retransmit_timeout: Config::default().max_retransmit_timeout.max(initial_retransmit_timeout),
        ciphers: ciphers.unwrap_or_else(|| crate::config::DEFAULT_CIPHERS.to_owned()),
        keepalive_interval: keepalive_interval
            .map(|s| seconds("keepalive_interval", s))
            .transpose()?,
        idle_timeout: idle_timeout.map(|s| seconds("idle_timeout", s)).transpose()?,
        channels: channels.map(super::channel::config),
    })
}

/// "client" or "server" ("auto" is resolved in Python, which knows both node IDs).
pub(super) fn role(name: &str) -> PyResult<Role> {
    match name {
        "client" => Ok(Role::Client),
        "server" => Ok(Role::Server),
        other => Err(PyValueError::new_err(format!(
            "role must be 'client' or 'server', got {other:?}"
        ))),
    }
}

/// A remote host, which must be an IP address literal (nothing is resolved).
pub(super) fn ip_literal(host: &str) -> PyResult<IpAddr> {
    host.parse()
        .map_err(|_| PyValueError::new_err(format!("remote host must be an IP address literal, got {host:?}")))
}

/// A dict from `(key, value)` pairs where `group.name` puts `name` in the nested dict `group`.
pub(super) fn nested_dict<'py>(
    py: Python<'py>,
    fields: impl IntoIterator<Item = (&'static str, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (key, value) in fields {
        match key.split_once('.') {
            None => d.set_item(key, value)?,
            Some((group, key)) => match d.get_item(group)? {
                Some(nested) => nested.set_item(key, value)?,
                None => {
                    let nested = PyDict::new(py);
                    nested.set_item(key, value)?;
                    d.set_item(group, nested)?;
                }
            },
        }
    }
    Ok(d)
}
