//! One `virtiofsd` per shared host directory, each in its own sandbox. Owns how a share is
//! served: with virtiofsd's namespace sandbox (as root, or in a user namespace as a user), and
//! with Berth's own state ([`crate::shares::hidden`]) covered, so the guest cannot reach it.
//!
//! Each virtiofsd starts in a mount namespace of its own where every hidden path inside its
//! share is covered by an empty read-only tmpfs; virtiofsd then confines itself to the share.
//! Where that cannot be set up (no user namespaces), a share that holds hidden paths is not
//! served: its virtiofsd serves an empty directory instead, and the log says why.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::qemu::{logged_command, spawn};
use super::{VmConfig, VmError};
use crate::host;

/// Starts one virtiofsd per share of `config`, added to `helpers`; returns the shares served.
/// A missing virtiofsd leaves the VM without shares (bind mounts then say so) rather than
/// without a VM; any other failure stops every helper.
pub(super) fn spawn_all(
    config: &VmConfig,
    helpers: &mut Vec<tokio::process::Child>,
) -> Result<Vec<PathBuf>, VmError> {
    let served = each(config, helpers);
    if served.is_err() {
        for h in helpers.iter_mut() {
            let _ = h.start_kill();
        }
    }
    served
}

fn each(
    config: &VmConfig,
    helpers: &mut Vec<tokio::process::Child>,
) -> Result<Vec<PathBuf>, VmError> {
    if config.shares.is_empty() {
        return Ok(Vec::new());
    }
    let p = &config.paths;
    let program = match host::virtiofsd_program() {
        Ok(program) => program,
        Err(e) => {
            tracing::warn!("no host file sharing: {e}");
            return Ok(Vec::new());
        }
    };
    let hidden = crate::shares::hidden(p);
    // Decided once, before any start: a virtiofsd whose sandbox then fails fails the boot
    // (the VMM cannot connect), which reports it with the log.
    let namespaces = namespaces_available();
    let sandbox = if namespaces { "namespace" } else { "none" };
    if !namespaces {
        tracing::warn!("no user namespaces here: virtiofsd serves without its sandbox");
    }
    for (i, dir) in config.shares.iter().enumerate() {
        let socket = p.virtiofs_socket(i);
        let masks = masks_for(dir, &hidden);
        let log = p.vmm_log();
        let child = if masks.is_empty() || namespaces {
            start(&program, dir, &socket, &masks, sandbox, &log)?
        } else {
            // Berth's state must never be reachable: serve nothing rather than all.
            tracing::warn!(
                "not sharing {}: Berth's own files inside it cannot be hidden from the VM \
                 without user namespaces",
                dir.display()
            );
            let empty = p.run_dir.join(format!("unshared-{i}"));
            std::fs::create_dir_all(&empty).map_err(VmError::io("making an empty share"))?;
            start(&program, &empty, &socket, &[], sandbox, &log)?
        };
        helpers.push(child);
    }
    Ok(config.shares.clone())
}

/// The hidden paths inside share `dir` to cover, outermost only (covering the Berth home
/// covers its runtime directory with it; the inner path no longer exists to mount on).
fn masks_for(dir: &Path, hidden: &[PathBuf]) -> Vec<PathBuf> {
    let inside: Vec<&PathBuf> = hidden
        .iter()
        .filter(|h| h.starts_with(dir) && *h != dir)
        .collect();
    inside
        .iter()
        .filter(|h| !inside.iter().any(|o| o != *h && h.starts_with(o)))
        .map(|h| (*h).clone())
        .collect()
}

/// Whether this process may make the namespaces virtiofsd's sandbox and the covering of
/// hidden paths need: always as root (a mount namespace); as a user, when a user namespace
/// can be made (some systems forbid it), tried in a short-lived child.
fn namespaces_available() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    // SAFETY: the child calls only unshare and _exit, which are async-signal-safe, and
    // touches no memory of the parent; the parent reaps it below.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: as above.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } == 0;
            // SAFETY: leaves the child at once, running nothing of the parent's.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => matches!(
            nix::sys::wait::waitpid(child, None),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ),
        Err(_) => false,
    }
}

fn start(
    program: &Path,
    dir: &Path,
    socket: &Path,
    masks: &[PathBuf],
    sandbox: &str,
    log: &Path,
) -> Result<tokio::process::Child, VmError> {
    // The engine listens and hands virtiofsd the socket: the socket lies in the runtime
    // directory, which virtiofsd's own view may cover.
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .map_err(VmError::io(format!("listening on {}", socket.display())))?;
    let args: Vec<std::ffi::OsString> = vec![
        "--fd".into(),
        LISTEN_FD.to_string().into(),
        "--shared-dir".into(),
        dir.into(),
        "--cache".into(),
        "auto".into(),
        "--sandbox".into(),
        sandbox.into(),
        "--announce-submounts".into(),
        "--log-level".into(),
        "error".into(),
    ];
    let mut cmd = logged_command(program, args, log)?;
    let fd = listener.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and makes only dup2 and fcntl
    // calls on a descriptor the parent keeps open across the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if fd == LISTEN_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if !masks.is_empty() {
        cover_in_child(&mut cmd, masks)?;
    }
    let child = spawn(program, &mut cmd)?;
    drop(listener);
    Ok(child)
}

/// The descriptor virtiofsd gets its listening socket on.
const LISTEN_FD: i32 = 3;

/// Makes the child start in a mount namespace of its own (inside a user namespace that maps
/// only the user, when not root) with each of `masks` covered by an empty read-only tmpfs.
fn cover_in_child(cmd: &mut tokio::process::Command, masks: &[PathBuf]) -> Result<(), VmError> {
    let masks: Vec<CString> = masks
        .iter()
        .map(|m| CString::new(m.as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| VmError::Spawn {
            what: "virtiofsd".into(),
            detail: "a path with a NUL byte".into(),
        })?;
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let uid_map = format!("{uid} {uid} 1\n").into_bytes();
    let gid_map = format!("{gid} {gid} 1\n").into_bytes();
    let root = uid == 0;
    // SAFETY: the closure runs in the forked child before exec; it makes only raw system calls
    // (unshare, open, write, close, mount) on memory prepared before the fork, and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            let flags = if root {
                libc::CLONE_NEWNS
            } else {
                libc::CLONE_NEWUSER | libc::CLONE_NEWNS
            };
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if !root {
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", &uid_map)?;
                write_proc(c"/proc/self/gid_map", &gid_map)?;
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for m in &masks {
                if libc::mount(
                    c"berth-hidden".as_ptr(),
                    m.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"size=4k,nr_inodes=1,mode=0500".as_ptr().cast(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Writes `data` to the proc file `path` with raw system calls (fit for a forked child).
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string; the descriptor returned is checked and
    // closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `data` is a live slice of `data.len()` bytes; `fd` is open.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    if n != data.len() as isize {
        return Err(err);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outermost_hidden_paths_inside_a_share_are_covered() {
        let hidden: Vec<PathBuf> = ["/tmp/home", "/tmp/home/run", "/root/.docker", "/tmp"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            masks_for(Path::new("/tmp"), &hidden),
            [PathBuf::from("/tmp/home")]
        );
        assert_eq!(
            masks_for(Path::new("/root"), &hidden),
            [PathBuf::from("/root/.docker")]
        );
        assert!(masks_for(Path::new("/srv"), &hidden).is_empty());
    }

    #[test]
    fn namespaces_are_probed_without_touching_this_process() {
        let before = std::fs::read_link("/proc/self/ns/user").unwrap();
        let root = nix::unistd::geteuid().is_root();
        assert!(!root || namespaces_available());
        assert_eq!(std::fs::read_link("/proc/self/ns/user").unwrap(), before);
    }
}
