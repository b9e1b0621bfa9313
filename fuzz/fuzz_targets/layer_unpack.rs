//! Image layers (gzip, zstd or plain tar) unpacked into a snapshot: any input is refused or
//! unpacked, and nothing lands outside the snapshot (fuzz_unpack checks, and panics if so).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = berth_agent::images::unpack::fuzz_unpack(data);
});
