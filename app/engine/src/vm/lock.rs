//! One VM per `BERTH_HOME`: an exclusive flock on `vm.lock`, holding the owner's pid, kept for
//! as long as the VM's processes live. Also ends VM processes a crashed engine left behind.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::VmError;
use crate::paths::Paths;

#[derive(Debug)]
pub struct VmLock {
    _file: std::fs::File,
}

impl VmLock {
    pub fn acquire(paths: &Paths) -> Result<Self, VmError> {
        let path = paths.vm_lock();
        let mut file = crate::paths::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(VmError::io(format!("opening {}", path.display())))?;
        // SAFETY: flock on an fd we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(VmError::Locked {
                home: paths.home.clone(),
                pid: pid.trim().to_owned(),
            });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(VmLock { _file: file })
    }

    /// True when another process holds the lock of `paths` right now.
    pub fn held_elsewhere(paths: &Paths) -> Option<String> {
        match VmLock::acquire(paths) {
            Ok(_) => None,
            Err(VmError::Locked { pid, .. }) => Some(pid),
            Err(_) => None,
        }
    }
}

/// A VMM or one of its helpers, by its process name and command line: qemu, `berth vmm`,
/// vhost-device-vsock, passt, virtiofsd.
fn is_vm_process(comm: &str, cmdline: &[u8]) -> bool {
    let berth_vmm = comm == "berth" && cmdline.split(|b| *b == 0).nth(1) == Some(b"vmm");
    berth_vmm
        || ["qemu-system", "vhost-device", "passt", "virtiofsd"]
            .iter()
            .any(|p| comm.starts_with(p))
}

/// Kills processes left over from an engine that died without stopping its VM: a VMM or helper
/// (see [`is_vm_process`]) whose command line names this home's runtime directory. Call with
/// the lock held.
pub fn kill_leftovers(paths: &Paths) {
    let mut marker = paths.run_dir.as_os_str().as_encoded_bytes().to_vec();
    marker.push(b'/');
    let marker = marker.as_slice();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut killed = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = Path::new("/proc").join(pid.to_string());
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if !is_vm_process(comm.trim_end(), &cmdline) {
            continue;
        }
        if cmdline.windows(marker.len()).any(|w| w == marker) && pid != std::process::id() as i32 {
            tracing::warn!(pid, "ending a VM process left behind by an earlier engine");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed.push(pid);
        }
    }
    // Until they are gone they hold what the new VM needs (virtiofsd's pid-file lock, the
    // data disk's lock, sockets).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while killed.iter().any(|pid| running(*pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The process exists and is not a zombie (a zombie holds no locks or files any more).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_processes_are_known_by_name_and_the_engine_is_not_one() {
        assert!(is_vm_process(
            "qemu-system-x86",
            b"qemu-system-x86_64\0-M\0"
        ));
        assert!(is_vm_process("berth", b"/usr/bin/berth\0vmm\0--kernel\0"));
        assert!(is_vm_process("passt.avx2", b"passt\0-f\0"));
        assert!(is_vm_process("virtiofsd", b"virtiofsd\0"));
        assert!(!is_vm_process("berth", b"/usr/bin/berth\0engine\0"));
        assert!(!is_vm_process("bash", b"bash\0"));
    }

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        paths.ensure().unwrap();
        let first = VmLock::acquire(&paths).unwrap();
        let err = VmLock::acquire(&paths).unwrap_err();
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        assert!(VmLock::held_elsewhere(&paths).is_some());
        drop(first);
        assert!(VmLock::acquire(&paths).is_ok());
    }
}
