//! virtio-vsock driven through real rx/tx virtqueues in guest memory, against real Unix
//! sockets: connects both ways, data both ways, credit flow control, RST, reset.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use super::connection::CONN_BUF;
use super::packet::*;
use super::*;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::test_utils::{Buf, GuestQueue, test_memory};

const GUEST_CID: u64 = 3;
const RX_BUFS: u64 = 0x40_0000;
const TX_BUF: u64 = 0x80_0000;
const BUF_LEN: u32 = 4096;

struct Rig {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    mem: GuestMemoryMmap,
    dev: Vsock,
    rx: GuestQueue,
    tx: GuestQueue,
    rx_seen: u16,
    rx_addr: HashMap<u16, u64>,
    tx_next: u64,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm.vsock");
    let mem = test_memory();
    let mut dev = Vsock::new(GUEST_CID, &uds).unwrap();
    let rx = GuestQueue::new(&mem, 0x1000, 64);
    let tx = GuestQueue::new(&mem, 0x2000, 64);
    let ev = GuestQueue::new(&mem, 0x3000, 64);
    dev.activate(mem.clone(), vec![rx.queue(), tx.queue(), ev.queue()])
        .unwrap();
    Rig {
        _dir: dir,
        uds,
        mem,
        dev,
        rx,
        tx,
        rx_seen: 0,
        rx_addr: HashMap::new(),
        tx_next: TX_BUF,
    }
}

fn hdr(src_port: u32, dst_port: u32, op: u16) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        kind: TYPE_STREAM,
        op,
        buf_alloc: 64 * 1024,
        ..Default::default()
    }
}

impl Rig {
    fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let slot = u64::from(self.rx.used_idx()) + self.rx_addr.len() as u64;
            let addr = RX_BUFS + (slot % 256) * u64::from(BUF_LEN);
            let head = self.rx.add_chain(&[Buf::w(addr, BUF_LEN)]);
            self.rx_addr.insert(head, addr);
        }
    }

    fn guest_send(&mut self, h: Header, payload: &[u8]) {
        let mut h = h;
        h.len = payload.len() as u32;
        let addr = self.tx_next;
        self.tx_next += 0x1_0000;
        self.mem
            .write_slice(h.as_slice(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(addr + HEADER_SIZE as u64))
            .unwrap();
        self.tx
            .add_chain(&[Buf::r(addr, HEADER_SIZE as u32 + payload.len() as u32)]);
        self.dev.process_tx();
        self.dev.process_rx();
    }

    /// Lets the host sockets' events through, then collects what reached the rx ring.
    fn take_rx(&mut self) -> Vec<(Header, Vec<u8>)> {
        for _ in 0..20 {
            self.dev.process_backend();
            if self.rx.used_idx() != self.rx_seen {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut out = Vec::new();
        while self.rx_seen != self.rx.used_idx() {
            let (head, len) = self.rx.used_elem(self.rx_seen);
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let addr = self.rx_addr.remove(&(head as u16)).unwrap();
            let mut bytes = vec![0u8; len as usize];
            self.mem.read_slice(&mut bytes, GuestAddress(addr)).unwrap();
            let h = parse(&bytes).unwrap();
            out.push((h, bytes[HEADER_SIZE..].to_vec()));
        }
        out
    }

    /// Host connects with CONNECT; the guest (port `port`) accepts. Returns (stream, host port).
    fn host_connect(&mut self, port: u32) -> (UnixStream, u32) {
        let mut s = UnixStream::connect(&self.uds).unwrap();
        s.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
        self.post_rx(1);
        let pkts = self.take_rx();
        assert_eq!(pkts.len(), 1, "{pkts:?}");
        let (req, _) = pkts[0];
        assert_eq!({ req.op }, OP_REQUEST);
        assert_eq!(({ req.dst_cid }, { req.dst_port }), (GUEST_CID, port));
        let local = req.src_port;
        self.guest_send(hdr(port, local, OP_RESPONSE), &[]);
        let mut line = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = s.read(&mut line).unwrap();
        assert_eq!(&line[..n], format!("OK {local}\n").as_bytes());
        (s, local)
    }
}

#[test]
fn host_initiated_connect_and_data_both_ways() {
    let mut r = rig();
    let (mut s, local) = r.host_connect(1024);
    s.write_all(b"ping").unwrap();
    r.post_rx(2);
    let pkts = r.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!({ pkts[0].0.op }, OP_RW);
    assert_eq!(pkts[0].1, b"ping");
    r.guest_send(hdr(1024, local, OP_RW), b"pong");
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

#[test]
fn guest_initiated_connect_reaches_uds_port_listener() {
    let mut r = rig();
    let listener = UnixListener::bind(format!("{}_5000", r.uds.display())).unwrap();
    r.post_rx(4);
    r.guest_send(hdr(40000, 5000, OP_REQUEST), &[]);
    let pkts = r.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!({ pkts[0].0.op }, OP_RESPONSE);
    assert_eq!(
        ({ pkts[0].0.src_port }, { pkts[0].0.dst_port }),
        (5000, 40000)
    );
    let (mut host, _) = listener.accept().unwrap();
    r.guest_send(hdr(40000, 5000, OP_RW), b"hello host");
    let mut buf = [0u8; 10];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello host");
    host.write_all(b"hello guest").unwrap();
    let pkts = r.take_rx();
    assert_eq!(pkts[0].1, b"hello guest");
}

#[test]
fn guest_connect_to_a_port_nobody_listens_on_gets_rst() {
    let mut r = rig();
    r.post_rx(1);
    r.guest_send(hdr(40001, 6000, OP_REQUEST), &[]);
    let pkts = r.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!({ pkts[0].0.op }, OP_RST);
    assert_eq!({ pkts[0].0.dst_port }, 40001);
    assert_eq!(r.dev.muxer().connection_count(), 0);
}

#[test]
fn packets_for_unknown_connections_get_rst_and_garbage_is_dropped() {
    let mut r = rig();
    r.post_rx(2);
    r.guest_send(hdr(1, 2, OP_RW), b"x");
    let pkts = r.take_rx();
    assert_eq!({ pkts[0].0.op }, OP_RST);
    // A header claiming more payload than it carries, and a short header.
    let mut h = hdr(1, 2, OP_RW);
    h.len = 60000;
    r.mem
        .write_slice(h.as_slice(), GuestAddress(TX_BUF))
        .unwrap();
    r.tx.add_chain(&[Buf::r(TX_BUF, HEADER_SIZE as u32 + 4)]);
    r.tx.add_chain(&[Buf::r(TX_BUF, 10)]);
    r.tx.add_chain(&[Buf::r(0xffff_0000_0000, 64)]);
    assert_eq!(r.dev.process_tx(), 3);
    assert!(!r.dev.needs_reset());
    assert!(r.take_rx().is_empty());
}

#[test]
fn a_slow_guest_reader_gets_no_more_than_its_credit() {
    let mut r = rig();
    let (mut s, local) = r.host_connect(1025);
    // The guest says it has 1,000 bytes of buffer.
    let mut h = hdr(1025, local, OP_CREDIT_UPDATE);
    h.buf_alloc = 1000;
    r.guest_send(h, &[]);
    s.write_all(&[7u8; 8192]).unwrap();
    r.post_rx(8);
    let got: usize = r.take_rx().iter().map(|p| p.1.len()).sum();
    assert_eq!(got, 1000);
    assert!(r.take_rx().is_empty(), "no credit, no data");
    // The guest consumed it all.
    h.fwd_cnt = 1000;
    r.guest_send(h, &[]);
    let got: usize = r.take_rx().iter().map(|p| p.1.len()).sum();
    assert_eq!(got, 1000);
}

#[test]
fn credit_updates_report_bytes_the_host_took() {
    let mut r = rig();
    let (mut s, local) = r.host_connect(1026);
    let chunk = vec![1u8; 60 * 1024];
    for _ in 0..2 {
        r.guest_send(hdr(1026, local, OP_RW), &chunk);
    }
    let mut sink = vec![0u8; chunk.len() * 2];
    s.read_exact(&mut sink).unwrap();
    r.post_rx(2);
    let mut h = hdr(1026, local, OP_CREDIT_REQUEST);
    h.len = 0;
    r.guest_send(h, &[]);
    let pkts = r.take_rx();
    let update = pkts.iter().find(|p| p.0.op == OP_CREDIT_UPDATE).unwrap();
    assert_eq!({ update.0.fwd_cnt }, 2 * 60 * 1024);
    assert_eq!({ update.0.buf_alloc }, CONN_BUF);
}

#[test]
fn host_close_sends_shutdown_and_guest_rst_closes() {
    let mut r = rig();
    let (s, local) = r.host_connect(1027);
    drop(s);
    r.post_rx(2);
    let pkts = r.take_rx();
    assert_eq!({ pkts[0].0.op }, OP_SHUTDOWN);
    r.guest_send(hdr(1027, local, OP_RST), &[]);
    assert_eq!(r.dev.muxer().connection_count(), 0);
}

#[test]
fn guest_shutdown_both_ways_closes_the_host_stream() {
    let mut r = rig();
    let (mut s, local) = r.host_connect(1028);
    let mut h = hdr(1028, local, OP_SHUTDOWN);
    h.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    r.post_rx(1);
    r.guest_send(h, &[]);
    assert_eq!({ r.take_rx()[0].0.op }, OP_RST);
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn reset_closes_every_host_stream() {
    let mut r = rig();
    let (mut s, _) = r.host_connect(1029);
    r.dev.reset();
    assert!(!r.dev.is_activated());
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_bad_handshake_line_is_closed_without_bothering_the_guest() {
    let mut r = rig();
    let mut s = UnixStream::connect(&r.uds).unwrap();
    s.write_all(b"HELLO\n").unwrap();
    r.post_rx(1);
    assert!(r.take_rx().is_empty());
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

/// `make bench`: host-to-guest and guest-to-host throughput through the device model (real
/// virtqueues, a real Unix socket, the guest side keeping to the credit protocol), next to a
/// plain Unix socket pair moving the same bytes in the same run.
#[test]
#[ignore = "a benchmark: make bench runs it"]
fn bench_vsock_throughput_next_to_a_unix_socket_pair() {
    const TOTAL: usize = 64 << 20;
    let mb = |secs: f64| TOTAL as f64 / (1024.0 * 1024.0) / secs;

    // Host to guest: a writer thread, the guest reads and returns credit as it goes.
    let mut r = rig();
    let (s, local) = r.host_connect(1030);
    let mut writer = s.try_clone().unwrap();
    let start = std::time::Instant::now();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![3u8; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            writer.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
    });
    let mut got = 0usize;
    let mut credit = hdr(1030, local, OP_CREDIT_UPDATE);
    credit.buf_alloc = 256 * 1024;
    r.guest_send(credit, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while got < TOTAL {
        assert!(
            std::time::Instant::now() < deadline,
            "host->guest stalled at {got}"
        );
        // Never more buffers out than the ring holds.
        let outstanding = r.rx_addr.len();
        r.post_rx(48usize.saturating_sub(outstanding));
        let before = got;
        for (h, data) in r.take_rx() {
            if h.op == OP_RW {
                got += data.len();
            }
        }
        if got != before {
            credit.fwd_cnt = got as u32;
            r.tx_next = TX_BUF;
            r.guest_send(credit, &[]);
        }
    }
    let to_guest = mb(start.elapsed().as_secs_f64());
    feeder.join().unwrap();

    // Guest to host: 60 KiB packets within the host's credit, a reader thread draining.
    let mut reader = s;
    let drained = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = drained.clone();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0;
        while n < TOTAL {
            let got = reader.read(&mut buf).unwrap();
            assert!(got > 0, "the connection closed after {n} bytes");
            n += got;
            counter.store(n, std::sync::atomic::Ordering::Release);
        }
    });
    let chunk = vec![4u8; 60 * 1024];
    let start = std::time::Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        // The guest keeps within the host's credit: at most CONN_BUF unread.
        while sent + chunk.len() - drained.load(std::sync::atomic::Ordering::Acquire)
            > CONN_BUF as usize
        {
            r.dev.process_backend();
            assert!(!drain.is_finished(), "the reader stopped");
        }
        r.tx_next = TX_BUF;
        r.guest_send(hdr(1030, local, OP_RW), &chunk);
        sent += chunk.len();
    }
    while drained.load(std::sync::atomic::Ordering::Acquire) < TOTAL {
        r.dev.process_backend();
    }
    drain.join().unwrap();
    let to_host = mb(start.elapsed().as_secs_f64());

    let (mut a, mut b) = UnixStream::pair().unwrap();
    let start = std::time::Instant::now();
    let pump = std::thread::spawn(move || {
        let chunk = vec![5u8; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            a.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    while n < TOTAL {
        n += b.read(&mut buf).unwrap();
    }
    pump.join().unwrap();
    let pair = mb(start.elapsed().as_secs_f64());
    println!(
        "virtio-vsock through the device model: host->guest {to_guest:.0} MB/s, guest->host {to_host:.0} MB/s; unix socket pair {pair:.0} MB/s; ratios {:.2} and {:.2}",
        to_guest / pair,
        to_host / pair
    );
}
