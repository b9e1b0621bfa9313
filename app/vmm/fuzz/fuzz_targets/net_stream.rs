//! Bytes from passt's side of the NIC's socket: split into frames or refused, never more than
//! was sent and never a frame over the limit.
#![no_main]
use std::io::Write;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use berth_vmm::devices::virtio::net::{FrameStream, MAX_FRAME};
    let (ours, mut peer) = UnixStream::pair().expect("socket pair");
    let mut stream = FrameStream::new(ours).expect("non-blocking");
    // Inputs are small (libFuzzer's default cap); the socket buffer takes them whole.
    peer.write_all(data).expect("write to the pair");
    drop(peer);
    let _ = stream.fill();
    let mut taken = 0;
    loop {
        match stream.peek_frame() {
            Ok(Some(frame)) => {
                assert!(!frame.is_empty() && frame.len() <= MAX_FRAME);
                taken += 4 + frame.len();
                stream.consume_frame();
            }
            Ok(None) => break,
            Err(_) => {
                assert!(!stream.is_connected());
                break;
            }
        }
    }
    assert!(taken <= data.len());
});
