//! The builtin VMM as the engine runs it: `berth vmm` in its own process on this machine's
//! /dev/kvm (small test guests; Linux itself needs hardware virtualization, see
//! app/vmm/tests/linux_boot.rs), and the engine's choice of backend with its reason.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{TestHome, berth_bin, json_of, root, run_with_limit};

#[test]
fn berth_vmm_runs_a_test_guest_and_exits_with_its_status() {
    if !berth_engine::host::probe_kvm().usable {
        println!("SKIPPED: /dev/kvm cannot be opened here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let serial = tmp.path().join("serial.log");
    let mut cmd = Command::new(berth_bin());
    cmd.arg("vmm")
        .arg("--test-guest")
        .arg(root().join("app/vmm/tests/guests/serial_hello.bin"))
        .arg("--serial-log")
        .arg(&serial);
    let out = run_with_limit(cmd, Duration::from_secs(60));
    // The guest reports 0x2a on the debug-exit port: 16 + 42.
    assert_eq!(
        out.status.code(),
        Some(58),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(&serial)
            .unwrap()
            .starts_with("hello from guest")
    );
}

#[test]
fn berth_vmm_builds_its_virtio_fs_device_on_a_running_virtiofsd() {
    if !berth_engine::host::probe_kvm().usable {
        println!("SKIPPED: /dev/kvm cannot be opened here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let socket = tmp.path().join("fs.sock");
    let virtiofsd = berth_engine::host::virtiofsd_program().expect("virtiofsd (make setup)");
    let mut backend = Command::new(virtiofsd)
        .arg("--socket-path")
        .arg(&socket)
        .arg("--shared-dir")
        .arg(&shared)
        .args(["--sandbox", "none", "--log-level", "error"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "virtiofsd did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let vmm = |fs: &str| {
        let mut cmd = Command::new(berth_bin());
        cmd.arg("vmm")
            .arg("--test-guest")
            .arg(root().join("app/vmm/tests/guests/serial_hello.bin"))
            .arg("--fs")
            .arg(fs);
        run_with_limit(cmd, Duration::from_secs(60))
    };
    // The device negotiates with virtiofsd as the VM is built; the guest then runs as before.
    let out = vmm(&format!("berth0={}", socket.display()));
    let _ = backend.kill();
    let _ = backend.wait();
    assert_eq!(
        out.status.code(),
        Some(58),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No backend on the socket: the VM is not built, and the reason names the device.
    let out = vmm(&format!(
        "berth0={}",
        tmp.path().join("none.sock").display()
    ));
    assert_ne!(out.status.code(), Some(58));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("virtio-fs berth0"), "{err}");
}

#[test]
fn berth_vmm_stops_a_spinning_guest_on_sigterm() {
    if !berth_engine::host::probe_kvm().usable {
        println!("SKIPPED: /dev/kvm cannot be opened here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("spin.bin");
    // `jmp $`: the guest never exits on its own.
    std::fs::write(&image, [0xeb, 0xfe]).unwrap();
    let mut child = Command::new(berth_bin())
        .arg("vmm")
        .arg("--test-guest")
        .arg(&image)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the guest should still spin"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "SIGTERM did not stop the VMM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "a host stop is a clean exit");
}

#[test]
fn engine_picks_the_builtin_vmm_only_where_kvm_boots_linux_and_says_why() {
    let home = TestHome::new();
    std::fs::write(
        home.path().join("settings.json"),
        br#"{"backend": "builtin"}"#,
    )
    .unwrap();
    let out = home.run(
        &["doctor", "--json", "--no-boot"],
        &[],
        Duration::from_secs(60),
    );
    let report = json_of(&out);
    let backend_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend")
        .cloned()
        .unwrap_or_default();
    if berth_engine::host::probe_kvm().can_boot_linux() {
        assert_eq!(report["backend"], "builtin", "{report}");
    } else {
        assert_eq!(backend_check["ok"], false, "{report}");
        let detail = backend_check.to_string();
        assert!(detail.contains("vmx/svm"), "{detail}");
        assert!(detail.contains("\\\"backend\\\": \\\"qemu\\\""), "{detail}");
        // auto falls back to qemu with the same reason.
        std::fs::write(home.path().join("settings.json"), br#"{"backend": "auto"}"#).unwrap();
        let out = home.run(
            &["doctor", "--json", "--no-boot"],
            &[],
            Duration::from_secs(60),
        );
        let report = json_of(&out);
        assert_eq!(report["backend"], "qemu", "{report}");
        assert!(
            report["backend_reason"]
                .as_str()
                .unwrap_or("")
                .contains("builtin VMM needs hardware KVM"),
            "{report}"
        );
    }
}
