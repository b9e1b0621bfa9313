//! Small real-mode test guests under /dev/kvm: the vCPU loop, port I/O to COM1, MMIO dispatch,
//! the virtio-mmio register handshake and a virtqueue round trip done by guest code.
//!
//! The guests are assembled from tests/guests/*.S (see build.sh). Each test skips, saying why,
//! where /dev/kvm cannot be opened.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use berth_vmm::vmm::{Boot, NetConfig, SerialConfig};
use berth_vmm::{ExitReason, Vmm, VmmConfig};

fn kvm_available() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            println!("SKIPPED: /dev/kvm cannot be opened ({e}); test guests need KVM");
            false
        }
    }
}

/// Runs `image` with a 10-second watchdog; returns the exit reason and the serial output.
fn run_guest(image: &[u8], rng: bool) -> (ExitReason, String) {
    run_guest_with(
        image,
        VmmConfig {
            rng,
            ..Default::default()
        },
    )
}

/// [`run_guest`] with more of the configuration chosen by the caller.
fn run_guest_with(image: &[u8], config: VmmConfig) -> (ExitReason, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serial.log");
    let vmm = Vmm::new(VmmConfig {
        boot: Boot::TestGuest {
            image: image.to_vec(),
            load_addr: 0x1000,
        },
        serial: SerialConfig {
            log: Some(log.clone()),
            stdout: false,
        },
        ..config
    })
    .expect("building the test VM");
    let exit = vmm.exit_signal();
    let watchdog = std::thread::spawn(move || {
        for _ in 0..100 {
            if exit.is_requested() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        exit.request(ExitReason::Error("watchdog: the guest ran for 10 s".into()));
    });
    let reason = vmm.run().expect("running the test VM");
    watchdog.join().unwrap();
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    (reason, serial)
}

#[test]
fn guest_writes_to_the_serial_port_and_exits() {
    if !kvm_available() {
        return;
    }
    let (reason, serial) = run_guest(include_bytes!("guests/serial_hello.bin"), false);
    assert_eq!(reason, ExitReason::DebugExit(0x2a), "serial: {serial:?}");
    assert_eq!(serial, "hello from guest\n");
}

#[test]
fn guest_hlt_ends_the_vm_as_halted() {
    if !kvm_available() {
        return;
    }
    // cli; hlt
    let (reason, _) = run_guest(&[0xfa, 0xf4], false);
    assert_eq!(reason, ExitReason::Halted);
}

#[test]
fn guest_reboot_through_i8042_ends_the_vm_as_reset() {
    if !kvm_available() {
        return;
    }
    // mov al, 0xfe; out 0x64, al; hlt
    let (reason, _) = run_guest(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4], false);
    assert_eq!(reason, ExitReason::Reset);
    assert_eq!(reason.exit_code(), 2);
}

#[test]
fn guest_reads_of_unmapped_mmio_see_all_ones() {
    if !kvm_available() {
        return;
    }
    // mov ax, 0xa000; mov ds, ax; mov al, [0]; out 0xf4, al; hlt
    let (reason, _) = run_guest(
        &[
            0xb8, 0x00, 0xa0, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xe6, 0xf4, 0xf4,
        ],
        false,
    );
    assert_eq!(reason, ExitReason::DebugExit(0xff));
}

#[test]
fn guest_drives_virtio_rng_through_mmio_and_a_virtqueue() {
    if !kvm_available() {
        return;
    }
    let (reason, serial) = run_guest(include_bytes!("guests/rng_roundtrip.bin"), true);
    assert_eq!(reason, ExitReason::DebugExit(0x42), "serial: {serial:?}");
    assert_eq!(serial, "rng ok\n");
}

#[test]
fn guest_sends_a_frame_to_the_network_socket_and_receives_the_answer() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("passt.sock");
    // A stand-in for passt: one client, qemu's stream framing, answers a ping with a pong.
    let listener = UnixListener::bind(&socket).unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut frame).unwrap();
        let mut answer = vec![0u8; 60];
        answer[..10].copy_from_slice(b"berth pong");
        s.write_all(&60u32.to_be_bytes()).unwrap();
        s.write_all(&answer).unwrap();
        frame
    });
    let (reason, serial) = run_guest_with(
        include_bytes!("guests/net_echo.bin"),
        VmmConfig {
            rng: false,
            net: Some(NetConfig {
                socket,
                mac: [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee],
            }),
            ..Default::default()
        },
    );
    assert_eq!(reason, ExitReason::DebugExit(0x43), "serial: {serial:?}");
    assert_eq!(serial, "net ok\n");
    let sent = peer.join().unwrap();
    assert_eq!(sent.len(), 60, "the header is not part of the frame");
    assert!(sent.starts_with(b"berth ping"));
}
