//! Wakes an asyncio loop from the driver thread: one byte on a socket pair per batch
//! (`driver::sys::WakePipe`), plus the list of connections that changed. The loop watches the socket with `add_reader`, so no
//! Python code runs on the driver thread and no GIL is taken there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;

use crate::driver::sys::{RawSocket, WakePipe};
use crate::driver::Notify;

struct Registration {
    id: u64,
    queued: AtomicBool,
}

struct Shared {
    ready: Mutex<Vec<Arc<Registration>>>,
    signalled: AtomicBool,
    pipe: WakePipe,
}

/// One connection's link to a loop's waker; notifications coalesce until the loop drains.
pub(crate) struct Token {
    registration: Arc<Registration>,
    shared: Arc<Shared>,
}

impl Notify for Token {
    fn notify(&self) {
        if self.registration.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.registration.clone());
        // The registration is visible before the signal, and `drain` clears the signal before
        // taking registrations, so no notification falls between them.
        if !self.shared.signalled.swap(true, Ordering::AcqRel) {
            self.shared.pipe.signal();
        }
    }
}

/// A per-event-loop wake-up channel.
#[pyclass(frozen, module = "dtls_peer._native")]
pub(crate) struct Waker {
    shared: Arc<Shared>,
}

impl Waker {
    pub(crate) fn token(&self, id: u64) -> Token {
        Token {
            registration: Arc::new(Registration {
                id,
                queued: AtomicBool::new(false),
            }),
            shared: self.shared.clone(),
        }
    }
}

#[pymethods]
impl Waker {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            shared: Arc::new(Shared {
                ready: Mutex::new(Vec::new()),
                signalled: AtomicBool::new(false),
                pipe: WakePipe::new()?,
            }),
        })
    }

    /// The descriptor (socket handle on Windows) to watch for readability.
    fn fileno(&self) -> RawSocket {
        self.shared.pipe.reader()
    }

    /// Consumes the wake-up and returns the ids of the connections that changed.
    fn drain(&self) -> Vec<u64> {
        self.shared.pipe.drain();
        self.shared.signalled.store(false, Ordering::Release);
        let ready = std::mem::take(&mut *self.shared.ready.lock().unwrap_or_else(PoisonError::into_inner));
        ready
            .iter()
            .map(|r| {
                r.queued.store(false, Ordering::Release);
                r.id
            })
            .collect()
    }
}
