//! The host side of virtio-vsock: the [`Muxer`] owns the hybrid Unix socket, the handshakes,
//! every connection's host stream and the queue of packets waiting for the guest.
//!
//! All sockets are non-blocking and live in the muxer's own epoll set, which the device loop
//! watches as one descriptor. Connecting to `<uds>_<port>` never blocks: a Unix socket that
//! cannot take the connection at once is answered with RST.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{CONN_BUF, ConnState, Connection};
use super::packet::{
    HOST_CID, Header, MAX_PAYLOAD, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE,
    OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, parse_connect,
};

/// (host port, guest port).
type Key = (u32, u32);

const LISTENER_TOKEN: u64 = 0;
const MAX_HANDSHAKE_LINE: usize = 64;
const FIRST_LOCAL_PORT: u32 = 1 << 30;

struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    handshakes: HashMap<RawFd, Handshake>,
    /// Packets without payload, in order.
    control: VecDeque<Header>,
    /// Connections that may have data or a credit update for the guest.
    ready: VecDeque<Key>,
    next_local_port: u32,
}

fn fd_token(fd: RawFd) -> u64 {
    fd as u64 + 1
}

/// Connects to a Unix socket without blocking: either it connects now or it fails.
pub fn connect_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket owned by nobody else; the stream closes it on drop.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: `addr` is a valid sockaddr_un and the length passed is its size.
    let ret = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

impl Muxer {
    /// Listens on `uds_path` (a stale socket file there is replaced).
    pub fn new(guest_cid: u64, uds_path: &Path) -> std::io::Result<Self> {
        if uds_path.exists() && connect_nonblocking(uds_path).is_err() {
            std::fs::remove_file(uds_path)?;
        }
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
        )?;
        Ok(Muxer {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            epoll,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            control: VecDeque::new(),
            ready: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
        })
    }

    /// The muxer's epoll set, for the device loop to watch.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Whether packets may be waiting for the guest.
    pub fn has_rx(&self) -> bool {
        !self.control.is_empty() || !self.ready.is_empty()
    }

    /// Number of open connections (tests, stats).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Closes every connection and handshake (device reset).
    pub fn reset(&mut self) {
        for (fd, _) in self.handshakes.drain() {
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
        for (_, conn) in self.conns.drain() {
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                conn.stream.as_raw_fd(),
                EpollEvent::default(),
            );
        }
        self.by_fd.clear();
        self.control.clear();
        self.ready.clear();
    }

    fn watch(&self, fd: RawFd, events: EventSet, op: ControlOperation) {
        let what = format!("{op:?}");
        if let Err(e) = self
            .epoll
            .ctl(op, fd, EpollEvent::new(events, fd_token(fd)))
        {
            tracing::debug!("vsock: epoll {what} on fd {fd}: {e}");
        }
    }

    fn set_interest(&self, key: Key) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let mut events = EventSet::empty();
        if !conn.readable && conn.state == ConnState::Established {
            events |= EventSet::IN;
        }
        if !conn.pending.is_empty() {
            events |= EventSet::OUT;
        }
        self.watch(conn.stream.as_raw_fd(), events, ControlOperation::Modify);
    }

    fn schedule(&mut self, key: Key) {
        if !self.ready.contains(&key) {
            self.ready.push_back(key);
        }
    }

    fn header_for(&self, conn: &mut Connection, op: u16, len: u32, flags: u32) -> Header {
        conn.last_fwd_cnt_sent = conn.fwd_cnt;
        conn.credit_update_due = false;
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: conn.local_port,
            dst_port: conn.peer_port,
            len,
            kind: TYPE_STREAM,
            op,
            flags,
            buf_alloc: CONN_BUF,
            fwd_cnt: conn.fwd_cnt.0,
        }
    }

    /// An RST answering `hdr` (for connections we do not have or refuse).
    fn rst_reply(&mut self, hdr: &Header) {
        self.control.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: hdr.dst_port,
            dst_port: hdr.src_port,
            kind: TYPE_STREAM,
            op: OP_RST,
            ..Default::default()
        });
    }

    /// Drops a connection, optionally telling the guest with RST.
    fn kill(&mut self, key: Key, send_rst: bool) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        let fd = conn.stream.as_raw_fd();
        self.by_fd.remove(&fd);
        let _ = self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        if send_rst {
            let rst = self.header_for(&mut conn, OP_RST, 0, 0);
            self.control.push_back(rst);
        }
    }

    /// Handles whatever the host sockets have ready; never blocks.
    pub fn process_events(&mut self) {
        let mut events = [EpollEvent::default(); 32];
        let n = match self.epoll.wait(0, &mut events) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("vsock: epoll_wait: {e}");
                return;
            }
        };
        for event in &events[..n] {
            if event.data() == LISTENER_TOKEN {
                self.accept_all();
                continue;
            }
            let fd = (event.data() - 1) as RawFd;
            if self.handshakes.contains_key(&fd) {
                self.read_handshake(fd);
            } else if let Some(key) = self.by_fd.get(&fd).copied() {
                self.conn_event(key, event.event_set());
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(true) {
                        tracing::warn!("vsock: accepted stream: {e}");
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    self.watch(fd, EventSet::IN, ControlOperation::Add);
                    self.handshakes.insert(
                        fd,
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("vsock: accept on {}: {e}", self.uds_path.display());
                    return;
                }
            }
        }
    }

    fn alloc_local_port(&mut self) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
            if !self.conns.keys().any(|k| k.0 == port) {
                return port;
            }
        }
    }

    /// Reads the `CONNECT <port>\n` line one byte at a time, so no stream data is consumed.
    fn read_handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let mut byte = [0u8];
        let line = loop {
            match hs.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break Some(std::mem::take(&mut hs.line)),
                Ok(1) if hs.line.len() < MAX_HANDSHAKE_LINE => hs.line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break None, // EOF, error, or an over-long line
            }
        };
        let hs = self.handshakes.remove(&fd).expect("handshake present");
        let Some(port) = line.as_deref().and_then(parse_connect) else {
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            return; // dropping the stream closes it
        };
        let local = self.alloc_local_port();
        let mut conn = Connection::new(hs.stream, ConnState::Connecting, local, port);
        let request = self.header_for(&mut conn, OP_REQUEST, 0, 0);
        self.watch(fd, EventSet::empty(), ControlOperation::Modify);
        self.by_fd.insert(fd, (local, port));
        self.conns.insert((local, port), conn);
        self.control.push_back(request);
    }

    fn conn_event(&mut self, key: Key, events: EventSet) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if events.intersects(EventSet::OUT) && conn.flush_to_host().is_err() {
            self.kill(key, true);
            return;
        }
        if events.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
            conn.readable = true;
        }
        let due = conn.credit_update_due || conn.readable;
        if conn.pending.is_empty() && conn.peer_done_sending {
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            // A dead socket stays ready forever; stop watching it and drain it from the rx path.
            let fd = conn.stream.as_raw_fd();
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        } else {
            self.set_interest(key);
        }
        if due {
            self.schedule(key);
        }
    }

    /// A packet the guest sent (payload already checked against the header).
    pub fn send_to_host(&mut self, hdr: Header, data: &[u8]) {
        let (src_cid, dst_cid) = (hdr.src_cid, hdr.dst_cid);
        if dst_cid != HOST_CID || src_cid != self.guest_cid {
            tracing::debug!("vsock: dropping a packet from cid {src_cid} to cid {dst_cid}");
            return;
        }
        if hdr.kind != TYPE_STREAM {
            self.rst_reply(&hdr);
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        let op = hdr.op;
        let Some(conn) = self.conns.get_mut(&key) else {
            match op {
                OP_REQUEST => self.connect_to_host(hdr),
                OP_RST => {}
                _ => self.rst_reply(&hdr),
            }
            return;
        };
        conn.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
        match (op, conn.state) {
            (OP_RESPONSE, ConnState::Connecting) => {
                let line = format!("OK {}\n", conn.local_port);
                if conn.stream.write_all(line.as_bytes()).is_err() {
                    self.kill(key, true);
                    return;
                }
                conn.state = ConnState::Established;
                self.set_interest(key);
            }
            (OP_RW, ConnState::Established | ConnState::HostClosed) => {
                if data.len() > conn.free_space() as usize {
                    tracing::warn!("vsock: the guest overran its credit on port {}", key.0);
                    self.kill(key, true);
                    return;
                }
                if conn.push_to_host(data).is_err() {
                    self.kill(key, true);
                    return;
                }
                self.set_interest(key);
            }
            (OP_CREDIT_UPDATE, _) => {}
            (OP_CREDIT_REQUEST, _) => conn.credit_update_due = true,
            (OP_SHUTDOWN, _) => {
                let flags = hdr.flags;
                if flags & (SHUTDOWN_SEND | SHUTDOWN_RCV) == SHUTDOWN_SEND | SHUTDOWN_RCV {
                    self.kill(key, true);
                    return;
                }
                if flags & SHUTDOWN_SEND != 0 {
                    conn.peer_done_sending = true;
                    if conn.pending.is_empty() {
                        let _ = conn.stream.shutdown(Shutdown::Write);
                    }
                }
            }
            (OP_RST, _) => {
                self.kill(key, false);
                return;
            }
            _ => {
                self.kill(key, true);
                return;
            }
        }
        let conn = &self.conns[&key];
        if conn.credit_update_due || (conn.readable && conn.peer_credit() > 0) {
            self.schedule(key);
        }
    }

    /// Guest-initiated: connect to `<uds>_<port>` at once, answer RESPONSE or RST.
    fn connect_to_host(&mut self, hdr: Header) {
        let port = hdr.dst_port;
        let path = PathBuf::from(format!("{}_{port}", self.uds_path.display()));
        let stream = match connect_nonblocking(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("vsock: guest connect to host port {port}: {e}");
                self.rst_reply(&hdr);
                return;
            }
        };
        let key = (port, hdr.src_port);
        let mut conn = Connection::new(stream, ConnState::Established, port, hdr.src_port);
        conn.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
        let response = self.header_for(&mut conn, OP_RESPONSE, 0, 0);
        let fd = conn.stream.as_raw_fd();
        self.watch(fd, EventSet::IN, ControlOperation::Add);
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.control.push_back(response);
    }

    /// The next packet for the guest, with at most `max_payload` payload bytes.
    pub fn next_rx_packet(&mut self, max_payload: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(h) = self.control.pop_front() {
            return Some((h, Vec::new()));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(mut conn) = self.conns.remove(&key) else {
                continue;
            };
            let packet = self.rx_from(&mut conn, key, max_payload);
            let fd = conn.stream.as_raw_fd();
            let killed = matches!(&packet, Some((h, _)) if h.op == OP_RST);
            if killed {
                self.by_fd.remove(&fd);
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            } else {
                self.conns.insert(key, conn);
                self.set_interest(key);
            }
            if packet.is_some() {
                return packet;
            }
        }
        None
    }

    fn rx_from(
        &mut self,
        conn: &mut Connection,
        key: Key,
        max_payload: usize,
    ) -> Option<(Header, Vec<u8>)> {
        if conn.state == ConnState::Established && conn.readable && conn.peer_credit() > 0 {
            let n = max_payload
                .min(conn.peer_credit() as usize)
                .min(MAX_PAYLOAD);
            let mut buf = vec![0u8; n];
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    conn.readable = false;
                    conn.state = ConnState::HostClosed;
                    let _ = self.epoll.ctl(
                        ControlOperation::Delete,
                        conn.stream.as_raw_fd(),
                        EpollEvent::default(),
                    );
                    let flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
                    return Some((self.header_for(conn, OP_SHUTDOWN, 0, flags), Vec::new()));
                }
                Ok(k) => {
                    buf.truncate(k);
                    conn.rx_cnt += std::num::Wrapping(k as u32);
                    if !self.ready.contains(&key) {
                        self.ready.push_back(key);
                    }
                    return Some((self.header_for(conn, OP_RW, k as u32, 0), buf));
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    conn.readable = false;
                }
                Err(_) => return Some((self.header_for(conn, OP_RST, 0, 0), Vec::new())),
            }
        }
        if conn.credit_update_due {
            return Some((self.header_for(conn, OP_CREDIT_UPDATE, 0, 0), Vec::new()));
        }
        None
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
