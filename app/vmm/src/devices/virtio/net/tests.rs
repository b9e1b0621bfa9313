//! virtio-net driven through real rx/tx virtqueues in guest memory, against a real Unix socket
//! pair standing in for passt: framing both ways, mergeable rx buffers, back-pressure in both
//! directions, a peer that breaks the framing or goes away.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::device::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS};
use super::*;
use crate::devices::virtio::test_utils::{Buf, GuestQueue, test_memory};
use crate::devices::virtio::{VIRTIO_F_VERSION_1, VirtioDevice};

const MAC: [u8; 6] = [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee];
const RX_BUFS: u64 = 0x40_0000;
const TX_BUFS: u64 = 0x80_0000;

struct Rig {
    mem: GuestMemoryMmap,
    dev: Net,
    peer: UnixStream,
    rx: GuestQueue,
    tx: GuestQueue,
    rx_addr: std::collections::HashMap<u16, u64>,
    rx_posted: u64,
    tx_next: u64,
}

fn rig_with(features: u64) -> Rig {
    let (ours, peer) = UnixStream::pair().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mem = test_memory();
    let mut dev = Net::new(MAC, FrameStream::new(ours).unwrap()).unwrap();
    let rx = GuestQueue::new(&mem, 0x1000, 64);
    let tx = GuestQueue::new(&mem, 0x2000, 64);
    dev.set_acked_features(features);
    dev.activate(mem.clone(), vec![rx.queue(), tx.queue()])
        .unwrap();
    Rig {
        mem,
        dev,
        peer,
        rx,
        tx,
        rx_addr: Default::default(),
        rx_posted: 0,
        tx_next: TX_BUFS,
    }
}

fn rig() -> Rig {
    rig_with(VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_STATUS)
}

/// A frame of `len` bytes whose every byte says which frame it is.
fn frame(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i / 251) as u8))
        .collect()
}

impl Rig {
    /// Posts `n` writable rx buffers of `size` bytes.
    fn post_rx(&mut self, n: usize, size: u32) {
        for _ in 0..n {
            let addr = RX_BUFS + (self.rx_posted % 64) * 0x1_0000;
            self.rx_posted += 1;
            let head = self.rx.add_chain(&[Buf::w(addr, size)]);
            self.rx_addr.insert(head, addr);
        }
    }

    /// Queues `frame` on tx as Linux does: the header in one descriptor, the frame in another.
    fn queue_tx(&mut self, frame: &[u8]) {
        let addr = self.tx_next;
        self.tx_next += 0x1_0000 + 0x100;
        self.mem
            .write_slice(&[0u8; NET_HDR_LEN], GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(frame, GuestAddress(addr + 0x100))
            .unwrap();
        self.tx.add_chain(&[
            Buf::r(addr, NET_HDR_LEN as u32),
            Buf::r(addr + 0x100, frame.len() as u32),
        ]);
    }

    fn peer_send(&mut self, frame: &[u8]) {
        self.peer
            .write_all(&(frame.len() as u32).to_be_bytes())
            .unwrap();
        self.peer.write_all(frame).unwrap();
    }

    fn peer_recv(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.peer.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        self.peer.read_exact(&mut frame).unwrap();
        frame
    }

    /// The used rx element `i`: its bytes as the driver would read them.
    fn rx_used(&self, i: u16) -> Vec<u8> {
        let (head, len) = self.rx.used_elem(i);
        let addr = self.rx_addr[&(head as u16)];
        let mut out = vec![0u8; len as usize];
        self.mem.read_slice(&mut out, GuestAddress(addr)).unwrap();
        out
    }

    /// Reassembles the frame whose first buffer is used element `first`: (num_buffers, frame).
    fn rx_frame(&self, first: u16) -> (u16, Vec<u8>) {
        let head = self.rx_used(first);
        let num = u16::from_le_bytes([head[10], head[11]]);
        let mut frame = head[NET_HDR_LEN..].to_vec();
        for i in 1..num {
            frame.extend(self.rx_used(first + i));
        }
        (num, frame)
    }

    fn link_up(&self) -> bool {
        let mut status = [0u8; 2];
        self.dev.read_config(6, &mut status);
        u16::from_le_bytes(status) & 1 == 1
    }
}

#[test]
fn config_space_has_the_mac_and_the_link_up() {
    let r = rig();
    let mut mac = [0u8; 6];
    r.dev.read_config(0, &mut mac);
    assert_eq!(mac, MAC);
    assert!(r.link_up());
    let features = r.dev.avail_features();
    for f in [
        VIRTIO_F_VERSION_1,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
    ] {
        assert_ne!(features & f, 0);
    }
    assert_eq!(r.dev.device_type(), 1);
}

#[test]
fn tx_frames_reach_the_socket_framed_without_the_header() {
    let mut r = rig();
    let a = frame(1, 60);
    let b = frame(7, MAX_FRAME);
    r.queue_tx(&a);
    r.queue_tx(&b);
    assert_eq!(r.dev.process_tx(), 2);
    assert_eq!(r.tx.used_idx(), 2);
    assert_ne!(r.dev.interrupt().status() & 1, 0);
    assert_eq!(r.peer_recv(), a);
    assert_eq!(r.peer_recv(), b);
}

#[test]
fn an_rx_frame_fills_one_buffer_with_its_header() {
    let mut r = rig();
    r.post_rx(2, 2048);
    let f = frame(3, 1514);
    r.peer_send(&f);
    r.dev.process_stream_in();
    assert_eq!(r.rx.used_idx(), 1);
    assert_eq!(r.rx.used_elem(0).1 as usize, NET_HDR_LEN + f.len());
    assert_eq!(r.rx_frame(0), (1, f));
    assert_eq!(&r.rx_used(0)[..10], &[0u8; 10], "no offloads in the header");
    assert_ne!(r.dev.interrupt().status() & 1, 0);
}

#[test]
fn a_large_frame_spans_mergeable_buffers() {
    let mut r = rig();
    r.post_rx(8, 2048);
    let big = frame(9, 9000);
    let small = frame(40, 100);
    r.peer_send(&big);
    r.peer_send(&small);
    r.dev.process_stream_in();
    // 12 + 9000 bytes in 2048-byte buffers: 5 of them; then one for the small frame.
    assert_eq!(r.rx.used_idx(), 6);
    assert_eq!(r.rx_frame(0), (5, big));
    assert_eq!(r.rx_frame(5), (1, small));
}

#[test]
fn frames_wait_for_buffers_and_for_their_last_byte() {
    let mut r = rig();
    let f = frame(5, 3000);
    // Half a frame: nothing to deliver yet.
    r.peer.write_all(&(f.len() as u32).to_be_bytes()).unwrap();
    r.peer.write_all(&f[..1000]).unwrap();
    r.post_rx(4, 2048);
    r.dev.process_stream_in();
    assert_eq!(r.rx.used_idx(), 0);
    r.peer.write_all(&f[1000..]).unwrap();
    // Only one buffer posted for a two-buffer frame: it waits, and the buffer is not used.
    let mut r2 = rig();
    r2.post_rx(1, 2048);
    r2.peer_send(&f);
    r2.dev.process_stream_in();
    assert_eq!(r2.rx.used_idx(), 0);
    r2.post_rx(1, 2048);
    assert_eq!(r2.dev.process_rx(), 1);
    assert_eq!(r2.rx_frame(0), (2, f.clone()));
    // And the first rig completes once the rest arrived.
    r.dev.process_stream_in();
    assert_eq!(r.rx_frame(0), (2, f));
}

#[test]
fn without_mergeable_buffers_a_frame_too_big_for_one_is_dropped() {
    let mut r = rig_with(VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC);
    r.post_rx(2, 2048);
    r.peer_send(&frame(1, 4000));
    let small = frame(2, 64);
    r.peer_send(&small);
    r.dev.process_stream_in();
    assert_eq!(r.rx.used_idx(), 1);
    assert_eq!(r.rx_frame(0), (1, small));
    assert!(!r.dev.needs_reset());
}

#[test]
fn a_peer_that_does_not_read_holds_the_guest_back_without_loss() {
    let mut r = rig();
    let n = 24u8;
    for i in 0..n {
        r.queue_tx(&frame(i, 60_000));
    }
    r.dev.process_tx();
    let taken = r.tx.used_idx();
    assert!(
        taken < u16::from(n),
        "1.4 MB cannot all be buffered: {taken} taken"
    );
    let mut peer = r.peer.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut frames = Vec::new();
        for _ in 0..n {
            let mut len = [0u8; 4];
            peer.read_exact(&mut len).unwrap();
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            peer.read_exact(&mut f).unwrap();
            frames.push(f);
        }
        frames
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.tx.used_idx() < u16::from(n) || r.dev.stream.buffered_out() > 0 {
        assert!(std::time::Instant::now() < deadline, "tx stalled");
        r.dev.process_stream_out();
        std::thread::sleep(Duration::from_millis(1));
    }
    let frames = reader.join().unwrap();
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(*f, frame(i as u8, 60_000), "frame {i}");
    }
}

#[test]
fn a_guest_that_takes_no_frames_stops_the_reading() {
    let mut r = rig();
    let n = 20u8;
    let mut peer = r.peer.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            let f = frame(i, 60_000);
            peer.write_all(&(f.len() as u32).to_be_bytes()).unwrap();
            peer.write_all(&f).unwrap();
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.dev.stream.wants_read() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading never stopped"
        );
        r.dev.process_stream_in();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(r.dev.stream.buffered_in() < 2 * 512 * 1024, "bounded");
    assert_eq!(r.rx.used_idx(), 0);
    // The guest posts buffers: everything arrives, in order.
    r.post_rx(usize::from(n), 0x1_0000);
    while r.rx.used_idx() < u16::from(n) {
        assert!(std::time::Instant::now() < deadline, "frames lost");
        r.dev.process_stream_in();
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.join().unwrap();
    for i in 0..n {
        assert_eq!(r.rx_frame(u16::from(i)), (1, frame(i, 60_000)), "frame {i}");
    }
}

#[test]
fn a_bad_length_from_the_peer_takes_the_link_down_and_nothing_else() {
    let mut r = rig();
    r.post_rx(2, 2048);
    r.peer.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    r.dev.process_stream_in();
    assert!(!r.link_up());
    assert_ne!(r.dev.interrupt().status() & 2, 0, "config change signalled");
    assert!(!r.dev.needs_reset());
    assert_eq!(r.rx.used_idx(), 0);
    // The guest's frames are now used and dropped, not left to pile up.
    r.queue_tx(&frame(1, 100));
    assert_eq!(r.dev.process_tx(), 1);
    // The peer sees its end closed.
    let mut buf = [0u8; 1];
    assert_eq!(r.peer.read(&mut buf).unwrap(), 0);
}

#[test]
fn the_peer_going_away_takes_the_link_down_after_its_last_frame() {
    let mut r = rig();
    let last = frame(6, 500);
    r.peer_send(&last);
    r.peer.shutdown(std::net::Shutdown::Both).unwrap();
    r.post_rx(1, 2048);
    r.dev.process_stream_in();
    assert!(!r.link_up());
    assert!(!r.dev.stream.wants_read());
    assert_eq!(r.rx_frame(0), (1, last));
}

#[test]
fn malformed_tx_chains_are_used_and_dropped() {
    let mut r = rig();
    // Only a header, no frame.
    r.tx.add_chain(&[Buf::r(TX_BUFS, NET_HDR_LEN as u32)]);
    // Outside guest memory.
    r.tx.add_chain(&[Buf::r(0xffff_ffff_0000, 100)]);
    // Larger than any frame.
    r.tx.add_chain(&[Buf::r(TX_BUFS, (NET_HDR_LEN + MAX_FRAME + 1) as u32)]);
    let good = frame(8, 42);
    r.queue_tx(&good);
    assert_eq!(r.dev.process_tx(), 4);
    assert!(!r.dev.needs_reset());
    assert_eq!(r.peer_recv(), good);
}

#[test]
fn a_bogus_avail_index_asks_for_a_reset() {
    let mut r = rig();
    r.tx.set_avail_idx(1000);
    assert_eq!(r.dev.process_tx(), 0);
    assert!(r.dev.needs_reset());
}

/// `make bench`: frames through the device both ways, next to the same bytes through a bare
/// Unix socket pair (what passt's socket costs without the device).
#[test]
#[ignore]
fn bench_net_throughput_next_to_a_unix_socket_pair() {
    const TOTAL: usize = 64 << 20;
    const FRAME: usize = 65_520;
    let mb = |secs: f64| TOTAL as f64 / (1024.0 * 1024.0) / secs;

    // Bare socket pair.
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let start = std::time::Instant::now();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![1u8; FRAME];
        let mut sent = 0;
        while sent < TOTAL {
            a.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < TOTAL {
        got += b.read(&mut buf).unwrap();
    }
    feeder.join().unwrap();
    let bare = mb(start.elapsed().as_secs_f64());

    // Guest to passt: full-size frames, a reader thread draining the socket.
    let mut r = rig();
    let mut reader = r.peer.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0;
        while n < TOTAL / FRAME * (FRAME + 4) {
            n += reader.read(&mut buf).unwrap();
        }
    });
    let frame = frame(2, FRAME);
    let start = std::time::Instant::now();
    let mut queued = 0usize;
    while queued < TOTAL / FRAME {
        while queued - usize::from(r.tx.used_idx()) < 30 && queued < TOTAL / FRAME {
            if r.tx_next > TX_BUFS + 40 * 0x1_0100 {
                r.tx_next = TX_BUFS;
            }
            r.queue_tx(&frame);
            queued += 1;
        }
        r.dev.process_tx();
        r.dev.process_stream_out();
    }
    while usize::from(r.tx.used_idx()) < queued || r.dev.stream.buffered_out() > 0 {
        r.dev.process_stream_out();
    }
    drain.join().unwrap();
    let from_guest = mb(start.elapsed().as_secs_f64());

    // passt to guest: a writer thread, the guest posting 4 KiB buffers as Linux does.
    let mut r = rig();
    let mut writer = r.peer.try_clone().unwrap();
    let frames = TOTAL / FRAME;
    let start = std::time::Instant::now();
    let feeder = std::thread::spawn(move || {
        let mut framed = (FRAME as u32).to_be_bytes().to_vec();
        framed.extend(std::iter::repeat_n(5u8, FRAME));
        for _ in 0..frames {
            writer.write_all(&framed).unwrap();
        }
    });
    let mut seen = 0u16;
    let mut bytes = 0usize;
    let mut outstanding = 0usize;
    while bytes < frames * (FRAME + NET_HDR_LEN) {
        r.post_rx(60 - outstanding, 4096);
        outstanding = 60;
        r.dev.process_stream_in();
        while seen != r.rx.used_idx() {
            bytes += r.rx.used_elem(seen).1 as usize;
            seen = seen.wrapping_add(1);
            outstanding -= 1;
        }
    }
    feeder.join().unwrap();
    let to_guest = mb(start.elapsed().as_secs_f64());
    println!(
        "virtio-net device, 64 MiB in {FRAME}-byte frames: guest->passt {from_guest:.0} MB/s, \
         passt->guest {to_guest:.0} MB/s; bare Unix socket pair {bare:.0} MB/s; ratios \
         {:.2} / {:.2}",
        from_guest / bare,
        to_guest / bare
    );
}
