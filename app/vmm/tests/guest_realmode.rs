//! Small real-mode test guests under /dev/kvm: the vCPU loop, port I/O to COM1, MMIO dispatch,
//! the virtio-mmio register handshake and a virtqueue round trip done by guest code.
//!
//! The guests are assembled from tests/guests/*.S (see build.sh). Each test skips, saying why,
//! where /dev/kvm cannot be opened.

use std::time::Duration;

use berth_vmm::vmm::{Boot, SerialConfig};
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
        rng,
        ..Default::default()
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
