//! virtio-vsock packets from the guest and CONNECT lines from host clients: parsed or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use berth_vmm::devices::virtio::vsock::packet;
    if let Ok(h) = packet::parse(data) {
        let len = h.len as usize;
        assert!(len <= data.len() - packet::HEADER_SIZE);
    }
    let _ = packet::parse_connect(data);
});
