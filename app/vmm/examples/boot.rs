//! Boots a Linux guest with the builtin VMM, serial console on stdout, for manual checks:
//! `cargo run --example boot -- VMLINUZ INITRAMFS [SECONDS] [VSOCK_SOCKET]`. Stops the VM
//! after SECONDS (default 30) and exits with the VMM's exit code. `BOOT_CMDLINE` replaces the
//! kernel command line.

use std::path::PathBuf;
use std::time::Duration;

use berth_vmm::vmm::{Boot, SerialConfig, VsockConfig};
use berth_vmm::{ExitReason, Vmm, VmmConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: boot VMLINUZ INITRAMFS [SECONDS] [VSOCK_SOCKET]");
        std::process::exit(64);
    }
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let vmm = Vmm::new(VmmConfig {
        vcpus: 1,
        memory_mib: 512,
        boot: Boot::Linux {
            kernel: PathBuf::from(&args[0]),
            initrd: Some(PathBuf::from(&args[1])),
            cmdline: std::env::var("BOOT_CMDLINE")
                .unwrap_or_else(|_| "console=ttyS0 panic=-1 reboot=t 8250.nr_uarts=1".into()),
        },
        serial: SerialConfig {
            log: None,
            stdout: true,
        },
        rng: true,
        disk: None,
        vsock: args.get(3).map(|p| VsockConfig {
            guest_cid: 3,
            uds_path: PathBuf::from(p),
        }),
        net: None,
        fs: Vec::new(),
    });
    let vmm = match vmm {
        Ok(v) => v,
        Err(e) => {
            eprintln!("boot: {e}");
            std::process::exit(1);
        }
    };
    let exit = vmm.exit_signal();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(seconds));
        exit.request(ExitReason::Stopped);
    });
    match vmm.run() {
        Ok(reason) => {
            eprintln!("boot: VM ended: {reason:?}");
            std::process::exit(reason.exit_code());
        }
        Err(e) => {
            eprintln!("boot: {e}");
            std::process::exit(1);
        }
    }
}
