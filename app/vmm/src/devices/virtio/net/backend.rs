//! The host side of the NIC: a non-blocking Unix stream to passt, with the bytes read but not yet
//! handed to the guest and the frames the guest sent but the socket has not yet taken.
//!
//! Both directions are bounded: past [`IN_HIGH`] buffered bytes the device stops reading (the
//! guest is not taking frames), past [`OUT_HIGH`] it stops taking frames from the guest (passt is
//! not reading). A length prefix that is zero or over [`MAX_FRAME`] is a protocol error: the
//! stream is closed and the NIC's link goes down; nothing else is affected.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// The largest Ethernet frame either side may send: passt's largest MTU (65520) plus the
/// Ethernet header, rounded up.
pub const MAX_FRAME: usize = 65_536;
/// Stop reading from the socket once this many bytes wait for the guest.
pub const IN_HIGH: usize = 512 * 1024;
/// Stop taking frames from the guest once this many bytes wait for the socket.
pub const OUT_HIGH: usize = 512 * 1024;
const LEN_PREFIX: usize = 4;
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the peer closed the stream")]
    Closed,
    #[error("the peer sent a frame length of {0} bytes (allowed: 1 to {MAX_FRAME})")]
    BadLength(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One connected stream in `-netdev stream` framing.
pub struct FrameStream {
    stream: Option<UnixStream>,
    input: Vec<u8>,
    in_start: usize,
    output: Vec<u8>,
    out_start: usize,
}

impl FrameStream {
    /// Takes a connected stream and makes it non-blocking.
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(FrameStream {
            stream: Some(stream),
            input: Vec::new(),
            in_start: 0,
            output: Vec::new(),
            out_start: 0,
        })
    }

    /// Connects to passt's socket at `path`.
    pub fn connect(path: &std::path::Path) -> std::io::Result<Self> {
        Self::new(UnixStream::connect(path)?)
    }

    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.stream.as_ref().map(|s| s.as_raw_fd())
    }

    /// Drops the stream and everything buffered in both directions.
    pub fn close(&mut self) {
        self.stream = None;
        self.input.clear();
        self.in_start = 0;
        self.output.clear();
        self.out_start = 0;
    }

    /// Bytes read and not yet consumed.
    pub fn buffered_in(&self) -> usize {
        self.input.len() - self.in_start
    }

    /// Bytes queued and not yet written.
    pub fn buffered_out(&self) -> usize {
        self.output.len() - self.out_start
    }

    /// Whether the socket should be watched for reading.
    pub fn wants_read(&self) -> bool {
        self.is_connected() && self.buffered_in() < IN_HIGH
    }

    /// Whether the socket should be watched for writing.
    pub fn wants_write(&self) -> bool {
        self.is_connected() && self.buffered_out() > 0
    }

    /// Whether another frame from the guest may be queued.
    pub fn can_queue(&self) -> bool {
        self.buffered_out() < OUT_HIGH
    }

    /// Reads what the socket has, up to [`IN_HIGH`] buffered bytes. `Ok` also when nothing was
    /// there; an error means the stream is gone (and has been closed).
    pub fn fill(&mut self) -> Result<(), StreamError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(StreamError::Closed);
        };
        if self.in_start > 0 && self.in_start * 2 >= self.input.len() {
            self.input.drain(..self.in_start);
            self.in_start = 0;
        }
        while self.input.len() - self.in_start < IN_HIGH {
            let old = self.input.len();
            self.input.resize(old + READ_CHUNK, 0);
            let got = stream.read(&mut self.input[old..]);
            match got {
                Ok(0) => {
                    // Frames that arrived before the end are still delivered.
                    self.input.truncate(old);
                    self.stream = None;
                    self.output.clear();
                    self.out_start = 0;
                    return Err(StreamError::Closed);
                }
                Ok(n) => self.input.truncate(old + n),
                Err(e) => {
                    self.input.truncate(old);
                    match e.kind() {
                        ErrorKind::WouldBlock => break,
                        ErrorKind::Interrupted => continue,
                        _ => {
                            self.close();
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The next complete frame, if one has arrived. A bad length closes the stream.
    pub fn peek_frame(&mut self) -> Result<Option<&[u8]>, StreamError> {
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        if len == 0 || len > MAX_FRAME {
            self.close();
            return Err(StreamError::BadLength(len));
        }
        let pending = &self.input[self.in_start..];
        if pending.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        Ok(Some(&pending[LEN_PREFIX..LEN_PREFIX + len]))
    }

    /// The length prefix of the next frame, once its four bytes have arrived.
    fn next_len(&self) -> Option<usize> {
        let prefix = self.input.get(self.in_start..self.in_start + LEN_PREFIX)?;
        Some(u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize)
    }

    /// Drops the frame [`FrameStream::peek_frame`] returned.
    pub fn consume_frame(&mut self) {
        let Some(len) = self.next_len() else {
            return;
        };
        self.in_start = (self.in_start + LEN_PREFIX + len).min(self.input.len());
        if self.in_start == self.input.len() {
            self.input.clear();
            self.in_start = 0;
        }
    }

    /// Queues one frame for the socket. Frames past [`MAX_FRAME`] or sent while disconnected
    /// are dropped (returns `false`).
    pub fn queue_frame(&mut self, frame: &[u8]) -> bool {
        if !self.is_connected() || frame.is_empty() || frame.len() > MAX_FRAME {
            return false;
        }
        self.output
            .extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.output.extend_from_slice(frame);
        true
    }

    /// Writes as much of the queued output as the socket takes now.
    pub fn flush(&mut self) -> Result<(), StreamError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(StreamError::Closed);
        };
        while self.out_start < self.output.len() {
            match stream.write(&self.output[self.out_start..]) {
                Ok(0) => {
                    self.close();
                    return Err(StreamError::Closed);
                }
                Ok(n) => self.out_start += n,
                Err(e) => match e.kind() {
                    ErrorKind::WouldBlock => break,
                    ErrorKind::Interrupted => continue,
                    _ => {
                        self.close();
                        return Err(e.into());
                    }
                },
            }
        }
        if self.out_start == self.output.len() {
            self.output.clear();
            self.out_start = 0;
        } else if self.out_start * 2 >= self.output.len() {
            self.output.drain(..self.out_start);
            self.out_start = 0;
        }
        Ok(())
    }
}
