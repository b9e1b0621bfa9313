//! `docker exec`: exec instances (kept in the agent's memory, as dockerd keeps them) and
//! running one with `crun exec` inside the container, streaming its output and exit code.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::sync::Mutex;

use bollard_stubs::models::ExecConfig;
use serde::Serialize;
use tokio::sync::mpsc;

use super::shim::{await_console, crun};
use super::{ContainerError, ContainerStore, Status, lifecycle};

/// Where TTY execs' console sockets live while crun hands over the terminal, and each exec's
/// crun log (crun's own errors, apart from the command's output).
const EXEC_SOCKETS: &str = "/run/berth/exec";

/// The exit code of an exec whose command never started, whatever the cause: dockerd's exec
/// start sets 126 after classifying the runtime's error, so even a missing command is 126
/// there (unlike `docker run`'s 127).
const EXEC_START_FAILED: i64 = 126;

/// Reads crun's JSON log of one exec after crun ended non-zero: when crun logged an error, the
/// command never started, and this is dockerd's message for it (its runtime's words, as
/// `translateContainerdStartErr` sees them).
fn start_failure(log: &str, cmd: &str) -> Option<String> {
    let msg = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"].as_str().is_none_or(|l| l == "error"))
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .next_back()?;
    let lower = msg.to_ascii_lowercase();
    let prefix = "OCI runtime exec failed: exec failed: unable to start container process";
    Some(
        if lower.contains("executable file") && lower.contains("not found")
            || lower.contains("no such file or directory")
        {
            format!("{prefix}: exec: \"{cmd}\": executable file not found in $PATH: unknown")
        } else if lower.contains("permission denied") {
            format!("{prefix}: exec: \"{cmd}\": permission denied: unknown")
        } else {
            format!("{prefix}: {msg}: unknown")
        },
    )
}

/// An exec's output: a pipe or its terminal.
trait Output: Read + std::os::fd::AsFd + Send {}
impl<T: Read + std::os::fd::AsFd + Send> Output for T {}

/// How long a read that ended mid-line waits for the rest of the line.
const LINE_WAIT_MS: u8 = 10;

/// One read of `src` into `buf` (0 at the end), with what follows within [`LINE_WAIT_MS`]
/// when it ended mid-line: a program's `hello` and `\n`, written apart, go out as the one
/// piece a client reads (dockerd's pipes deliver them so).
fn read_coalesced(src: &mut Box<dyn Output>, buf: &mut [u8]) -> usize {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut n = match src.read(buf) {
        Ok(n) => n,
        Err(_) => return 0,
    };
    while n > 0 && n < buf.len() && buf[n - 1] != b'\n' {
        let ready = {
            let mut fds = [PollFd::new(src.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(LINE_WAIT_MS)).unwrap_or(0)
        };
        if ready == 0 {
            break;
        }
        match src.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(more) => n += more,
        }
    }
    n
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub open_stdin: bool,
    pub open_stdout: bool,
    pub open_stderr: bool,
    pub pid: u32,
    pub process_config: ProcessConfig,
    /// The keys that end a TTY session with it (empty: the default).
    pub detach_keys: String,
    pub can_remove: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessConfig {
    pub tty: bool,
    pub entrypoint: String,
    pub arguments: Vec<String>,
    pub privileged: bool,
    pub user: String,
}

struct Instance {
    config: ExecConfig,
    inspect: ExecInspect,
    /// Input for the process; `None` marks its end. Created with the instance so input that
    /// arrives before the start is kept.
    stdin_tx: std::sync::mpsc::Sender<Option<Vec<u8>>>,
    stdin_rx: Option<std::sync::mpsc::Receiver<Option<Vec<u8>>>>,
    /// The pty master of a TTY exec once it runs, and the size asked for before that.
    terminal: Option<std::fs::File>,
    size: Option<(u16, u16)>,
}

#[derive(Default)]
pub struct Execs {
    all: Mutex<HashMap<String, Instance>>,
}

/// One piece of an exec's output, or its end.
pub enum ExecEvent {
    Output(u32, Vec<u8>),
    Exited(i64),
}

impl Execs {
    pub fn create(
        &self,
        store: &ContainerStore,
        container: &str,
        config: ExecConfig,
    ) -> Result<String, ContainerError> {
        let id = store.resolve(container)?;
        let st = lifecycle::refresh(store, &id);
        if st.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        let cmd = config.cmd.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Err(ContainerError::Invalid("No exec command specified".into()));
        }
        let exec_id = super::random_hex(32);
        let inspect = ExecInspect {
            id: exec_id.clone(),
            running: false,
            exit_code: None,
            container_id: id.clone(),
            open_stdin: config.attach_stdin.unwrap_or(false),
            open_stdout: config.attach_stdout.unwrap_or(true),
            open_stderr: config.attach_stderr.unwrap_or(true),
            pid: 0,
            process_config: ProcessConfig {
                tty: config.tty.unwrap_or(false),
                entrypoint: cmd[0].clone(),
                arguments: cmd[1..].to_vec(),
                privileged: config.privileged.unwrap_or(false),
                user: config.user.clone().unwrap_or_default(),
            },
            detach_keys: config.detach_keys.clone().unwrap_or_default(),
            can_remove: false,
        };
        let (stdin_tx, stdin_rx) = std::sync::mpsc::channel();
        let size = super::terminal::console_size(config.console_size.as_ref());
        let rec = store.record(&id)?;
        lifecycle::event(
            &rec,
            &format!("exec_create: {}", cmd.join(" ")),
            &[("execID", exec_id.clone())],
        );
        self.all.lock().unwrap().insert(
            exec_id.clone(),
            Instance {
                config,
                inspect,
                stdin_tx,
                stdin_rx: Some(stdin_rx),
                terminal: None,
                size,
            },
        );
        Ok(exec_id)
    }

    pub fn inspect(&self, id: &str) -> Result<ExecInspect, ContainerError> {
        self.all
            .lock()
            .unwrap()
            .get(id)
            .map(|i| i.inspect.clone())
            .ok_or_else(|| ContainerError::NotFound(format!("exec instance {id}")))
    }

    /// Where input for exec `id` goes.
    pub fn stdin(
        &self,
        id: &str,
    ) -> Result<std::sync::mpsc::Sender<Option<Vec<u8>>>, ContainerError> {
        self.all
            .lock()
            .unwrap()
            .get(id)
            .filter(|i| i.inspect.open_stdin)
            .map(|i| i.stdin_tx.clone())
            .ok_or_else(|| ContainerError::Conflict(format!("exec {id} does not take input")))
    }

    /// Resizes a TTY exec's terminal; before it runs, the size is kept for its start.
    pub fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ContainerError> {
        let mut all = self.all.lock().unwrap();
        let inst = all
            .get_mut(id)
            .ok_or_else(|| ContainerError::NotFound(format!("exec instance {id}")))?;
        if !inst.inspect.process_config.tty {
            return Err(ContainerError::Conflict(format!(
                "exec {id} has no terminal"
            )));
        }
        inst.size = Some((height, width));
        match &inst.terminal {
            Some(t) => super::terminal::set_size(t, height, width),
            None => Ok(()),
        }
    }

    fn set(&self, id: &str, f: impl FnOnce(&mut ExecInspect)) {
        if let Some(i) = self.all.lock().unwrap().get_mut(id) {
            f(&mut i.inspect);
        }
    }

    /// Runs the exec to completion on the calling (blocking) thread, sending output on `tx`.
    pub fn run(
        &self,
        store: &ContainerStore,
        exec_id: &str,
        tx: mpsc::Sender<ExecEvent>,
    ) -> Result<(), ContainerError> {
        let (config, container, stdin_rx) = {
            let mut all = self.all.lock().unwrap();
            let inst = all
                .get_mut(exec_id)
                .ok_or_else(|| ContainerError::NotFound(format!("exec instance {exec_id}")))?;
            if inst.inspect.running || inst.inspect.exit_code.is_some() {
                return Err(ContainerError::Conflict(format!(
                    "exec {exec_id} has already run"
                )));
            }
            let rx = inst.stdin_rx.take().filter(|_| inst.inspect.open_stdin);
            (inst.config.clone(), inst.inspect.container_id.clone(), rx)
        };
        let rec = store.record(&container)?;
        let dir = store.dir(&container);
        std::fs::create_dir_all(EXEC_SOCKETS).map_err(super::io("exec log directory"))?;
        let log = std::path::Path::new(EXEC_SOCKETS).join(format!("{}.log", &exec_id[..16]));
        let _ = std::fs::remove_file(&log);
        let log_arg = log.to_string_lossy().into_owned();
        let mut cmd = crun(&["--log", &log_arg, "--log-format", "json", "exec"]);
        let mut env = rec.config.env.clone().unwrap_or_default();
        env.extend(config.env.clone().unwrap_or_default());
        for e in &env {
            cmd.arg("--env").arg(e);
        }
        let cwd = config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| rec.config.working_dir.clone().filter(|w| !w.is_empty()));
        if let Some(cwd) = cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        let user = config
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| rec.config.user.clone().filter(|u| !u.is_empty()));
        if let Some(user) = user {
            let (uid, gid, _) = super::spec::resolve_user(&dir.join("rootfs"), &user)
                .map_err(|e| ContainerError::Invalid(e.to_string()))?;
            cmd.arg("--user").arg(format!("{uid}:{gid}"));
        }
        let tty = config.tty.unwrap_or(false);
        let console = if tty {
            // Not under the container's directory: a socket path must fit in sun_path's 108
            // bytes, and that directory's path alone takes 90.
            let sock_dir = std::path::Path::new(EXEC_SOCKETS);
            std::fs::create_dir_all(sock_dir).map_err(super::io("exec console socket"))?;
            let sock = sock_dir.join(format!("{}.sock", &exec_id[..16]));
            let _ = std::fs::remove_file(&sock);
            let l = UnixListener::bind(&sock).map_err(super::io("exec console socket"))?;
            cmd.arg("--tty").arg("--console-socket").arg(&sock);
            Some((l, sock))
        } else {
            None
        };
        cmd.arg(&container)
            .args(config.cmd.clone().unwrap_or_default());
        cmd.stdin(if stdin_rx.is_some() && !tty {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if tty {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(super::io("running crun exec"))?;
        let mut argv = config.cmd.clone().unwrap_or_default();
        argv.truncate(16);
        lifecycle::event(
            &rec,
            &format!("exec_start: {}", argv.join(" ")),
            &[("execID", exec_id.to_owned())],
        );
        self.set(exec_id, |i| {
            i.running = true;
            i.pid = child.id();
        });
        let mut readers = Vec::new();
        let pump = |mut src: Box<dyn Output>, stream: u32, tx: mpsc::Sender<ExecEvent>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match read_coalesced(&mut src, &mut buf) {
                        0 => break,
                        n => {
                            if tx
                                .blocking_send(ExecEvent::Output(stream, buf[..n].to_vec()))
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            })
        };
        let feed = |mut sink: Box<dyn std::io::Write + Send>,
                    rx: std::sync::mpsc::Receiver<Option<Vec<u8>>>| {
            std::thread::spawn(move || {
                while let Ok(Some(data)) = rx.recv() {
                    if sink.write_all(&data).is_err() {
                        break;
                    }
                }
            });
        };
        let mut stdin_rx = stdin_rx;
        // Only a piped stdin takes the receiver here; a TTY exec's goes to the terminal below.
        if let Some(input) = child.stdin.take()
            && let Some(rx) = stdin_rx.take()
        {
            feed(Box::new(input), rx);
        }
        let mut crun_stderr = Vec::new();
        if let Some((listener, sock)) = console {
            let master = await_console(&listener, &mut child);
            let _ = std::fs::remove_file(sock);
            match master {
                Ok(None) => tracing::warn!("crun exec ended before it made a terminal"),
                Ok(Some(fd)) => {
                    let master = std::fs::File::from(fd);
                    if let Some(inst) = self.all.lock().unwrap().get_mut(exec_id) {
                        if let Some((h, w)) = inst.size {
                            let _ = super::terminal::set_size(&master, h, w);
                        }
                        inst.terminal = master.try_clone().ok();
                    }
                    if let Some(rx) = stdin_rx.take()
                        && let Ok(writer) = master.try_clone()
                    {
                        feed(Box::new(writer), rx);
                    }
                    readers.push(pump(Box::new(master), 1, tx.clone()));
                }
                Err(e) => tracing::warn!("exec terminal: {e}"),
            }
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_end(&mut crun_stderr);
            }
        } else {
            if let Some(out) = child.stdout.take() {
                readers.push(pump(Box::new(out), 1, tx.clone()));
            }
            if let Some(err) = child.stderr.take() {
                readers.push(pump(Box::new(err), 2, tx.clone()));
            }
        }
        let status = child.wait().map_err(super::io("waiting for crun exec"))?;
        for r in readers {
            let _ = r.join();
        }
        let mut code = status.code().map(i64::from).unwrap_or_else(|| {
            128 + i64::from(std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9))
        });
        let crun_log = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let argv0 = config
            .cmd
            .as_ref()
            .and_then(|c| c.first().cloned())
            .unwrap_or_default();
        match (code != 0)
            .then(|| start_failure(&crun_log, &argv0))
            .flatten()
        {
            Some(message) => {
                code = EXEC_START_FAILED;
                let mut message = message.into_bytes();
                message.push(b'\n');
                let _ = tx.blocking_send(ExecEvent::Output(2, message));
            }
            None if !crun_stderr.is_empty() && code != 0 => {
                let _ = tx.blocking_send(ExecEvent::Output(2, crun_stderr));
            }
            None => {}
        }
        if let Some(inst) = self.all.lock().unwrap().get_mut(exec_id) {
            inst.inspect.running = false;
            inst.inspect.exit_code = Some(code);
            inst.terminal = None;
        }
        lifecycle::event(
            &rec,
            "exec_die",
            &[
                ("execID", exec_id.to_owned()),
                ("exitCode", code.to_string()),
            ],
        );
        let _ = tx.blocking_send(ExecEvent::Exited(code));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_never_started_is_told_in_dockerds_words() {
        let line = |msg: &str| format!("{{\"msg\":\"{msg}\",\"level\":\"error\"}}\n");
        let missing = start_failure(
            &line("executable file `nosuch` not found in $PATH: No such file or directory"),
            "nosuch",
        )
        .unwrap();
        assert!(
            missing.contains("exec: \"nosuch\": executable file not found in $PATH"),
            "{missing}"
        );
        let denied = start_failure(
            &line("open `/etc/passwd`: Permission denied"),
            "/etc/passwd",
        );
        assert!(denied.unwrap().contains("permission denied"));
        let other = start_failure(&line("something else"), "x").unwrap();
        assert!(other.contains("something else"), "{other}");
        // The command ran and failed by itself: crun logged nothing.
        assert_eq!(start_failure("", "false"), None);
        assert_eq!(start_failure("not json\n", "false"), None);
    }
}
