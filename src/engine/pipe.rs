//! A datagram-exact stream for OpenSSL: each read yields one whole datagram, each write is one.

use std::collections::VecDeque;
use std::io;

/// Incoming datagrams waiting for OpenSSL and outgoing datagrams it produced.
#[derive(Debug, Default)]
pub(crate) struct DatagramPipe {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl DatagramPipe {
    pub(crate) fn push_incoming(&mut self, datagram: Vec<u8>) {
        self.incoming.push_back(datagram);
    }

    /// Forgets input OpenSSL did not consume (it stopped reading after an error).
    pub(crate) fn clear_incoming(&mut self) {
        self.incoming.clear();
    }

    /// Datagrams produced and not yet collected.
    pub(crate) fn outgoing_len(&self) -> usize {
        self.outgoing.len()
    }

    /// Copies of the datagrams produced after the first `from` (what one call of OpenSSL wrote,
    /// given the length before it).
    pub(crate) fn outgoing_since(&self, from: usize) -> Vec<Vec<u8>> {
        self.outgoing.iter().skip(from).cloned().collect()
    }

    pub(crate) fn pop_outgoing(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    pub(crate) fn push_outgoing(&mut self, datagram: Vec<u8>) {
        self.outgoing.push_back(datagram);
    }

    /// What OpenSSL wrote and nobody has sent yet.
    pub(crate) fn take_outgoing(&mut self) -> Vec<Vec<u8>> {
        self.outgoing.drain(..).collect()
    }
}

impl io::Read for DatagramPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ok(0) would read as EOF to OpenSSL; an empty queue must be WouldBlock.
        let Some(datagram) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // OpenSSL reads with a buffer larger than any datagram we accept; a shorter read
        // would cut a record in half, so such a datagram is passed on truncated (and dropped).
        let n = datagram.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram[..n]);
        Ok(n)
    }
}

impl io::Write for DatagramPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
