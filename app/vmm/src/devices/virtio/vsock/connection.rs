//! One vsock stream between a guest port and a host Unix socket: its state, its credit
//! accounting (virtio 1.2, 5.10.6.3) and the bytes waiting for a slow host reader.

use std::collections::VecDeque;
use std::io::Write;
use std::num::Wrapping;
use std::os::unix::net::UnixStream;

/// Bytes of guest data we buffer per connection: our `buf_alloc`.
pub const CONN_BUF: u32 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Host-initiated: REQUEST sent to the guest, waiting for RESPONSE.
    Connecting,
    Established,
    /// The host side hit EOF; SHUTDOWN was sent and the guest's RST is awaited.
    HostClosed,
}

pub struct Connection {
    pub stream: UnixStream,
    pub state: ConnState,
    /// Our (host) port and the guest's port.
    pub local_port: u32,
    pub peer_port: u32,
    /// The guest's receive buffer and how much of it it has consumed.
    pub peer_buf_alloc: u32,
    pub peer_fwd_cnt: Wrapping<u32>,
    /// Bytes we sent to the guest.
    pub rx_cnt: Wrapping<u32>,
    /// Bytes from the guest written to the host socket, and the value last told to the guest.
    pub fwd_cnt: Wrapping<u32>,
    pub last_fwd_cnt_sent: Wrapping<u32>,
    /// Guest bytes the host socket has not taken yet.
    pub pending: VecDeque<u8>,
    /// The host socket may have data we have not read.
    pub readable: bool,
    /// The guest should hear our fwd_cnt.
    pub credit_update_due: bool,
    /// The guest said it will send no more.
    pub peer_done_sending: bool,
}

impl Connection {
    pub fn new(stream: UnixStream, state: ConnState, local_port: u32, peer_port: u32) -> Self {
        Connection {
            stream,
            state,
            local_port,
            peer_port,
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            pending: VecDeque::new(),
            readable: false,
            credit_update_due: false,
            peer_done_sending: false,
        }
    }

    /// How many more bytes the guest can take now.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Records the guest's buffer state from any packet it sent.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
    }

    /// Room left in our buffer for guest data.
    pub fn free_space(&self) -> u32 {
        CONN_BUF.saturating_sub(self.pending.len() as u32)
    }

    /// Queues guest bytes for the host and writes as much as the socket takes now.
    pub fn push_to_host(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.pending.extend(data);
        self.flush_to_host()
    }

    /// Writes buffered guest bytes to the host socket until it would block.
    pub fn flush_to_host(&mut self) -> std::io::Result<()> {
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                    self.fwd_cnt += Wrapping(n as u32);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Tell the guest once it has freed a quarter of our buffer, so it never stalls.
        if (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CONN_BUF / 4 {
            self.credit_update_due = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_follows_what_the_guest_consumed() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, ConnState::Established, 1, 2);
        c.update_peer_credit(4096, 0);
        assert_eq!(c.peer_credit(), 4096);
        c.rx_cnt += Wrapping(4000);
        assert_eq!(c.peer_credit(), 96);
        c.update_peer_credit(4096, 4000);
        assert_eq!(c.peer_credit(), 4096);
        // Counters wrap.
        c.rx_cnt = Wrapping(u32::MAX - 10);
        c.update_peer_credit(4096, u32::MAX - 20);
        assert_eq!(c.peer_credit(), 4086);
    }
}
