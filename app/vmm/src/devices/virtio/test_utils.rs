//! Test doubles for device tests without a guest: guest memory and a driver-side view of one
//! split virtqueue, to write descriptor chains and read the used ring back (the way a guest
//! driver would). Exported under `cfg(any(test, fuzzing))` so fuzz targets reuse it.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Descriptor flags.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;

/// 16 MiB of guest memory at address 0.
pub fn test_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("test memory")
}

/// One buffer of a chain: guest address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

impl Buf {
    pub fn r(addr: u64, len: u32) -> Self {
        Buf {
            addr,
            len,
            writable: false,
        }
    }
    pub fn w(addr: u64, len: u32) -> Self {
        Buf {
            addr,
            len,
            writable: true,
        }
    }
}

/// The driver side of a split virtqueue laid out at `base`.
pub struct GuestQueue {
    mem: GuestMemoryMmap,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    next_desc: u16,
    avail_idx: u16,
}

impl GuestQueue {
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        let q = GuestQueue {
            mem: mem.clone(),
            desc,
            avail,
            used,
            size,
            next_desc: 0,
            avail_idx: 0,
        };
        q.write(avail, 0u16);
        q.write(avail + 2, 0u16);
        q.write(used, 0u16);
        q.write(used + 2, 0u16);
        q
    }

    fn write<T: vm_memory::ByteValued>(&self, addr: u64, v: T) {
        self.mem
            .write_obj(v, GuestAddress(addr))
            .expect("queue in memory");
    }

    fn read<T: vm_memory::ByteValued>(&self, addr: u64) -> T {
        self.mem
            .read_obj(GuestAddress(addr))
            .expect("queue in memory")
    }

    /// The device-side queue, configured and ready, as the transport would hand it over.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("queue size");
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_ready(true);
        q
    }

    /// Writes raw descriptor `index`.
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc + 16 * u64::from(index);
        self.write(at, addr);
        self.write(at + 8, len);
        self.write(at + 12, flags);
        self.write(at + 14, next);
    }

    /// Puts `head` in the next avail slot and bumps avail idx.
    pub fn publish(&mut self, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.write(slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.write(self.avail + 2, self.avail_idx);
    }

    /// Sets avail idx to any value (to test garbage).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.write(self.avail + 2, idx);
    }

    /// Writes `bufs` as one chain of fresh descriptors, publishes it, returns its head.
    pub fn add_chain(&mut self, bufs: &[Buf]) -> u16 {
        let head = self.next_desc;
        for (i, b) in bufs.iter().enumerate() {
            let index = (self.next_desc + i as u16) % self.size;
            let last = i + 1 == bufs.len();
            let mut flags = if b.writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.set_desc(index, b.addr, b.len, flags, (index + 1) % self.size);
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
        self.publish(head);
        head
    }

    /// The used ring's idx.
    pub fn used_idx(&self) -> u16 {
        self.read(self.used + 2)
    }

    /// Used element `i`: (descriptor head, bytes written).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (self.read(at), self.read(at + 4))
    }
}
