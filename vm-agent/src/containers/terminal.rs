//! Terminal sizes: `docker run -it` and `docker exec -it` resize the pty the container's
//! process reads from. Owns only the TIOCSWINSZ call and finding a container's terminal.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::ContainerError;

/// A Docker `ConsoleSize` (`[height, width]`, in a container's HostConfig or an exec's
/// config): None unless both are given and positive.
pub fn console_size(size: Option<&Vec<i32>>) -> Option<(u16, u16)> {
    match size.map(Vec::as_slice) {
        Some(&[h, w]) => {
            Some((u16::try_from(h).ok()?, u16::try_from(w).ok()?)).filter(|&(h, w)| h > 0 && w > 0)
        }
        _ => None,
    }
}

/// Sets the window size of the terminal `fd` belongs to (master or slave side alike); the
/// foreground process group gets SIGWINCH.
pub fn set_size(fd: &impl AsRawFd, height: u16, width: u16) -> Result<(), ContainerError> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc != 0 {
        return Err(ContainerError::Failed(format!(
            "resizing the terminal: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Resizes the terminal of a running TTY container through its init's standard streams (the
/// shim holds the master; the slave is reachable through /proc).
pub fn resize_container(pid: u32, height: u16, width: u16) -> Result<(), ContainerError> {
    let mut last = ContainerError::Conflict("the container has no terminal".into());
    for fd in 0..3 {
        let path = format!("/proc/{pid}/fd/{fd}");
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
        else {
            continue;
        };
        match set_size(&f, height, width) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_sizes_as_docker_sends_them() {
        assert_eq!(console_size(Some(&vec![40, 132])), Some((40, 132)));
        assert_eq!(console_size(Some(&vec![0, 132])), None);
        assert_eq!(console_size(Some(&vec![40])), None);
        assert_eq!(console_size(None), None);
    }

    #[test]
    fn sets_the_size_a_pty_reports() {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_size(&pty.master, 40, 132).unwrap();
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the pointer, which lives across the call.
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (40, 132));
        // A pipe is no terminal: a clear error.
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(set_size(&r, 1, 1).is_err());
    }
}
