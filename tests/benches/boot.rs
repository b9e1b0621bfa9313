//! `make bench`: boot to agent ready with the qemu backend (median of 5), next to bare qemu
//! booting the same kernel and initramfs to init's marker in the same run, plus the guest
//! image's size and the engine's RSS with the VM running.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_engine::host::{self, Accel};
use berth_engine::settings::Settings;
use berth_engine::vm::qemu::kernel_cmdline;
use berth_engine::vm::{GuestImage, Supervisor, VmConfig};
use berth_tests::{TestHome, guest_dir, json_of, median, rss_kib};

const RUNS: usize = 5;
const INIT_MARKER: &str = "berth-init: up";

/// Bare qemu, same machine, kernel, initramfs and command line, no devices: spawn to marker.
fn bare_qemu_ms(config: &VmConfig) -> f64 {
    let mem = config.memory_mib;
    let accel = if config.accel == Accel::Kvm {
        "kvm"
    } else {
        "tcg"
    };
    let cpu = if config.accel == Accel::Kvm {
        "host"
    } else {
        "max"
    };
    let start = Instant::now();
    let mut child = Command::new(host::qemu_program().expect("qemu"))
        .args([
            "-M",
            "microvm,memory-backend=mem0",
            "-accel",
            accel,
            "-cpu",
            cpu,
        ])
        .args(["-m", &format!("{mem}M"), "-smp", &config.cpus.to_string()])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-object")
        .arg(format!("memory-backend-memfd,id=mem0,size={mem}M,share=on"))
        .args(["-serial", "stdio", "-kernel"])
        .arg(&config.image.vmlinuz)
        .arg("-initrd")
        .arg(&config.image.initramfs)
        .arg("-append")
        .arg(kernel_cmdline(config))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn qemu");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let elapsed = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(INIT_MARKER) => break start.elapsed(),
            Some(_) => {}
            None => panic!("qemu exited before init's marker"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    elapsed.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let image = GuestImage::locate(&guest_dir()).expect("guest image");
    let home = TestHome::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sup = Supervisor::new(home.paths()).with_image_dir(guest_dir());

    let mut berth = Vec::new();
    let mut config = None;
    // One warm-up boot formats the data disk; the measured boots mount it.
    for i in 0..=RUNS {
        let report = rt.block_on(sup.start()).expect("boot");
        if i > 0 {
            berth.push(report.boot.agent_ready_ms as f64);
        }
        rt.block_on(sup.stop()).expect("stop");
        config.get_or_insert_with(|| {
            let settings = Settings::load(&home.paths().settings()).unwrap();
            // The seed and key ride in the initramfs, as the engine sends them.
            let mut image = image.clone();
            image.initramfs = berth_engine::vm::seed::boot_initramfs(
                &home.paths(),
                &image.initramfs,
                &berth_engine::vm::seed::fresh().unwrap(),
                &berth_agent_proto::auth::Key::generate().unwrap(),
            )
            .unwrap();
            VmConfig {
                paths: home.paths(),
                image,
                cpus: settings.cpus,
                memory_mib: settings.memory_mib,
                disk_gib: settings.disk_gib,
                accel: report.accel,
                extra_cmdline: vec![],
                shares: vec![],
            }
        });
    }
    let config = config.unwrap();
    let bare: Vec<f64> = (0..RUNS).map(|_| bare_qemu_ms(&config)).collect();
    let (b, q) = (median(berth.clone()), median(bare.clone()));
    println!(
        "boot to agent ready (berth, qemu backend, {:?}): median {b:.0} ms of {berth:?}",
        config.accel
    );
    println!("bare qemu, same kernel+initramfs, to init marker:    median {q:.0} ms of {bare:?}");
    println!("ratio berth/bare: {:.2}", b / q);
    println!(
        "guest image: {} KiB (vmlinuz {} KiB, initramfs {} KiB)",
        image.size() / 1024,
        std::fs::metadata(&image.vmlinuz).unwrap().len() / 1024,
        std::fs::metadata(&image.initramfs).unwrap().len() / 1024
    );

    // The engine's RSS with the VM running: a background engine from `berth vm start`.
    let out = home.run(&["vm", "start"], &[], Duration::from_secs(240));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = json_of(&home.run(&["vm", "status", "--json"], &[], Duration::from_secs(10)));
    let engine_pid: u32 = std::fs::read_to_string(home.paths().vm_lock())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let qemu_pid = status["pid"].as_u64().unwrap() as u32;
    println!(
        "engine RSS with the VM running: {} KiB (qemu process: {} KiB)",
        rss_kib(engine_pid),
        rss_kib(qemu_pid)
    );
    let _ = home.run(&["vm", "stop"], &[], Duration::from_secs(60));

    // The builtin VMM's own footprint: `berth vmm` running a spinning test guest (Linux needs
    // hardware virtualization this host may lack; a Linux guest's memory is memfd-backed and
    // counts only once touched).
    let spin = home.path().join("spin.bin");
    std::fs::write(&spin, [0xeb, 0xfe]).unwrap();
    match Command::new(berth_tests::berth_bin())
        .args(["vmm", "--test-guest"])
        .arg(&spin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut vmm) => {
            std::thread::sleep(Duration::from_secs(1));
            let rss = rss_kib(vmm.id());
            let _ = vmm.kill();
            let _ = vmm.wait();
            if rss > 0 {
                println!(
                    "builtin VMM RSS after start (test guest, 512 KiB of guest RAM): {rss} KiB"
                );
            } else {
                println!(
                    "builtin VMM RSS: skipped, berth vmm did not stay up (no usable /dev/kvm?)"
                );
            }
        }
        Err(e) => println!("builtin VMM RSS: skipped ({e})"),
    }
}
