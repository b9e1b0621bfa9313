//! rng driven through a real virtqueue in guest memory.

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::test_utils::{Buf, GuestQueue, test_memory};

fn active(mem: &vm_memory::GuestMemoryMmap) -> (Rng, GuestQueue) {
    let mut rng = Rng::new().unwrap();
    let q = GuestQueue::new(mem, 0x1000, 16);
    rng.activate(mem.clone(), vec![q.queue()]).unwrap();
    (rng, q)
}

#[test]
fn fills_buffers_with_random_bytes() {
    let mem = test_memory();
    let (mut rng, mut q) = active(&mem);
    q.add_chain(&[Buf::w(0x10_0000, 32), Buf::w(0x10_1000, 32)]);
    q.add_chain(&[Buf::w(0x10_2000, 64)]);
    assert_eq!(rng.process_queue(), 2);
    assert_eq!(q.used_idx(), 2);
    assert_eq!(q.used_elem(0), (0, 64));
    assert_eq!(q.used_elem(1), (2, 64));
    let mut out = [0u8; 64];
    mem.read_slice(&mut out, GuestAddress(0x10_2000)).unwrap();
    assert!(out.iter().any(|b| *b != 0));
    assert_ne!(rng.interrupt().status() & 1, 0);
}

#[test]
fn buffers_outside_memory_are_used_empty() {
    let mem = test_memory();
    let (mut rng, mut q) = active(&mem);
    q.add_chain(&[Buf::w(0xffff_ffff_0000, 32)]);
    q.add_chain(&[Buf::w(u64::MAX - 4, 32)]);
    assert_eq!(rng.process_queue(), 2);
    assert_eq!(q.used_elem(0), (0, 0));
    assert!(!rng.needs_reset());
}

#[test]
fn looping_and_oversized_chains_do_not_hang_or_panic() {
    let mem = test_memory();
    let (mut rng, mut q) = active(&mem);
    // Descriptor 0 -> 1 -> 0 -> ...: a loop.
    q.set_desc(0, 0x10_0000, 16, 1 | 2, 1);
    q.set_desc(1, 0x10_1000, 16, 1 | 2, 0);
    q.publish(0);
    // A single descriptor claiming 4 GiB.
    q.set_desc(2, 0x10_0000, u32::MAX, 2, 0);
    q.publish(2);
    assert_eq!(rng.process_queue(), 2);
    assert!(q.used_elem(0).1 <= 16 * 16, "bounded by the queue size");
    assert_eq!(q.used_elem(1), (2, 0));
}

#[test]
fn a_bogus_avail_index_asks_for_a_reset() {
    let mem = test_memory();
    let (mut rng, mut q) = active(&mem);
    q.set_avail_idx(1000);
    assert_eq!(rng.process_queue(), 0);
    assert!(rng.needs_reset());
    rng.reset();
    assert!(!rng.needs_reset() && !rng.is_activated());
}

#[test]
fn a_head_index_past_the_queue_asks_for_a_reset() {
    let mem = test_memory();
    let (mut rng, mut q) = active(&mem);
    q.publish(999);
    rng.process_queue();
    assert!(rng.needs_reset());
}
