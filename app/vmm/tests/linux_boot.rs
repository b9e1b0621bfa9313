//! Boots the real guest image (Debian cloud kernel + Berth initramfs) with the builtin VMM and
//! waits for the agent to accept a vsock connection on its port (1024) through the hybrid
//! socket, with init's console working. Needs hardware virtualization: where this machine's CPU
//! has none (its /dev/kvm is a software hypervisor that cannot boot Linux), the test runs itself
//! again inside `scripts/hwvirt.sh`, a VM with emulated AMD SVM whose /dev/kvm has hardware-KVM
//! semantics.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_vmm::vmm::{Boot, SerialConfig, VsockConfig};
use berth_vmm::{ExitReason, Vmm, VmmConfig};

const AGENT_PORT: u32 = 1024;
/// Set in the run inside the harness.
const INNER: &str = "BERTH_HWVIRT_INNER";
/// How init's panics start (`berth_agent_proto::INIT_PANIC_PREFIX`; this crate does not depend
/// on the agent's protocol).
const INIT_PANIC_PREFIX: &str = "berth-init: panic:";

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

/// Runs this test again inside the emulated-SVM harness and fails with its console if it fails.
fn run_under_harness(name: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/hwvirt.sh");
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&script);
    cmd.args(["--mem", "3072", "--timeout", "600", "--", "env"])
        .arg(format!("{INNER}=1"))
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdin(std::process::Stdio::null());
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory: the harness
    // (and L1 with it) ends if this test process dies.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let console = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = console.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        out.status.success() && console.contains("test result: ok. 1 passed"),
        "{name} failed under emulated hardware virtualization ({:?}):\n{}\n{}",
        out.status.code(),
        tail.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in console.lines().filter(|l| l.contains("agent answered")) {
        println!("under emulated SVM: {}", line.trim());
    }
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
    let dir = guest_dir();
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initramfs"));
    if !kernel.is_file() || !initrd.is_file() {
        println!(
            "SKIPPED linux boot test: no guest image in {} (run `make build`)",
            dir.display()
        );
        return;
    }
    if let Err(why) = hardware_virtualization() {
        assert!(
            std::env::var_os(INNER).is_none(),
            "inside the harness, yet {why}"
        );
        println!("{why}: running under scripts/hwvirt.sh (emulated AMD SVM)");
        run_under_harness("linux_guest_boots_and_the_agent_answers_on_vsock");
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
    assert!(
        log.contains("berth-init: up") && !log.contains(INIT_PANIC_PREFIX),
        "init's console does not work:\n{log}"
    );
    println!("agent answered after {booted_in:?}");
}
