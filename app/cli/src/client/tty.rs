//! Interactive sessions for `run -it` and `exec -it`: the local terminal in raw mode (restored
//! however the session ends), stdin copied to the container until EOF or the detach keys
//! (Ctrl-P Ctrl-Q, as the docker CLI's default), and the container's TTY sized to the window and
//! resized on SIGWINCH.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::pin::Pin;

use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The terminal's settings before raw mode, put back on drop.
pub struct RawMode(Option<Termios>);

impl RawMode {
    /// Raw mode on stdin when it is a terminal; a no-op otherwise.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode(None);
        }
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl RawMode {
    /// Only echo off (for a password prompt); lines still end with Enter.
    pub fn no_echo() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode(None);
        }
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut quiet = saved.clone();
        quiet.local_flags.remove(termios::LocalFlags::ECHO);
        if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// The window's (rows, columns), from stdout's or stdin's terminal.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; fd is one of ours.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// How the stdin copy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    /// Stdin closed (the container's stdin was closed too).
    Eof,
    /// The user typed the detach keys: the container keeps running.
    Detached,
    /// The container side went away.
    Closed,
}

/// Finds Ctrl-P Ctrl-Q across reads: `held` says the previous read ended in Ctrl-P.
/// Returns the bytes to forward, and whether the sequence is complete.
pub fn scan_detach(buf: &[u8], held: &mut bool) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(buf.len() + 1);
    for &b in buf {
        if *held {
            *held = false;
            if b == 0x11 {
                return (out, true);
            }
            out.push(0x10);
        }
        if b == 0x10 {
            *held = true;
        } else {
            out.push(b);
        }
    }
    (out, false)
}

/// Copies stdin to the container's `input` until EOF, the detach keys (`detach_keys`), or the
/// container closing its side.
pub async fn pump_stdin(mut input: Pin<Box<dyn AsyncWrite + Send>>, detach_keys: bool) -> Pump {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut held = false;
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = input.shutdown().await;
                return Pump::Eof;
            }
            Ok(n) => n,
        };
        let (bytes, detach) = if detach_keys {
            scan_detach(&buf[..n], &mut held)
        } else {
            (buf[..n].to_vec(), false)
        };
        if !bytes.is_empty()
            && (input.write_all(&bytes).await.is_err() || input.flush().await.is_err())
        {
            return Pump::Closed;
        }
        if detach {
            return Pump::Detached;
        }
    }
}

/// Calls `resize(rows, cols)` now and on every SIGWINCH until the task is aborted.
pub fn follow_window<F, Fut>(resize: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(u16, u16) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        if let Some((rows, cols)) = window_size() {
            resize(rows, cols).await;
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = window_size() {
                resize(rows, cols).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_found_across_reads() {
        let mut held = false;
        assert_eq!(scan_detach(b"ls\r", &mut held), (b"ls\r".to_vec(), false));
        assert_eq!(scan_detach(b"a\x10", &mut held), (b"a".to_vec(), false));
        assert!(held);
        assert_eq!(scan_detach(b"\x11rest", &mut held), (Vec::new(), true));
        let mut held = false;
        // Ctrl-P then something else goes through whole.
        assert_eq!(scan_detach(b"\x10x", &mut held), (b"\x10x".to_vec(), false));
        assert_eq!(scan_detach(b"x\x10\x11", &mut held), (b"x".to_vec(), true));
    }
}
