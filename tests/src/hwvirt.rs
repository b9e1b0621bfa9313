//! Running a test binary's own test inside `scripts/hwvirt.sh`'s L1 VM, where /dev/kvm has
//! hardware-KVM semantics (emulated AMD SVM), so Berth's KVM paths run on a machine whose own
//! /dev/kvm cannot boot Linux. Where this machine itself has hardware virtualization, the test
//! runs here directly. The outer test process re-runs `current_exe() --exact NAME` in L1 with
//! `BERTH_HWVIRT_INNER=1`; L1 sees this machine's tree, so the same binary runs there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{SharedEngine, berth_bin, guest_dir};

/// How long an engine may take to boot its VM (or to fail) under nested emulation.
const ENGINE_LIMIT: Duration = Duration::from_secs(300);

/// The guest kernel's timer choice under emulated SVM (see [`Engine::spawn`]).
pub const GUEST_TIMER: &str = "lapic=notscdeadline";

/// Set in the environment of the run inside L1.
pub const INNER: &str = "BERTH_HWVIRT_INNER";

/// Lines a check prints with this prefix are repeated by the outer test (timings, figures).
pub const REPORT: &str = "hwvirt-report:";

/// True inside L1 (or wherever the test body should run directly).
pub fn inside() -> bool {
    std::env::var_os(INNER).is_some()
}

/// The CPU here advertises vmx/svm and /dev/kvm opens: the body can run here directly.
pub fn here_is_hardware_kvm() -> bool {
    let probe = berth_engine::host::probe_kvm();
    probe.can_boot_linux()
}

/// Runs test `name` of this binary inside L1 (`scripts/hwvirt.sh`), with `mem_mib` of L1 memory,
/// failing past `limit`. Prints the report lines; on failure, the tail of L1's console.
pub fn run_inside(name: &str, mem_mib: u32, limit: Duration) {
    run_inside_with(
        &["--exact", name, "--nocapture", "--test-threads=1"],
        "test result: ok. 1 passed",
        mem_mib,
        limit,
    );
}

/// Runs this binary with `args` inside L1; it passed when its output has `passed`.
pub fn run_inside_with(args: &[&str], passed: &str, mem_mib: u32, limit: Duration) {
    let name = if args.is_empty() {
        std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_default()
    } else {
        args.join(" ")
    };
    let exe = std::env::current_exe().expect("the test binary's path");
    let out_dir = tempfile::Builder::new()
        .prefix("hwvirt-")
        .tempdir_in(run_dirs())
        .expect("a run directory under the cache");
    let mut cmd = Command::new(crate::root().join("scripts/hwvirt.sh"));
    cmd.arg("--mem")
        .arg(mem_mib.to_string())
        .arg("--timeout")
        .arg(limit.as_secs().to_string())
        .arg("--out")
        .arg(out_dir.path())
        .arg("--")
        .arg("env")
        .arg(format!("{INNER}=1"))
        .arg(&exe)
        .args(args);
    // If this process dies, the harness (and with it L1) dies too.
    crate::die_with_parent(&mut cmd, libc::SIGKILL);
    let started = std::time::Instant::now();
    let out = crate::run_with_limit(cmd, limit + Duration::from_secs(60));
    let console = String::from_utf8_lossy(&out.stdout);
    for line in console.lines().filter(|l| l.contains(REPORT)) {
        println!("{}", line.trim());
    }
    let tail: Vec<&str> = console.lines().rev().take(120).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        out.status.success() && console.contains(passed),
        "{name} failed under emulated hardware virtualization ({:?} after {:?})\n\
         --- L1 console, last lines ---\n{}\n--- hwvirt.sh ---\n{}",
        out.status.code(),
        started.elapsed(),
        tail.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{name}: passed in L1 in {:?}", started.elapsed());
}

/// A fresh Berth home under /tmp with `settings` as its settings.json.
pub fn home_with(settings: &str) -> PathBuf {
    let home = tempfile::Builder::new()
        .prefix("berth-hw")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    std::fs::write(home.join("settings.json"), settings).unwrap();
    home
}

/// `berth engine` on `home`, its output in `home/engine.out`, waiting for `ready:` or its exit.
pub struct Engine {
    pub home: PathBuf,
    pub child: std::process::Child,
}

impl Engine {
    pub fn spawn(home: &Path, mirror: &str, env: &[(&str, &str)]) -> Engine {
        let log = std::fs::File::create(home.join("engine.out")).unwrap();
        let mut cmd = Command::new(berth_bin());
        cmd.args(["engine", "--registry-mirror", &format!("http://{mirror}")])
            .env("BERTH_HOME", home)
            .env("BERTH_GUEST_DIR", guest_dir())
            // Under emulated SVM a boot takes 20 to 40 s, a later one in the same L1 up to
            // twice that (L1's memory is no longer fresh): a hang still fails, later.
            .env("BERTH_BOOT_TIMEOUT", "300")
            .env_remove("BERTH_RUNTIME_DIR")
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // The guest's LAPIC timer in one-shot mode, not TSC-deadline: L1's emulated SVM loses
        // L2's TSC-deadline interrupts now and then (the guest then sleeps until other I/O
        // wakes it: RCU stalls, "timer wakeup didn't happen", calls that time out). qemu's
        // `-cpu host` offers TSC-deadline; the builtin VMM does not, and never showed it.
        let mut cmdline = GUEST_TIMER.to_owned();
        for (k, v) in env {
            if *k == "BERTH_GUEST_CMDLINE" {
                cmdline = format!("{cmdline} {v}");
            } else {
                cmd.env(k, v);
            }
        }
        cmd.env("BERTH_GUEST_CMDLINE", cmdline);
        Engine {
            home: home.to_owned(),
            child: cmd.spawn().expect("start berth engine"),
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.home.join("engine.out")).unwrap_or_default()
    }

    /// Waits for `ready:`; returns the output, or panics with it when the engine exits first.
    pub fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + ENGINE_LIMIT;
        loop {
            let out = self.output();
            if out.contains("ready: unix://") {
                return out;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the engine exited ({status}) before ready:\n{out}");
            }
            assert!(Instant::now() < deadline, "engine not ready:\n{out}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the engine to exit on its own; its status and output.
    pub fn wait_exit(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + ENGINE_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "the engine did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as Ctrl-C; waits for the engine to stop its VM and exit.
    pub fn terminate(&mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let (status, out) = self.wait_exit();
        assert!(status.success(), "engine exit {status}:\n{out}");
        out
    }

    pub fn shared(&self, registry: u16) -> SharedEngine {
        let docker_config = self.home.join("docker-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        SharedEngine {
            home: self.home.clone(),
            socket: self.home.join("run/docker.sock"),
            registry,
            docker_config,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where run directories live: the project's cache, which L1 sees (its /tmp is its own).
fn run_dirs() -> PathBuf {
    let dir = crate::cache_dir().join("hwvirt");
    std::fs::create_dir_all(&dir).expect("the hwvirt cache directory");
    dir
}
