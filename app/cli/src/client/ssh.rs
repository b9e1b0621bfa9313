//! `-H ssh://[user@]host[:port]`: the engine on another machine through the system's ssh. A
//! private Unix socket stands in for the remote engine; each connection bollard opens on it
//! runs `ssh … host berth system dial-stdio` (or `docker system dial-stdio` where the other
//! side has no berth) and carries the bytes both ways. `BERTH_SSH_COMMAND` replaces `ssh`
//! (e.g. `ssh -i key -F config`), as GIT_SSH_COMMAND does for git.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::net::UnixListener;
use tokio::process::Command;

use super::{CliError, Result};

/// What runs on the other side: berth's dial-stdio, else the docker CLI's.
const REMOTE: &str = "command -v berth >/dev/null 2>&1 && exec berth system dial-stdio || exec docker system dial-stdio";

/// The local stand-in: its socket path, removed (with its directory) on drop.
pub struct Tunnel {
    dir: PathBuf,
    pub socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ssh://user@host:port` → the ssh arguments naming the destination.
pub fn destination(url: &str) -> Result<Vec<String>> {
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| CliError::new(125, format!("{url}: not an ssh:// URL")))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(CliError::new(
            125,
            format!("{url}: use ssh://[user@]host[:port] (no path)"),
        ));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            let p: u16 = p
                .parse()
                .map_err(|_| CliError::new(125, format!("{url}: bad port {p}")))?;
            (h.trim_matches(['[', ']']), Some(p))
        }
        _ => (hostport, None),
    };
    let mut args = Vec::new();
    if let Some(p) = port {
        args.extend(["-p".to_owned(), p.to_string()]);
    }
    if let Some(u) = user {
        args.extend(["-l".to_owned(), u.to_owned()]);
    }
    args.extend(["-T".to_owned(), "--".to_owned(), host.to_owned()]);
    Ok(args)
}

fn ssh_program() -> Vec<String> {
    std::env::var("BERTH_SSH_COMMAND")
        .ok()
        .map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["ssh".to_owned()])
}

/// Starts the stand-in socket for `url`.
pub fn open(url: &str) -> Result<Tunnel> {
    use std::os::unix::fs::DirBuilderExt;
    let dest = destination(url)?;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("berth-ssh-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| CliError::new(1, format!("{}: {e}", dir.display())))?;
    let socket = dir.join("engine.sock");
    let listener = UnixListener::bind(&socket)
        .map_err(|e| CliError::new(1, format!("{}: {e}", socket.display())))?;
    let program = ssh_program();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut cmd = Command::new(&program[0]);
            cmd.args(&program[1..])
                .args(&dest)
                .arg(REMOTE)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let Ok(mut child) = cmd.spawn() else {
                eprintln!("berth: cannot run {}", program[0]);
                continue;
            };
            tokio::spawn(async move {
                let (Some(mut to), Some(mut from)) = (child.stdin.take(), child.stdout.take())
                else {
                    return;
                };
                let (mut rd, mut wr) = conn.split();
                let up = async {
                    let _ = tokio::io::copy(&mut rd, &mut to).await;
                    drop(to);
                };
                let down = tokio::io::copy(&mut from, &mut wr);
                let _ = tokio::join!(up, down);
                let _ = child.kill().await;
            });
        }
    });
    Ok(Tunnel { dir, socket, task })
}

/// `berth system dial-stdio`: this process's stdin and stdout become a connection to the
/// engine at `host` (a unix socket), for a client at the other end of ssh.
pub async fn dial_stdio(host: &str) -> Result<std::process::ExitCode> {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    let conn = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| CliError::new(1, format!("{host}: {e}")))?;
    let (mut rd, mut wr) = conn.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
    };
    let down = async {
        let mut out = tokio::io::stdout();
        let _ = tokio::io::copy(&mut rd, &mut out).await;
        let _ = tokio::io::AsyncWriteExt::flush(&mut out).await;
    };
    // The client hanging up ends the copy up; the engine closing then ends the copy down.
    tokio::join!(up, down);
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_become_ssh_arguments() {
        assert_eq!(
            destination("ssh://me@box:2222").unwrap(),
            ["-p", "2222", "-l", "me", "-T", "--", "box"]
        );
        assert_eq!(destination("ssh://box").unwrap(), ["-T", "--", "box"]);
        assert!(destination("ssh://box/path").is_err());
        assert!(destination("ssh://box:port").is_err());
    }
}
