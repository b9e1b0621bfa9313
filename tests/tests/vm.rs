//! The VM's lifecycle against the real guest (qemu backend): a VM that stays up through
//! `berth vm`, one VM per home, the agent killed inside the guest, the VM process killed, the
//! engine killed (its VM and helpers go with it).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use berth_agent_proto::v1::{CrashRequest, ReadFileRequest, WriteFileRequest};
use berth_engine::vm::{Supervisor, VmState};
use berth_tests::{TestHome, alive, guest_dir, json_of, spawn_engine};

const BOOT_LIMIT: Duration = Duration::from_secs(240);

fn supervisor(home: &TestHome) -> Supervisor {
    Supervisor::new(home.paths()).with_image_dir(guest_dir())
}

/// Live processes whose command line names `run_dir`, for messages.
fn processes_naming(run_dir: &std::path::Path) -> Vec<String> {
    berth_tests::processes_naming(&format!("{}/", run_dir.display()))
        .into_iter()
        .map(|(pid, cmd)| format!("{pid}: {cmd}"))
        .collect()
}

#[test]
fn a_killed_engine_takes_its_vm_and_helpers_with_it() {
    let home = TestHome::new();
    let (mut engine, _socket) = spawn_engine(home.path(), "127.0.0.1:9");
    let run_dir = home.paths().run_dir;
    let before = processes_naming(&run_dir);
    assert!(
        before.len() >= 3,
        "expected qemu, vhost-device-vsock and passt beside the engine: {before:?}"
    );
    // SIGKILL: the engine cannot stop anything itself.
    engine.kill().unwrap();
    engine.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = processes_naming(&run_dir);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = processes_naming(&run_dir);
    }
    assert!(
        left.is_empty(),
        "left running after the engine died: {left:?}"
    );
}

#[test]
fn vm_stays_up_between_commands_and_its_disk_is_locked() {
    let home = TestHome::new();
    let out = home.run(&["vm", "start"], &[], BOOT_LIMIT);
    assert!(
        out.status.success(),
        "vm start: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = home.paths().docker_socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "docker.sock must be private");

    let status = json_of(&home.run(&["vm", "status", "--json"], &[], BOOT_LIMIT));
    assert_eq!(status["state"], "running", "{status:#}");
    assert_eq!(status["healthy"], true);
    let qemu_pid = status["pid"].as_u64().unwrap() as u32;
    assert!(alive(qemu_pid));

    // The doctor boots no second VM beside a running one: it reports on the engine that holds
    // the home, and that is no problem.
    let out = home.run(&["doctor", "--json"], &[], Duration::from_secs(30));
    let report = json_of(&out);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    let disk = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "data disk")
        .unwrap();
    assert!(
        disk["detail"]
            .as_str()
            .unwrap()
            .contains("in use by this home's running Berth"),
        "{disk:#}"
    );
    assert!(alive(qemu_pid), "the doctor must not touch the running VM");

    let out = home.run(&["vm", "stop"], &[], Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(qemu_pid) || sock.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(qemu_pid), "qemu still runs after vm stop");
    assert!(!sock.exists(), "the background engine did not exit");
    let out = home.run(&["vm", "status"], &[], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stopped"));
    // The guest powered off cleanly: the serial log ends with init's goodbye.
    let serial = std::fs::read_to_string(home.paths().serial_log()).unwrap();
    assert!(serial.contains("berth-init: bye"), "{serial}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_is_restarted_by_init_and_the_host_reconnects() {
    let home = TestHome::new();
    let sup = supervisor(&home);
    let report = sup.start().await.expect("boot");
    assert!(report.clock_offset_ms.abs() < 24 * 3600 * 1000);
    let agent = sup.agent().unwrap();
    let before = agent.info().await.unwrap();
    assert_eq!(before.agent_starts, 1);
    assert!(
        before.init_problems.is_empty(),
        "{:?}",
        before.init_problems
    );
    // SyncTime set the guest clock from the host's.
    let host_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!((before.realtime_ns - host_ns).abs() < 5_000_000_000);
    let disk = before.data_disk.clone().expect("data disk mounted");
    assert_eq!(
        (disk.filesystem.as_str(), disk.device.as_str()),
        ("ext4", "/dev/vda")
    );
    assert!(disk.total_bytes > 60 << 30);

    agent
        .debug()
        .crash(CrashRequest { signal: 0 })
        .await
        .unwrap();
    // The same client reaches the new agent process once init has restarted it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        if let Ok(info) = agent.info().await
            && info.agent_starts == 2
        {
            break info;
        }
        assert!(Instant::now() < deadline, "the agent did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(after.agent_pid, before.agent_pid);
    assert_eq!(sup.status().state, VmState::Running);
    sup.stop().await.unwrap();
    assert_eq!(sup.status().state, VmState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_vm_is_reported_failed_and_synced_data_survives() {
    let home = TestHome::new();
    let sup = supervisor(&home);
    sup.start().await.expect("boot");
    let agent = sup.agent().unwrap();
    let data = b"written and synced before the kill".to_vec();
    agent
        .debug()
        .write_file(WriteFileRequest {
            path: "crash/synced.txt".into(),
            data: data.clone(),
            sync: true,
        })
        .await
        .unwrap();
    // A path that leaves the debug directory is refused.
    let refused = agent
        .debug()
        .write_file(WriteFileRequest {
            path: "../escape".into(),
            data: vec![1],
            sync: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let pid = sup.status().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut states = sup.subscribe();
    tokio::time::timeout(
        Duration::from_secs(30),
        states.wait_for(|s| s.state == VmState::Failed),
    )
    .await
    .expect("Failed within 30 s")
    .unwrap();
    let status = sup.status();
    let reason = status.reason.clone().unwrap();
    assert!(
        reason.contains("exited unexpectedly") && reason.contains("9"),
        "{reason}"
    );
    assert!(status.log_tail.unwrap().contains("berth-init"));
    assert!(sup.agent().is_err());

    // Started again on request, the file is intact.
    sup.start().await.expect("second boot");
    let agent = sup.agent().unwrap();
    let read = agent
        .debug()
        .read_file(ReadFileRequest {
            path: "crash/synced.txt".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.data, data);
    sup.stop().await.unwrap();
}

/// Item 19 of the security review: the desktop app killed with SIGKILL (it cannot stop
/// anything itself) takes its VM and every helper with it, as the engine does.
#[test]
fn a_killed_desktop_app_takes_its_vm_and_helpers_with_it() {
    let home = TestHome::new();
    let (_xvfb, _bus, display, bus_addr) = berth_tests::desktop::display();
    let log = std::fs::File::create(home.path().join("desktop.out")).unwrap();
    let mut app = std::process::Command::new(berth_tests::desktop::desktop_bin())
        .env("DISPLAY", &display)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus_addr)
        .env("NO_AT_BRIDGE", "1")
        .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
        .env("BERTH_HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("BERTH_GUEST_DIR", guest_dir())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("target/release/berth-desktop");
    let run_dir = home.paths().run_dir;
    // The app boots its VM on its own: wait for qemu, vhost-device-vsock and passt.
    let deadline = Instant::now() + BOOT_LIMIT;
    let mut before = processes_naming(&run_dir);
    while before.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the app's VM did not start: {before:?}\n{}",
            std::fs::read_to_string(home.path().join("desktop.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
        before = processes_naming(&run_dir);
    }
    app.kill().unwrap();
    app.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = processes_naming(&run_dir);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = processes_naming(&run_dir);
    }
    assert!(left.is_empty(), "left running after the app died: {left:?}");
}
