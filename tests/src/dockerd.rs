//! A Docker Engine beside Berth for the benchmarks: Debian's dockerd with its own data root,
//! exec root and socket, and a docker CLI pointed at either engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run_with_limit;

pub struct Engine {
    pub name: &'static str,
    pub socket: PathBuf,
}

impl Engine {
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env_remove("DOCKER_CONTEXT");
        run_with_limit(cmd, Duration::from_secs(900))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "{}: docker {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn timed(&self, args: &[&str]) -> f64 {
        let start = Instant::now();
        self.ok(args);
        start.elapsed().as_secs_f64() * 1000.0
    }
}

/// dockerd with its own data, exec root and socket; no iptables or bridge (containers run
/// with `--network none` on both engines).
pub fn start_dockerd(dir: &Path) -> (std::process::Child, Engine) {
    let socket = dir.join("docker.sock");
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    let child = Command::new("dockerd")
        .arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--containerd-namespace",
            "berth-bench",
            "--storage-driver",
            "overlay2",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("dockerd: install Debian's docker.io (scripts/setup.sh --bench)");
    let engine = Engine {
        name: "dockerd",
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine.docker(&["version"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "dockerd did not start; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (child, engine)
}
