//! virtio-blk discard and write-zeroes segment lists from the guest: whole segments only.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let segs = berth_vmm::devices::virtio::blk::request::parse_segments(data);
    assert_eq!(segs.len(), data.len() / 16);
});
