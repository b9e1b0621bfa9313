//! `berth doctor` against the real VM: healthy on this machine, and each missing piece named
//! with its fix, quickly.

use std::time::Duration;

use berth_tests::{TestHome, json_of};

const BOOT_LIMIT: Duration = Duration::from_secs(240);
const CHECK_LIMIT: Duration = Duration::from_secs(30);

fn problems(report: &serde_json::Value) -> String {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn doctor_boots_the_vm_and_reports_healthy() {
    let home = TestHome::new();
    let out = home.run(&["doctor", "--json"], &[], BOOT_LIMIT);
    let report = json_of(&out);
    assert!(out.status.success(), "doctor failed: {report:#}");
    assert_eq!(report["healthy"], true, "{report:#}");
    assert_eq!(report["backend"], "qemu");
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
    assert_eq!(report["agent_version"], env!("CARGO_PKG_VERSION"));
    let kernel = report["kernel"].as_str().unwrap();
    assert!(kernel.ends_with("-cloud-amd64"), "{kernel}");
    let boot_ms = report["boot_ms"].as_u64().unwrap();
    let phases = &report["phases"];
    let (vm, kernel_up, init_up, ready) = (
        phases["vm_process_ms"].as_u64().unwrap(),
        phases["kernel_up_ms"].as_u64().unwrap(),
        phases["init_up_ms"].as_u64().unwrap(),
        phases["agent_ready_ms"].as_u64().unwrap(),
    );
    assert!(
        vm <= kernel_up && kernel_up <= init_up && init_up <= ready,
        "{phases}"
    );
    assert_eq!(ready, boot_ms);
    // The data disk was created sparse at 64 GiB and formatted in the guest.
    let meta = std::fs::metadata(home.path().join("data.img")).unwrap();
    assert_eq!(meta.len(), 64 << 30);
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(
        allocated > 1 << 20 && allocated < 1 << 30,
        "allocated {allocated}"
    );
    // The lock is released: a second doctor on the same home boots again and the disk
    // (already formatted) mounts.
    let again = json_of(&home.run(&["doctor", "--json"], &[], BOOT_LIMIT));
    assert_eq!(again["healthy"], true, "{again:#}");
}

#[test]
fn missing_guest_image_is_named_with_the_fix() {
    let home = TestHome::new();
    let out = home.run(
        &["doctor", "--json"],
        &[("BERTH_GUEST_DIR", "/nonexistent/guest")],
        CHECK_LIMIT,
    );
    let report = json_of(&out);
    assert!(!out.status.success());
    assert_eq!(report["healthy"], false);
    let p = problems(&report);
    assert!(
        p.contains("guest image") && p.contains("/nonexistent/guest/vmlinuz"),
        "{p}"
    );
    assert!(p.contains("make build"), "{p}");
    assert!(report["boot_ms"].is_null());
}

#[test]
fn missing_qemu_and_vhost_device_vsock_are_named_with_the_fix() {
    let home = TestHome::new();
    let out = home.run(
        &["doctor", "--json"],
        &[
            ("BERTH_QEMU", "/nonexistent/qemu-system-x86_64"),
            ("BERTH_VHOST_VSOCK", "/nonexistent/vhost-device-vsock"),
        ],
        CHECK_LIMIT,
    );
    let report = json_of(&out);
    assert!(!out.status.success());
    let p = problems(&report);
    assert!(
        p.contains("qemu-system-x86_64 not found") && p.contains("qemu-system-x86"),
        "{p}"
    );
    assert!(
        p.contains("vhost-device-vsock not found") && p.contains("cargo install"),
        "{p}"
    );
}

#[test]
fn no_kvm_access_is_named_and_the_vm_still_boots_under_tcg() {
    let home = TestHome::new();
    let out = home.run(
        &["doctor", "--json"],
        &[("BERTH_KVM_DEVICE", "/nonexistent/kvm")],
        BOOT_LIMIT,
    );
    let report = json_of(&out);
    assert_eq!(report["healthy"], true, "{report:#}");
    assert_eq!(report["accel"], "tcg");
    assert_eq!(report["kvm"]["usable"], false);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("cannot open /dev") || warnings.contains("/nonexistent/kvm"),
        "{warnings}"
    );
    assert!(warnings.contains("usermod -aG kvm"), "{warnings}");
    assert!(report["backend_reason"].as_str().unwrap().contains("TCG"));
}

#[test]
fn text_report_marks_each_check() {
    let home = TestHome::new();
    let out = home.run(
        &["doctor", "--no-boot"],
        &[("BERTH_GUEST_DIR", "/nonexistent/guest")],
        CHECK_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[FAIL] guest image"), "{text}");
    assert!(text.contains("fix: run `make build`"), "{text}");
    assert!(text.contains("[ok  ] qemu"), "{text}");
    assert!(text.trim_end().ends_with("NOT healthy"), "{text}");
    assert!(!out.status.success());
}
