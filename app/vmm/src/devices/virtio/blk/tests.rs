//! virtio-blk driven through a real virtqueue in guest memory, against a real sparse file.

use std::path::PathBuf;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use super::request::*;
use super::*;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::test_utils::{Buf, GuestQueue, test_memory};

const DISK_SIZE: u64 = 8 << 20;
const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;

struct Rig {
    _dir: tempfile::TempDir,
    path: PathBuf,
    mem: GuestMemoryMmap,
    dev: Block,
    q: GuestQueue,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(DISK_SIZE)
        .unwrap();
    let mem = test_memory();
    let mut dev = Block::new(DiskFile::open(&path, false).unwrap()).unwrap();
    let q = GuestQueue::new(&mem, 0x1000, 16);
    dev.activate(mem.clone(), vec![q.queue()]).unwrap();
    Rig {
        _dir: dir,
        path,
        mem,
        dev,
        q,
    }
}

impl Rig {
    fn header(&self, kind: u32, sector: u64) {
        let h = RequestHeader {
            kind,
            ioprio: 0,
            sector,
        };
        self.mem.write_obj(h, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    /// Submits one request and runs the device; returns (status, used length).
    fn submit(&mut self, bufs: &[Buf]) -> (u8, u32) {
        let head = self.q.add_chain(bufs);
        let before = self.q.used_idx();
        assert_eq!(self.dev.process_queue(), 1);
        assert_eq!(self.q.used_idx(), before.wrapping_add(1));
        let (id, len) = self.q.used_elem(before);
        assert_eq!(id, u32::from(head));
        (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> u8 {
        self.header(VIRTIO_BLK_T_OUT, sector);
        self.mem.write_slice(data, GuestAddress(DATA)).unwrap();
        let len = data.len() as u32;
        self.submit(&[Buf::r(HDR, 16), Buf::r(DATA, len), Buf::w(STATUS, 1)])
            .0
    }

    fn read(&mut self, sector: u64, len: u32) -> (u8, Vec<u8>) {
        self.header(VIRTIO_BLK_T_IN, sector);
        let (status, used) = self.submit(&[Buf::r(HDR, 16), Buf::w(DATA, len), Buf::w(STATUS, 1)]);
        if status == VIRTIO_BLK_S_OK {
            assert_eq!(used, len + 1);
        }
        let mut out = vec![0u8; len as usize];
        self.mem.read_slice(&mut out, GuestAddress(DATA)).unwrap();
        (status, out)
    }

    fn segments(&mut self, kind: u32, segs: &[DiscardSegment]) -> u8 {
        self.header(kind, 0);
        let mut bytes = Vec::new();
        for s in segs {
            bytes.extend_from_slice(s.as_slice());
        }
        self.mem.write_slice(&bytes, GuestAddress(DATA)).unwrap();
        let len = bytes.len() as u32;
        self.submit(&[Buf::r(HDR, 16), Buf::r(DATA, len), Buf::w(STATUS, 1)])
            .0
    }
}

#[test]
fn writes_then_reads_back_and_reaches_the_file() {
    let mut r = rig();
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.write(8, &data), VIRTIO_BLK_S_OK);
    let (status, back) = r.read(8, 4096);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(back, data);
    let file = std::fs::read(&r.path).unwrap();
    assert_eq!(&file[8 * 512..8 * 512 + 4096], &data[..]);
    assert_ne!(r.dev.interrupt().status() & 1, 0);
}

#[test]
fn data_split_over_several_descriptors() {
    let mut r = rig();
    r.mem.write_slice(&[7u8; 512], GuestAddress(DATA)).unwrap();
    r.mem
        .write_slice(&[9u8; 512], GuestAddress(DATA + 0x1000))
        .unwrap();
    r.header(VIRTIO_BLK_T_OUT, 0);
    let (status, _) = r.submit(&[
        Buf::r(HDR, 16),
        Buf::r(DATA, 512),
        Buf::r(DATA + 0x1000, 512),
        Buf::w(STATUS, 1),
    ]);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    let (_, back) = r.read(0, 1024);
    assert_eq!(&back[..512], &[7u8; 512]);
    assert_eq!(&back[512..], &[9u8; 512]);
}

#[test]
fn flush_succeeds() {
    let mut r = rig();
    r.write(0, &[1u8; 512]);
    r.header(VIRTIO_BLK_T_FLUSH, 0);
    let (status, used) = r.submit(&[Buf::r(HDR, 16), Buf::w(STATUS, 1)]);
    assert_eq!((status, used), (VIRTIO_BLK_S_OK, 1));
}

#[test]
fn discard_punches_holes_and_the_file_shrinks() {
    let mut r = rig();
    let mb = vec![0x5au8; 1 << 20];
    for i in 0..4u64 {
        r.write(i * 2048, &mb[..]);
    }
    r.dev.disk().sync_data().unwrap();
    let before = r.dev.disk().allocated_bytes().unwrap();
    assert!(before >= 4 << 20, "allocated {before}");
    let seg = DiscardSegment {
        sector: 0,
        num_sectors: 2 * 2048,
        flags: 0,
    };
    assert_eq!(r.segments(VIRTIO_BLK_T_DISCARD, &[seg]), VIRTIO_BLK_S_OK);
    let after = r.dev.disk().allocated_bytes().unwrap();
    assert!(after + (2 << 20) <= before, "allocated {before} -> {after}");
    let (_, back) = r.read(0, 512);
    assert_eq!(back, vec![0u8; 512]);
}

#[test]
fn write_zeroes_reads_back_zeros() {
    let mut r = rig();
    r.write(16, &[0xeeu8; 4096]);
    let seg = DiscardSegment {
        sector: 16,
        num_sectors: 8,
        flags: 1,
    };
    assert_eq!(
        r.segments(VIRTIO_BLK_T_WRITE_ZEROES, &[seg]),
        VIRTIO_BLK_S_OK
    );
    assert_eq!(r.read(16, 4096).1, vec![0u8; 4096]);
}

#[test]
fn requests_outside_the_disk_get_ioerr() {
    let mut r = rig();
    let last = DISK_SIZE / 512;
    assert_eq!(r.write(last, &[1u8; 512]), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.write(last - 1, &[1u8; 1024]), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.read(u64::MAX / 2, 512).0, VIRTIO_BLK_S_IOERR);
    let seg = DiscardSegment {
        sector: last,
        num_sectors: 1,
        flags: 0,
    };
    assert_eq!(r.segments(VIRTIO_BLK_T_DISCARD, &[seg]), VIRTIO_BLK_S_IOERR);
    // Not a whole sector.
    assert_eq!(r.write(0, &[1u8; 100]), VIRTIO_BLK_S_IOERR);
}

#[test]
fn unknown_requests_are_unsupported_and_get_id_answers() {
    let mut r = rig();
    r.header(77, 0);
    assert_eq!(
        r.submit(&[Buf::r(HDR, 16), Buf::w(STATUS, 1)]).0,
        VIRTIO_BLK_S_UNSUPP
    );
    r.header(VIRTIO_BLK_T_GET_ID, 0);
    let (status, used) = r.submit(&[Buf::r(HDR, 16), Buf::w(DATA, 20), Buf::w(STATUS, 1)]);
    assert_eq!((status, used), (VIRTIO_BLK_S_OK, 21));
    let mut id = [0u8; 5];
    r.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"berth");
}

#[test]
fn the_disk_is_locked_while_open() {
    let r = rig();
    assert!(matches!(
        DiskFile::open(&r.path, false),
        Err(BlockError::Locked(_))
    ));
}

#[test]
fn read_only_disks_refuse_writes() {
    let r = rig();
    let ro_path = r.path.with_extension("ro");
    std::fs::write(&ro_path, vec![0u8; 4096]).unwrap();
    let mut dev = Block::new(DiskFile::open(&ro_path, true).unwrap()).unwrap();
    assert_ne!(dev.avail_features() & (1 << 5), 0);
    let mut q = GuestQueue::new(&r.mem, 0x8000, 16);
    dev.activate(r.mem.clone(), vec![q.queue()]).unwrap();
    r.header(VIRTIO_BLK_T_OUT, 0);
    q.add_chain(&[Buf::r(HDR, 16), Buf::r(DATA, 512), Buf::w(STATUS, 1)]);
    dev.process_queue();
    let status: u8 = r.mem.read_obj(GuestAddress(STATUS)).unwrap();
    assert_eq!(status, VIRTIO_BLK_S_IOERR);
}

#[test]
fn garbage_chains_get_error_status_or_nothing_but_never_panic() {
    let mut r = rig();
    // Header shorter than 16 bytes.
    r.header(VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        r.submit(&[Buf::r(HDR, 8), Buf::w(STATUS, 1)]).0,
        VIRTIO_BLK_S_IOERR
    );
    // Data buffer outside guest memory: nothing is written, used length 0.
    r.header(VIRTIO_BLK_T_IN, 0);
    let (status, used) = r.submit(&[
        Buf::r(HDR, 16),
        Buf::w(0xffff_0000_0000, 512),
        Buf::w(STATUS, 1),
    ]);
    assert_eq!((status, used), (0xff, 0));
    // No writable status byte at all.
    r.header(VIRTIO_BLK_T_IN, 0);
    assert_eq!(r.submit(&[Buf::r(HDR, 16)]).1, 0);
    // A 4 GiB descriptor.
    r.header(VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        r.submit(&[Buf::r(HDR, 16), Buf::r(DATA, u32::MAX), Buf::w(STATUS, 1)])
            .1,
        0
    );
    // A descriptor loop: 0 -> 1 -> 0.
    r.header(VIRTIO_BLK_T_IN, 0);
    r.q.set_desc(14, HDR, 16, 1, 15);
    r.q.set_desc(15, STATUS, 1, 1 | 2, 14);
    r.q.publish(14);
    r.dev.process_queue();
    assert!(!r.dev.needs_reset());
    // An avail index far ahead of the queue: the device asks for a reset.
    let idx = r.q.used_idx();
    r.q.set_avail_idx(idx.wrapping_add(100));
    r.dev.process_queue();
    assert!(r.dev.needs_reset());
}

/// `make bench`: 4 KiB random writes through the device model (descriptor chain in, status
/// out), next to the same writes with pwrite on a file of the same size, in the same run.
#[test]
#[ignore = "a benchmark: make bench runs it"]
fn bench_blk_random_write_iops_next_to_pwrite() {
    use std::os::unix::fs::FileExt;
    const WRITES: u32 = 20_000;
    let block = vec![0x5au8; 4096];
    let blocks = DISK_SIZE / 4096;
    let offsets = |seed: u64| {
        let mut x = seed;
        (0..WRITES).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % blocks
        })
    };
    let mut r = rig();
    let start = std::time::Instant::now();
    for b in offsets(0x9e37_79b9) {
        assert_eq!(r.write(b * 8, &block), VIRTIO_BLK_S_OK);
    }
    let device = f64::from(WRITES) / start.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("plain.raw")).unwrap();
    file.set_len(DISK_SIZE).unwrap();
    let start = std::time::Instant::now();
    for b in offsets(0x9e37_79b9) {
        file.write_at(&block, b * 4096).unwrap();
    }
    let plain = f64::from(WRITES) / start.elapsed().as_secs_f64();
    println!(
        "virtio-blk 4 KiB random writes: {device:.0} IOPS through the device model, {plain:.0} IOPS with pwrite; ratio {:.2}",
        device / plain
    );
}
