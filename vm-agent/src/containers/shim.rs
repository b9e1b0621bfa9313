//! The per-container shim (`berth-agent shim DIR ID`): a small daemon, one per running
//! container, that survives agent restarts. It creates and starts the container with crun, owns
//! its stdio (pipes, or the pty crun hands over for a TTY), writes the json-file log, forwards
//! stdin from `stdin.sock`, reaps the container's init as a child subreaper, and records the
//! exit code and OOM kill in `state.json`. The launching process learns through a pipe whether
//! the container started.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::{ContainerRecord, State, Status, save_state_at};
use crate::clock;

pub const CRUN: &str = "/usr/bin/crun";
pub const CRUN_ROOT: &str = "/run/crun";
/// Docker's json-file driver cuts lines longer than this into several entries.
const MAX_LINE: usize = 16 * 1024;

pub fn crun(args: &[&str]) -> Command {
    let mut cmd = Command::new(CRUN);
    cmd.arg("--root").arg(CRUN_ROOT).args(args);
    cmd
}

/// Appends json-file entries to the container's log, rotating it as its options say.
#[derive(Clone)]
pub struct LogWriter(Arc<Mutex<LogFile>>);

struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    rotation: super::logs::Rotation,
}

impl LogWriter {
    pub fn open(path: &Path, rotation: super::logs::Rotation) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter(Arc::new(Mutex::new(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        }))))
    }

    pub fn write(&self, stream: &str, data: &[u8]) {
        let line = serde_json::json!({
            "log": String::from_utf8_lossy(data),
            "stream": stream,
            "time": clock::now(),
        });
        let mut text = line.to_string();
        text.push('\n');
        let mut log = self.0.lock().unwrap();
        let max = log.rotation.max_size;
        if max > 0
            && log.size > 0
            && log.size + text.len() as u64 > max
            && let Err(e) = log.rotate()
        {
            eprintln!("rotating {}: {e}", log.path.display());
        }
        if log.file.write_all(text.as_bytes()).is_ok() {
            log.size += text.len() as u64;
        }
    }
}

impl LogFile {
    /// `log.json.N-1` becomes `.N` (the oldest beyond `max_file` goes), `log.json` becomes
    /// `.1`, and a new `log.json` starts.
    fn rotate(&mut self) -> std::io::Result<()> {
        use super::logs::rotated;
        let keep = self.rotation.max_file.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, keep - 1));
            for n in (1..keep - 1).rev() {
                let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Copies `src` into the log as `stream` entries: whole lines (as json-file does), or raw
/// chunks for a TTY.
fn pump(mut src: std::fs::File, log: LogWriter, stream: &'static str, raw: bool) {
    let mut buf = [0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: the pty's other side closed.
            Err(_) => break,
        };
        if raw {
            log.write(stream, &buf[..n]);
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            log.write(stream, &line);
        }
        while pending.len() >= MAX_LINE {
            let part: Vec<u8> = pending.drain(..MAX_LINE).collect();
            log.write(stream, &part);
        }
    }
    if !pending.is_empty() {
        log.write(stream, &pending);
    }
}

/// Forwards each client of `stdin.sock` in turn into the container's stdin. With `once`
/// (StdinOnce, what `docker run -i` asks) the first client's end closes it; otherwise it stays
/// open for the next attach, as a TTY's always does (dockerd closes only a pipe, and only once).
fn serve_stdin(listener: UnixListener, mut stdin: std::fs::File, once: bool) {
    while let Ok((mut conn, _)) = listener.accept() {
        let _ = std::io::copy(&mut conn, &mut stdin);
        if once {
            return;
        }
    }
}

/// Receives the pty master crun sends over the console socket.
pub fn receive_console(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let (conn, _) = listener.accept()?;
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor in our table for us; nothing
            // else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(std::io::Error::other("crun sent no terminal"))
}

/// Waits for crun to hand over the terminal; `None` when crun exited without connecting (it
/// failed before making the terminal, and says why in its log).
pub fn await_console(
    listener: &UnixListener,
    crun: &mut std::process::Child,
) -> std::io::Result<Option<OwnedFd>> {
    listener.set_nonblocking(true)?;
    loop {
        match receive_console(listener) {
            Ok(fd) => return Ok(Some(fd)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if crun.try_wait()?.is_some() {
                    return Ok(None);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

/// crun's last error line, in the words dockerd uses where the docker CLI looks for them.
fn crun_error(dir: &Path, args0: &str) -> String {
    let log = std::fs::read_to_string(dir.join("crun.log")).unwrap_or_default();
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("crun failed")
        .to_owned();
    let last = serde_json::from_str::<serde_json::Value>(&last)
        .ok()
        .and_then(|v| v["msg"].as_str().map(str::to_owned))
        .unwrap_or(last);
    if last.contains("not found in $PATH") || last.contains("executable file") {
        format!(
            "failed to create task for container: OCI runtime create failed: exec: \"{args0}\": executable file not found in $PATH: unknown"
        )
    } else if last.contains("Permission denied") {
        format!("OCI runtime create failed: exec: \"{args0}\": permission denied: unknown")
    } else {
        format!("OCI runtime create failed: {last}")
    }
}

struct Started {
    pid: i32,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn start_container(dir: &Path, id: &str, rec: &ContainerRecord) -> Result<Started, String> {
    let tty = rec.config.tty.unwrap_or(false);
    let open_stdin = rec.config.open_stdin.unwrap_or(false);
    let stdin_once = rec.config.stdin_once.unwrap_or(false);
    let rotation = super::logs::Rotation::from_options(
        rec.host_config
            .log_config
            .as_ref()
            .and_then(|l| l.config.as_ref()),
    )
    .unwrap_or(super::logs::Rotation::DEFAULT);
    let log = LogWriter::open(&dir.join("log.json"), rotation)
        .map_err(|e| format!("opening the log: {e}"))?;
    let _ = std::fs::remove_file(dir.join("crun.log"));
    let bundle = dir.join("bundle");
    let pid_file = dir.join("init.pid");
    let _ = std::fs::remove_file(&pid_file);
    let crun_log = format!("--log={}", dir.join("crun.log").display());
    // A container of the same ID left over from a crash is in the way.
    let _ = crun(&["delete", "--force", id])
        .stderr(Stdio::null())
        .status();
    let mut create = crun(&[&crun_log, "create", "--bundle"]);
    create.arg(&bundle).arg("--pid-file").arg(&pid_file);
    let mut readers = Vec::new();
    let console_listener;
    if tty {
        let sock = dir.join("console.sock");
        let _ = std::fs::remove_file(&sock);
        console_listener =
            Some(UnixListener::bind(&sock).map_err(|e| format!("console socket: {e}"))?);
        create.arg("--console-socket").arg(&sock);
        // What crun says before its log is open still reaches the user's error.
        let early = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("crun.log"))
            .map_err(|e| format!("crun log: {e}"))?;
        create
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(early));
    } else {
        console_listener = None;
        let (out_r, out_w) = pipe().map_err(|e| e.to_string())?;
        let (err_r, err_w) = pipe().map_err(|e| e.to_string())?;
        if open_stdin {
            let (in_r, in_w) = pipe().map_err(|e| e.to_string())?;
            create.stdin(Stdio::from(OwnedFd::from(in_r)));
            let sock = dir.join("stdin.sock");
            let _ = std::fs::remove_file(&sock);
            let listener = UnixListener::bind(&sock).map_err(|e| format!("stdin socket: {e}"))?;
            std::thread::spawn(move || serve_stdin(listener, in_w, stdin_once));
        } else {
            create.stdin(Stdio::null());
        }
        create
            .stdout(Stdio::from(OwnedFd::from(out_w)))
            .stderr(Stdio::from(OwnedFd::from(err_w)));
        let l = log.clone();
        readers.push(std::thread::spawn(move || pump(out_r, l, "stdout", false)));
        let l = log.clone();
        readers.push(std::thread::spawn(move || pump(err_r, l, "stderr", false)));
    }
    // Options first: crun takes none after the container ID.
    create.arg(id);
    let mut child = create.spawn().map_err(|e| format!("running crun: {e}"))?;
    // The pipes' write ends now live only in crun's child (the container): drop ours.
    drop(create);
    if let Some(listener) = &console_listener {
        let Some(master) =
            await_console(listener, &mut child).map_err(|e| format!("terminal: {e}"))?
        else {
            return Err(crun_error(dir, &rec.path));
        };
        let master = std::fs::File::from(master);
        let reader = master.try_clone().map_err(|e| e.to_string())?;
        let l = log.clone();
        readers.push(std::thread::spawn(move || pump(reader, l, "stdout", true)));
        if open_stdin {
            let sock = dir.join("stdin.sock");
            let _ = std::fs::remove_file(&sock);
            let listener = UnixListener::bind(&sock).map_err(|e| format!("stdin socket: {e}"))?;
            std::thread::spawn(move || serve_stdin(listener, master, false));
        } else {
            // Keep the master open for the container's life so its output is not cut.
            std::mem::forget(master);
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(crun_error(dir, &rec.path));
    }
    let out = crun(&[&crun_log, "start", id])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let _ = crun(&["delete", "--force", id]).status();
        return Err(crun_error(dir, &rec.path));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or("crun wrote no pid file")?;
    Ok(Started { pid, readers })
}

fn oom_killed(id: &str) -> bool {
    std::fs::read_to_string(format!("/sys/fs/cgroup/berth/{id}/memory.events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
}

/// Points standard descriptor `target` at `file`.
fn redirect(file: &std::fs::File, target: i32) {
    // SAFETY: dup2 onto a standard descriptor from an open file that outlives the call.
    unsafe {
        libc::dup2(file.as_raw_fd(), target);
    }
}

/// The shim's entry point.
pub fn run(dir: PathBuf, id: String) -> ExitCode {
    let (report_r, report_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shim: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: the shim is single-threaded at this point; the child only continues normal
    // execution of this program.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("shim: fork: {e}");
            return ExitCode::FAILURE;
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(report_w);
            let mut report = String::new();
            let _ = { report_r }.read_to_string(&mut report);
            return match report.strip_prefix("ok") {
                Some(_) => ExitCode::SUCCESS,
                None => {
                    eprint!(
                        "{}",
                        if report.is_empty() {
                            "the shim died"
                        } else {
                            &report
                        }
                    );
                    ExitCode::FAILURE
                }
            };
        }
        Ok(ForkResult::Child) => {}
    }
    drop(report_r);
    let _ = nix::unistd::setsid();
    // SAFETY: prctl with an integer argument; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    if let Ok(null) = std::fs::File::open("/dev/null") {
        redirect(&null, 0);
    }
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shim.log"))
    {
        redirect(&log, 1);
        redirect(&log, 2);
    }
    let mut report_w = report_w;
    let rec: ContainerRecord = match std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
    {
        Some(r) => r,
        None => {
            let _ = report_w.write_all(b"container config unreadable");
            return ExitCode::FAILURE;
        }
    };
    let state_of = || -> State {
        std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    };
    let started = match start_container(&dir, &id, &rec) {
        Ok(s) => s,
        Err(msg) => {
            let mut st = state_of();
            st.error = msg.clone();
            let _ = save_state_at(&dir, &st);
            let _ = report_w.write_all(msg.as_bytes());
            return ExitCode::FAILURE;
        }
    };
    let mut st = state_of();
    st.status = Status::Running;
    st.pid = started.pid as u32;
    st.shim_pid = std::process::id();
    st.started_at = clock::now();
    st.error.clear();
    st.oom_killed = false;
    st.stopped_by_user = false;
    if let Err(e) = save_state_at(&dir, &st) {
        let _ = report_w.write_all(e.to_string().as_bytes());
        return ExitCode::FAILURE;
    }
    let _ = report_w.write_all(b"ok");
    drop(report_w);

    // Reap until the container's init is gone (orphans of the container land here too).
    let code = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == started.pid => {
                break i64::from(code);
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == started.pid => {
                break 128 + sig as i64;
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break 255,
        }
    };
    let oom = oom_killed(&id);
    for r in started.readers {
        let _ = r.join();
    }
    let _ = crun(&["delete", "--force", &id])
        .stderr(Stdio::null())
        .status();
    let mut st = state_of();
    st.status = Status::Exited;
    st.pid = 0;
    st.exit_code = code;
    st.oom_killed = oom;
    st.finished_at = clock::now();
    st.exits += 1;
    let _ = save_state_at(&dir, &st);
    ExitCode::SUCCESS
}

/// Freezes the container's cgroup (`docker pause`).
pub fn crun_pause(id: &str) -> Result<(), String> {
    run_crun(&["pause", id])
}

/// Thaws it (`docker unpause`).
pub fn crun_resume(id: &str) -> Result<(), String> {
    run_crun(&["resume", id])
}

fn run_crun(args: &[&str]) -> Result<(), String> {
    let out = crun(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Starts the shim for a prepared container and waits until the container runs (or failed).
pub fn launch(dir: &Path, id: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("shim")
        .arg(dir)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting the shim: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
