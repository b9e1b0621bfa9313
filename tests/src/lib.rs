//! Shared helpers for the end-to-end suites: a private `BERTH_HOME` per test, the release
//! binaries and guest image that `make build` produced, and a way to run `berth` commands.
//! The suites run against the real VM (qemu backend), never a stand-in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/release/berth`, built by `make build`.
pub fn berth_bin() -> PathBuf {
    let bin = root().join("target/release/berth");
    assert!(
        bin.exists(),
        "{} is missing: run `make build` first",
        bin.display()
    );
    bin
}

/// The guest image `make build` produced.
pub fn guest_dir() -> PathBuf {
    let dir = root().join("target/release/guest");
    assert!(
        dir.join("initramfs").exists(),
        "{} has no guest image: run `make build` first",
        dir.display()
    );
    dir
}

/// A private Berth home under /tmp (short, for Unix socket paths), removed on drop. Stops any
/// engine a test left running in it.
pub struct TestHome {
    pub dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-t")
            .tempdir_in("/tmp")
            .expect("temp home");
        TestHome { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn paths(&self) -> berth_engine::paths::Paths {
        berth_engine::paths::Paths::new(self.path())
    }

    /// A `berth` command with this home and the built guest image; no inherited overrides.
    pub fn berth(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(berth_bin());
        cmd.args(args)
            .env("BERTH_HOME", self.path())
            .env("BERTH_GUEST_DIR", guest_dir())
            .env_remove("BERTH_RUNTIME_DIR")
            .env_remove("BERTH_QEMU")
            .env_remove("BERTH_VHOST_VSOCK")
            .env_remove("BERTH_KVM_DEVICE");
        cmd
    }

    /// Runs `berth args...` with extra environment, failing the test if it takes over `limit`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
        let mut cmd = self.berth(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_limit(cmd, limit)
    }
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        if self.paths().docker_socket().exists() {
            let _ = self.berth(&["vm", "stop"]).output();
        }
    }
}

/// Runs `cmd` to completion; panics (naming the command) if it runs past `limit`.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{shown} hung for over {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses a command's stdout as JSON, showing its output when it is not.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e})\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}
