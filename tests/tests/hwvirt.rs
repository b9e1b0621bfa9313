//! Berth on hardware virtualization, as a user with VT-x or AMD-V gets it: each backend (the
//! builtin VMM, which `auto` picks there, and qemu with KVM) boots to agent-ready from a fresh
//! home and runs the first-use flow: `run`, `run -it`, `-p`, a bind mount (virtio-fs), a user
//! network with name resolution and the host reached through the NIC (virtio-net on passt), a
//! volume (virtio-blk) that outlives a VM restart, and a clean shutdown that leaves nothing
//! running. Then what a failure looks like: a guest whose init panics is reported with init's
//! own words and no `ready:`, and `auto` falls back to qemu when the builtin VMM dies.
//!
//! This machine's /dev/kvm cannot boot Linux, so each test runs itself again inside
//! `scripts/hwvirt.sh` (emulated AMD SVM; see [`berth_tests::hwvirt`]); where the CPU has
//! hardware virtualization, it runs here directly. One L1 boot per test keeps the time down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::hwvirt::{self, REPORT};
use berth_tests::hwvirt::{Engine, home_with};
use berth_tests::registry::{Registry, free_port};
use berth_tests::{alive, berth_bin, host_http, json_of, processes_naming, run_with_limit};

const L1_MEM_MIB: u32 = 6144;

/// Runs `body` here when this machine (or L1) has hardware KVM, else inside L1.
fn on_hardware_kvm(name: &str, limit: Duration, body: impl FnOnce()) {
    if hwvirt::inside() || hwvirt::here_is_hardware_kvm() {
        assert!(
            hwvirt::here_is_hardware_kvm(),
            "inside L1 but /dev/kvm cannot boot Linux: {:?}",
            berth_engine::host::probe_kvm()
        );
        body();
    } else {
        hwvirt::run_inside(name, L1_MEM_MIB, limit);
    }
}

fn report(what: &str, since: Instant) {
    println!("{REPORT} {what}: {} ms", since.elapsed().as_millis());
}

/// GET / on 127.0.0.1:`port` until it answers with `want` in the body.
fn http_get_until(port: u16, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if body.contains(want) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("127.0.0.1:{port} never answered {want:?}; last answer: {last:?}");
}

/// The first-use flow on `backend` from a fresh home; every device of the VM takes part.
fn first_use_flow(backend: &str) {
    let reg = Registry::start();
    reg.push_busybox();
    let home = home_with(&format!(r#"{{"backend": "{backend}"}}"#));
    let t = Instant::now();
    let mut engine = Engine::spawn(&home, &reg.host(), &[]);
    let out = engine.wait_ready();
    report(&format!("{backend}: engine ready"), t);
    assert!(
        out.contains(&format!("VM running: {backend} (Kvm)")),
        "{backend} did not run the VM:\n{out}"
    );
    let e = engine.shared(reg.port);
    let status = e.api("GET", "/berth/v1/vm", None).1;
    assert_eq!(status["backend"], backend, "{status:#}");
    assert_eq!(status["fallback"], serde_json::Value::Null, "{status:#}");
    println!(
        "{REPORT} {backend}: phases of the first boot: {}",
        status["boot"]
    );
    let vmm_pid = status["pid"].as_u64().expect("the VMM's pid") as u32;

    // Images over the guest's NIC and the engine's proxy; a container; its output over vsock.
    let t = Instant::now();
    e.docker_ok(&["pull", "busybox"]);
    let hello = e.docker_ok(&["run", "--rm", "busybox", "echo", "hello from the guest"]);
    assert_eq!(hello.trim(), "hello from the guest");
    report(&format!("{backend}: pull and first run"), t);

    // A terminal: the shell answers what is typed and exits with its status.
    let t = Instant::now();
    let mut pty = e.docker_pty(&["run", "-it", "--rm", "busybox", "sh"], 24, 80);
    pty.expect("#", Duration::from_secs(60));
    pty.send(b"echo $((6 * 7))\r");
    pty.expect("42", Duration::from_secs(30));
    pty.send(b"exit 3\r");
    assert_eq!(
        pty.wait(Duration::from_secs(30)),
        Some(3),
        "{}",
        pty.output()
    );
    report(&format!("{backend}: run -it"), t);

    // A published port: the host's 127.0.0.1 reaches httpd in the container over vsock.
    let t = Instant::now();
    let port = free_port();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo served-by-httpd > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    http_get_until(port, "served-by-httpd");
    e.docker_ok(&["rm", "-f", "web"]);
    report(&format!("{backend}: -p"), t);

    // A bind mount over virtio-fs, both ways; what the container writes belongs to the user.
    let t = Instant::now();
    let shared = tempfile::Builder::new()
        .prefix("hw-bind")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(shared.path().join("from-host"), "written on the host").unwrap();
    let bind = format!("{}:/data", shared.path().display());
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cat /data/from-host && echo written in the container > /data/from-container",
    ]);
    assert_eq!(got.trim(), "written on the host");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("from-container"))
            .unwrap()
            .trim(),
        "written in the container"
    );
    report(&format!("{backend}: bind mount"), t);

    // A user network: a name resolves to a container, and the host is reached through the
    // NIC (passt) by `host.docker.internal`.
    let t = Instant::now();
    let host_port = host_http("answer-from-the-host");
    e.docker_ok(&["network", "create", "hwnet"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "named",
        "--network",
        "hwnet",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo found-by-name > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let script = format!(
        "for i in $(seq 30); do wget -qO- http://named/ && break; sleep 1; done; \
         wget -qO- http://host.docker.internal:{host_port}/"
    );
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "hwnet",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    assert!(got.contains("found-by-name"), "{got}");
    assert!(got.contains("answer-from-the-host"), "{got}");
    e.docker_ok(&["rm", "-f", "named"]);
    e.docker_ok(&["network", "rm", "hwnet"]);
    report(&format!("{backend}: user network"), t);

    // A volume on the data disk (virtio-blk) outlives a restart of the VM.
    e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "hwvol:/v",
        "busybox",
        "sh",
        "-c",
        "echo kept-across-restart > /v/f && sync",
    ]);
    let t = Instant::now();
    let (code, body) = e.api("POST", "/berth/v1/vm/stop", None);
    assert!(code < 300, "vm stop: {code} {body}");
    report(&format!("{backend}: VM stop"), t);
    // What the machine has left for the second boot (L1's memory holds the data disk too).
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .unwrap_or_default()
        .to_owned();
    let disk = std::fs::metadata(home.join("data.img"))
        .map(|m| (std::os::unix::fs::MetadataExt::blocks(&m) * 512) >> 20)
        .unwrap_or(0);
    println!("{REPORT} {backend}: after stop: {available}; data.img holds {disk} MiB");
    assert!(!alive(vmm_pid), "the {backend} VMM outlived vm stop");
    let t = Instant::now();
    let (code, body) = e.api("POST", "/berth/v1/vm/start", None);
    if code >= 300 {
        let log = std::fs::read_to_string(home.join("engine.out")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "vm start: {code} {}\n--- engine log, last lines ---\n{}",
            body["message"].as_str().unwrap_or_default(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    report(&format!("{backend}: VM start again"), t);
    let status = e.api("GET", "/berth/v1/vm", None).1;
    assert_eq!(status["state"], "running", "{status:#}");
    assert_eq!(status["backend"], backend, "{status:#}");
    println!(
        "{REPORT} {backend}: phases of the second boot: {}",
        status["boot"]
    );
    let vmm_pid = status["pid"].as_u64().unwrap() as u32;
    let got = e.docker_ok(&["run", "--rm", "-v", "hwvol:/v", "busybox", "cat", "/v/f"]);
    assert_eq!(got.trim(), "kept-across-restart");

    // A clean shutdown: the guest powers off, the VMM and its helpers end.
    let t = Instant::now();
    let out = engine.terminate();
    report(&format!("{backend}: shutdown"), t);
    assert!(out.contains("Berth engine stopped"), "{out}");
    assert!(!alive(vmm_pid), "the {backend} VMM outlived the engine");
    let serial = std::fs::read_to_string(home.join("run/serial.log")).unwrap_or_default();
    assert!(
        serial.contains("berth-init: bye"),
        "the guest did not power off cleanly:\n{serial}"
    );
    let leftovers = processes_naming(&format!("{}/run/", home.display()));
    assert!(
        leftovers.is_empty(),
        "left running after the engine: {leftovers:?}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn builtin_vmm_runs_the_first_use_flow_on_hardware_kvm() {
    on_hardware_kvm(
        "builtin_vmm_runs_the_first_use_flow_on_hardware_kvm",
        Duration::from_secs(900),
        || first_use_flow("builtin"),
    );
}

#[test]
fn qemu_with_kvm_runs_the_first_use_flow_on_hardware_kvm() {
    on_hardware_kvm(
        "qemu_with_kvm_runs_the_first_use_flow_on_hardware_kvm",
        Duration::from_secs(900),
        || first_use_flow("qemu"),
    );
}

/// A guest whose init panics: the engine names init's panic, prints the serial log's tail and
/// no `ready:`, exits non-zero, and `berth vm status` says the same. With `auto`, a builtin VMM
/// that dies at once gives way to qemu with KVM, and the engine says why.
#[test]
fn boot_failures_are_shown_and_auto_falls_back_to_qemu() {
    on_hardware_kvm(
        "boot_failures_are_shown_and_auto_falls_back_to_qemu",
        Duration::from_secs(600),
        || {
            let reg = Registry::start();
            let home = home_with(r#"{"backend": "builtin"}"#);
            let mut engine = Engine::spawn(
                &home,
                &reg.host(),
                &[("BERTH_GUEST_CMDLINE", "berth.fault=init-panic")],
            );
            let (status, out) = engine.wait_exit();
            assert!(!status.success(), "the engine must fail:\n{out}");
            assert!(
                !out.contains("ready:"),
                "ready: printed for a dead VM:\n{out}"
            );
            assert!(
                out.contains("the VM did not start")
                    && out.contains("the guest's init died: berth-init: panic:")
                    && out.contains("berth.fault=init-panic asked init to fail here"),
                "init's panic is not in the engine's error:\n{out}"
            );
            assert!(out.contains("serial log"), "no serial log tail:\n{out}");
            let vm_status = run_with_limit(
                {
                    let mut c = Command::new(berth_bin());
                    c.args(["vm", "status", "--json"]).env("BERTH_HOME", &home);
                    c
                },
                Duration::from_secs(30),
            );
            let vm_status = json_of(&vm_status);
            assert_eq!(vm_status["state"], "failed", "{vm_status:#}");
            assert!(
                vm_status["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("init died"),
                "{vm_status:#}"
            );
            let _ = std::fs::remove_dir_all(&home);

            // auto picks the builtin VMM here; a VMM that dies gives way to qemu with KVM.
            let home = home_with(r#"{"backend": "auto"}"#);
            let t = Instant::now();
            let mut engine = Engine::spawn(&home, &reg.host(), &[("BERTH_BIN", "/bin/false")]);
            let out = engine.wait_ready();
            report("auto fallback: engine ready", t);
            assert!(
                out.contains("fell back to qemu with KVM") && out.contains("builtin backend"),
                "{out}"
            );
            assert!(out.contains("VM running: qemu (Kvm)"), "{out}");
            let e = engine.shared(reg.port);
            let status = e.api("GET", "/berth/v1/vm", None).1;
            assert_eq!(status["backend"], "qemu", "{status:#}");
            assert!(
                status["fallback"]
                    .as_str()
                    .is_some_and(|f| f.contains("builtin")),
                "{status:#}"
            );
            let doctor = run_with_limit(
                {
                    let mut c = Command::new(berth_bin());
                    c.args(["doctor", "--json"]).env("BERTH_HOME", &home);
                    c
                },
                Duration::from_secs(60),
            );
            let doctor = json_of(&doctor);
            assert_eq!(doctor["problems"], serde_json::json!([]), "{doctor:#}");
            assert!(
                doctor["warnings"]
                    .to_string()
                    .contains("qemu with KVM runs the guest"),
                "{doctor:#}"
            );
            engine.terminate();
            let _ = std::fs::remove_dir_all(&home);
        },
    );
}
