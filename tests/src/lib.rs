//! Shared helpers for the end-to-end suites: a private `BERTH_HOME` per test, the release
//! binaries and guest image that `make build` produced, and a way to run `berth` commands.
//! The suites run against the real VM (qemu backend), never a stand-in.

pub mod desktop;
pub mod dockerd;
pub mod hwvirt;
pub mod registry;

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

/// The project's cache outside the clone (`$BERTH_CACHE`, else `~/.cache/berth`), where setup
/// and the build keep what outlives a checkout.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BERTH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/berth")
        })
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
/// Runs `cmd` with `input` on its stdin, failing the test past `limit`.
pub fn run_with_input(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let _ = writer.join();
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} hung for over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(std::process::Stdio::null())
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

/// An HTTP server on this machine's 127.0.0.1 answering every request with `body`; its port.
pub fn host_http(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A process's resident memory in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The median of `v` (benchmarks report it).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Live processes whose command line contains `marker`: each pid with its command line (words
/// joined by spaces). The way to find a VM's processes by its runtime directory.
pub fn processes_naming(marker: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(marker) && alive(pid)).then_some((pid, cmd))
        })
        .collect()
}

/// A process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// One engine (and its VM) shared by every test of a test binary, with a local registry set as
/// its Docker Hub mirror. Started from a thread that lives as long as the test process; the
/// engine and registry get SIGTERM when the process ends (PR_SET_PDEATHSIG).
pub struct SharedEngine {
    pub home: PathBuf,
    pub socket: PathBuf,
    pub registry: u16,
    pub docker_config: PathBuf,
}

impl SharedEngine {
    /// `docker args...` against this engine, failing the test past `limit`.
    pub fn docker(&self, args: &[&str], limit: Duration) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_CONTEXT");
        run_with_limit(cmd, limit)
    }

    /// `docker args...` with `input` on its stdin.
    pub fn docker_with_input(&self, args: &[&str], input: &[u8], limit: Duration) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_CONTEXT");
        run_with_input(cmd, input, limit)
    }

    /// `docker args...` on a pseudo-terminal of `rows` x `cols` (the docker CLI's controlling
    /// terminal), driven by `steps`: see [`Pty`].
    pub fn docker_pty(&self, args: &[&str], rows: u16, cols: u16) -> Pty {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_CONTEXT");
        Pty::spawn(cmd, rows, cols)
    }

    /// `berth args...` (the client verbs) against this engine through `DOCKER_HOST`.
    pub fn berth(&self, args: &[&str], limit: Duration) -> Output {
        let mut cmd = Command::new(berth_bin());
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config)
            .stdin(std::process::Stdio::null());
        run_with_limit(cmd, limit)
    }

    /// `berth args...` on a pseudo-terminal of `rows` x `cols`: see [`Pty`].
    pub fn berth_pty(&self, args: &[&str], rows: u16, cols: u16) -> Pty {
        let mut cmd = Command::new(berth_bin());
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config);
        Pty::spawn(cmd, rows, cols)
    }

    /// Runs docker and asserts success; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "docker {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `busybox` (the test image) pushed to the mirror and pulled, once per test binary.
    pub fn busybox(&self) {
        static PULLED: std::sync::Once = std::sync::Once::new();
        PULLED.call_once(|| {
            self.registry().push(
                "library/busybox",
                "latest",
                &registry::busybox_layers(),
                registry::busybox_config(),
            );
            self.docker_ok(&["pull", "busybox"]);
        });
    }

    /// `echo` (busybox plus `/bin/echo-server PORT`, the TCP and UDP echo fixture built from
    /// `tests/fixtures/echo.rs`) pushed to the mirror and pulled, once per test binary.
    pub fn echo_image(&self) {
        static PULLED: std::sync::Once = std::sync::Once::new();
        PULLED.call_once(|| {
            let bin = static_fixture("echo");
            let mut layers = registry::busybox_layers();
            layers.push(
                registry::Layer::new()
                    .file("bin/echo-server", 0o755, &bin)
                    .build(),
            );
            self.registry().push(
                "library/echo",
                "latest",
                &layers,
                registry::busybox_config(),
            );
            self.docker_ok(&["pull", "echo"]);
        });
    }

    /// `vsockprobe` (busybox plus `/bin/vsockprobe`, built from `tests/fixtures/vsockprobe.rs`)
    /// pushed to the mirror and pulled, once per test binary.
    pub fn vsockprobe_image(&self) {
        static PULLED: std::sync::Once = std::sync::Once::new();
        PULLED.call_once(|| {
            let mut layers = registry::busybox_layers();
            layers.push(
                registry::Layer::new()
                    .file("bin/vsockprobe", 0o755, &static_fixture("vsockprobe"))
                    .build(),
            );
            self.registry().push(
                "library/vsockprobe",
                "latest",
                &layers,
                registry::busybox_config(),
            );
            self.docker_ok(&["pull", "vsockprobe"]);
        });
    }

    pub fn registry(&self) -> registry::Registry {
        registry::Registry::attach(self.registry)
    }

    /// A request to the engine's API socket (for what the docker CLI cannot send).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(berth_engine::api::client::request(
            &self.socket,
            method,
            path,
            body,
        ))
        .expect("engine request")
    }
}

/// Gives `cmd` `signal` when the test process ends (PR_SET_PDEATHSIG).
pub fn die_with_parent(cmd: &mut Command, signal: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong);
            Ok(())
        });
    }
}

/// Starts `berth engine` with `home` as BERTH_HOME and the registry at `mirror` (host:port)
/// as its Docker Hub mirror; waits until it serves. Its output goes to `home/engine.out`
/// (appended); it gets SIGTERM when the test process ends.
pub fn spawn_engine(home: &Path, mirror: &str) -> (std::process::Child, PathBuf) {
    spawn_engine_with(home, mirror, &[])
}

/// [`spawn_engine`] with `extra` arguments to `berth engine`.
pub fn spawn_engine_with(
    home: &Path,
    mirror: &str,
    extra: &[&str],
) -> (std::process::Child, PathBuf) {
    let out_path = home.join("engine.out");
    let already = std::fs::read_to_string(&out_path).map_or(0, |s| s.len());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .unwrap();
    let mut cmd = Command::new(berth_bin());
    cmd.args(["engine", "--registry-mirror", &format!("http://{mirror}")])
        .args(extra)
        .env("BERTH_HOME", home)
        .env("BERTH_GUEST_DIR", guest_dir())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    die_with_parent(&mut cmd, libc::SIGTERM);
    let mut child = cmd.spawn().expect("start berth engine");
    let socket = home.join("run/docker.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let all = std::fs::read_to_string(&out_path).unwrap_or_default();
        let out = &all[already.min(all.len())..];
        if out.contains("ready: unix://") {
            assert!(
                out.contains("VM running"),
                "engine failed to boot the VM:\n{out}"
            );
            return (child, socket);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("engine exited ({status}):\n{out}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "engine not ready:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn shared_engine() -> &'static SharedEngine {
    static ENGINE: std::sync::OnceLock<SharedEngine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let reg = registry::Registry::start();
            let home = tempfile::Builder::new()
                .prefix("berth-e")
                .tempdir_in("/tmp")
                .unwrap()
                .keep();
            let docker_config = home.join("docker-config");
            std::fs::create_dir_all(&docker_config).unwrap();
            let (_child, socket) = spawn_engine(&home, &reg.host());
            tx.send(SharedEngine {
                home: home.clone(),
                socket,
                registry: reg.port,
                docker_config,
            })
            .unwrap();
            // Keep the registry (and this thread, the engine's parent) alive until exit.
            let _reg = reg;
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("shared engine")
    })
}

/// A command running on a pseudo-terminal it has as controlling terminal, as in a user's
/// shell: what it prints is collected, input is typed, and the window can be resized (the
/// command gets SIGWINCH).
pub struct Pty {
    master: std::fs::File,
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

fn set_winsize(fd: &impl std::os::fd::AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

impl Pty {
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let pty = nix::pty::openpty(None, None).expect("openpty");
        set_winsize(&pty.master, rows, cols);
        let slave = std::fs::File::from(pty.slave);
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe and touch no memory of
        // the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut reader, out) = (master.try_clone().unwrap(), output.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            output,
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the output contains `text` (panics with the output past `limit`).
    pub fn expect(&self, text: &str, limit: Duration) {
        let start = std::time::Instant::now();
        while !self.output().contains(text) {
            assert!(
                start.elapsed() < limit,
                "no {text:?} on the terminal after {limit:?}; it shows:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `input`.
    pub fn send(&mut self, input: &[u8]) {
        use std::io::Write;
        self.master.write_all(input).expect("typing on the pty");
    }

    /// Resizes the window; the foreground process group gets SIGWINCH.
    pub fn resize(&self, rows: u16, cols: u16) {
        set_winsize(&self.master, rows, cols);
    }

    /// Waits for the command to exit; its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader drain what is left.
                std::thread::sleep(Duration::from_millis(200));
                return status.code();
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("command on the pty hung; it shows:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The static x86-64 binary built by rustc from `tests/fixtures/<name>.rs`, for containers.
pub fn static_fixture(name: &str) -> Vec<u8> {
    let out_dir = tempfile::tempdir().unwrap();
    let bin = out_dir.path().join(name);
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&bin)
        .arg(root().join(format!("tests/fixtures/{name}.rs")))
        .output()
        .expect("rustc");
    assert!(
        out.status.success(),
        "building the {name} fixture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&bin).unwrap()
}
