//! Boots the real guest image (Debian cloud kernel + Berth initramfs) with the builtin VMM and
//! waits for the agent to accept a vsock connection on its port (1024) through the hybrid
//! socket. Needs hardware virtualization: where the CPU has no vmx/svm flag (a software
//! hypervisor such as PVM cannot boot Linux), it prints why and passes without running.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_vmm::vmm::{Boot, SerialConfig, VsockConfig};
use berth_vmm::{ExitReason, Vmm, VmmConfig};

const AGENT_PORT: u32 = 1024;

fn hardware_virtualization() -> Result<(), String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
        .map_err(|e| format!("cannot read /proc/cpuinfo: {e}"))?;
    let has = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !has {
        return Err("the CPU has no vmx/svm flag, so /dev/kvm cannot boot Linux here".into());
    }
    if std::fs::metadata("/dev/kvm").is_err() {
        return Err("/dev/kvm is missing".into());
    }
    Ok(())
}

fn guest_dir() -> PathBuf {
    std::env::var_os("BERTH_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/guest")
        })
}

/// One `CONNECT` attempt: true once the agent's side answered `OK`.
fn agent_answers(uds: &std::path::Path) -> bool {
    let Ok(mut s) = UnixStream::connect(uds) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("OK ")
}

#[test]
fn linux_guest_boots_and_the_agent_answers_on_vsock() {
    if let Err(why) = hardware_virtualization() {
        println!("SKIPPED linux boot test: {why}");
        return;
    }
    let dir = guest_dir();
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initramfs"));
    if !kernel.is_file() || !initrd.is_file() {
        println!(
            "SKIPPED linux boot test: no guest image in {} (run `make build`)",
            dir.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let uds = tmp.path().join("vm.vsock");
    let serial = tmp.path().join("serial.log");
    let vmm = Vmm::new(VmmConfig {
        vcpus: 2,
        memory_mib: 512,
        boot: Boot::Linux {
            kernel,
            initrd: Some(initrd),
            cmdline: "console=ttyS0 panic=-1 reboot=t quiet 8250.nr_uarts=1".into(),
        },
        serial: SerialConfig {
            log: Some(serial.clone()),
            stdout: false,
        },
        rng: true,
        disk: None,
        vsock: Some(VsockConfig {
            guest_cid: 3,
            uds_path: uds.clone(),
        }),
        // The NIC needs passt; the engine's builtin backend test covers it.
        net: None,
        fs: Vec::new(),
    })
    .expect("building the VM");
    let exit = vmm.exit_signal();
    let runner = std::thread::spawn(move || vmm.run());

    let started = Instant::now();
    let mut answered = false;
    while started.elapsed() < Duration::from_secs(60) && !exit.is_requested() {
        if agent_answers(&uds) {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let booted_in = started.elapsed();
    exit.request(ExitReason::Stopped);
    let reason = runner.join().unwrap().expect("running the VM");
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        answered,
        "the agent did not answer within 60 s (exit: {reason:?}); serial log tail:\n{}",
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("agent answered after {booted_in:?}");
}
