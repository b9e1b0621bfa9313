//! `make bench`, on hardware KVM: the builtin VMM against qemu with KVM, both run by the engine
//! from a fresh home in the same run. Boot to agent-ready (median of the first boot and VM
//! restarts), `docker run --rm busybox true` (median), and the VMM process's RSS at idle.
//!
//! This machine's /dev/kvm cannot boot Linux, so the bench runs itself inside
//! `scripts/hwvirt.sh` (emulated AMD SVM under TCG). Those are nested-emulation figures: read the
//! ratios, not the absolute times.

use std::time::{Duration, Instant};

use berth_tests::hwvirt::{self, Engine, REPORT, home_with};
use berth_tests::registry::Registry;
use berth_tests::{median, processes_naming, rss_kib};

const BOOTS: usize = 3;
const RUNS: usize = 5;
const IDLE: Duration = Duration::from_secs(20);

struct Figures {
    boot_ms: f64,
    run_ms: f64,
    /// The VMM process alone, then with its vsock helper (qemu's vhost-device-vsock).
    rss_kib: u64,
    rss_with_helpers_kib: u64,
}

fn measure(backend: &str, reg: &Registry) -> Figures {
    let home = home_with(&format!(r#"{{"backend": "{backend}"}}"#));
    let mut engine = Engine::spawn(&home, &reg.host(), &[]);
    let out = engine.wait_ready();
    assert!(
        out.contains(&format!("VM running: {backend}")),
        "{backend}:\n{out}"
    );
    let e = engine.shared(reg.port);
    let mut boots = Vec::new();
    for i in 0..BOOTS {
        if i > 0 {
            assert!(e.api("POST", "/berth/v1/vm/stop", None).0 < 300);
            assert!(e.api("POST", "/berth/v1/vm/start", None).0 < 300);
        }
        let status = e.api("GET", "/berth/v1/vm", None).1;
        boots.push(status["boot"]["agent_ready_ms"].as_f64().unwrap());
    }
    e.docker_ok(&["pull", "busybox"]);
    e.docker_ok(&["run", "--rm", "busybox", "true"]);
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        e.docker_ok(&["run", "--rm", "busybox", "true"]);
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    std::thread::sleep(IDLE);
    let status = e.api("GET", "/berth/v1/vm", None).1;
    let vmm = status["pid"].as_u64().unwrap() as u32;
    let rss = rss_kib(vmm);
    // The vsock helper of qemu (vhost-device-vsock) is part of what qemu needs to do what the
    // builtin VMM does alone; passt and virtiofsd serve both and are left out.
    let helpers: u64 = processes_naming(&format!("{}/run/vhost-vsock.sock", home.display()))
        .into_iter()
        .filter(|(pid, _)| *pid != vmm)
        .map(|(pid, _)| rss_kib(pid))
        .sum();
    engine.terminate();
    let _ = std::fs::remove_dir_all(&home);
    Figures {
        boot_ms: median(boots),
        run_ms: median(runs),
        rss_kib: rss,
        rss_with_helpers_kib: rss + helpers,
    }
}

fn bench() {
    let reg = Registry::start();
    reg.push_busybox();
    let builtin = measure("builtin", &reg);
    let qemu = measure("qemu", &reg);
    println!(
        "{REPORT} nested emulation (KVM inside qemu-TCG with emulated SVM): ratios matter, not absolute times"
    );
    println!(
        "{REPORT} boot to agent-ready (median of {BOOTS}): builtin {:.0} ms, qemu-KVM {:.0} ms, builtin/qemu {:.2}",
        builtin.boot_ms,
        qemu.boot_ms,
        builtin.boot_ms / qemu.boot_ms
    );
    println!(
        "{REPORT} docker run --rm busybox true (median of {RUNS}): builtin {:.0} ms, qemu-KVM {:.0} ms, builtin/qemu {:.2}",
        builtin.run_ms,
        qemu.run_ms,
        builtin.run_ms / qemu.run_ms
    );
    println!(
        "{REPORT} VMM RSS after {}s idle: builtin {} MiB, qemu {} MiB (with vhost-device-vsock {} MiB), builtin/qemu {:.2} ({:.2} with the helper)",
        IDLE.as_secs(),
        builtin.rss_kib / 1024,
        qemu.rss_kib / 1024,
        qemu.rss_with_helpers_kib / 1024,
        builtin.rss_kib as f64 / qemu.rss_kib as f64,
        builtin.rss_with_helpers_kib as f64 / qemu.rss_with_helpers_kib as f64
    );
    println!("hwvirt bench done");
}

fn main() {
    if hwvirt::inside() || hwvirt::here_is_hardware_kvm() {
        bench();
        return;
    }
    // `cargo bench` passes `--bench`; inside L1 the bench needs no arguments.
    hwvirt::run_inside_with(&[], "hwvirt bench done", 6144, Duration::from_secs(1500));
}
