//! Where Berth keeps things: `$BERTH_HOME` (data disk, settings, the VM lock) and the runtime
//! directory (sockets, logs). Owns path rules only; creates the directories with safe modes.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find a home directory: set BERTH_HOME or HOME")]
    NoHome,
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "socket path {0} is longer than a Unix socket allows (100 bytes); set BERTH_RUNTIME_DIR to a shorter directory"
    )]
    SocketTooLong(PathBuf),
}

/// The files of one Berth installation. Every test uses its own `BERTH_HOME`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
    pub run_dir: PathBuf,
}

impl Paths {
    /// `$BERTH_HOME` (default `~/.local/share/berth`); the runtime directory is
    /// `$BERTH_RUNTIME_DIR`, else `$BERTH_HOME/run` when BERTH_HOME is set, else
    /// `$XDG_RUNTIME_DIR/berth`, else `~/.local/share/berth/run`.
    pub fn from_env() -> Result<Self, PathsError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let explicit_home = var("BERTH_HOME");
        let home = match &explicit_home {
            Some(h) => h.clone(),
            None => var("HOME")
                .ok_or(PathsError::NoHome)?
                .join(".local/share/berth"),
        };
        let run_dir = var("BERTH_RUNTIME_DIR").unwrap_or_else(|| {
            match (&explicit_home, var("XDG_RUNTIME_DIR")) {
                (None, Some(xdg)) => xdg.join("berth"),
                _ => home.join("run"),
            }
        });
        Ok(Paths { home, run_dir })
    }

    pub fn new(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        Paths {
            run_dir: home.join("run"),
            home,
        }
    }

    /// Creates the home (0755) and runtime (0700) directories.
    pub fn ensure(&self) -> Result<(), PathsError> {
        for (dir, mode) in [(&self.home, 0o755), (&self.run_dir, 0o700)] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|source| PathsError::Create {
                    path: dir.clone(),
                    source,
                })?;
        }
        let _ = std::fs::set_permissions(&self.run_dir, std::fs::Permissions::from_mode(0o700));
        for sock in [
            self.docker_socket(),
            self.vsock_socket(),
            self.vhost_vsock_socket(),
        ] {
            // Guest-initiated vsock connections land at `<vsock>_<port>`: leave room for it.
            if sock.as_os_str().len() > 100 {
                return Err(PathsError::SocketTooLong(sock));
            }
        }
        Ok(())
    }

    pub fn data_disk(&self) -> PathBuf {
        self.home.join("data.img")
    }
    pub fn settings(&self) -> PathBuf {
        self.home.join("settings.json")
    }
    /// Held (flock) by whoever runs the VM of this home: one VM per BERTH_HOME.
    pub fn vm_lock(&self) -> PathBuf {
        self.home.join("vm.lock")
    }
    pub fn docker_socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }
    /// The hybrid-vsock socket: `CONNECT <port>\n` reaches the guest.
    pub fn vsock_socket(&self) -> PathBuf {
        self.run_dir.join("vm.vsock")
    }
    /// The vhost-user socket between qemu and vhost-device-vsock.
    pub fn vhost_vsock_socket(&self) -> PathBuf {
        self.run_dir.join("vhost-vsock.sock")
    }
    /// virtiofsd's vhost-user socket for share `i`.
    pub fn virtiofs_socket(&self, i: usize) -> PathBuf {
        self.run_dir.join(format!("virtiofs-{i}.sock"))
    }
    /// passt's socket: the guest NIC's frames, qemu's `-netdev stream` protocol.
    pub fn passt_socket(&self) -> PathBuf {
        self.run_dir.join("passt.sock")
    }
    pub fn serial_log(&self) -> PathBuf {
        self.run_dir.join("serial.log")
    }
    /// stdout/stderr of the VMM process and its helpers.
    pub fn vmm_log(&self) -> PathBuf {
        self.run_dir.join("vmm.log")
    }
    pub fn engine_log(&self) -> PathBuf {
        self.run_dir.join("engine.log")
    }
    /// The VM status (JSON) of the last headless engine whose VM failed to start and which then
    /// exited; `berth vm status` shows it while no engine runs. Removed by the next start.
    pub fn vm_failure(&self) -> PathBuf {
        self.run_dir.join("vm-failure.json")
    }
}

/// Where the guest image (vmlinuz, initramfs) is: `$BERTH_GUEST_DIR`, else `guest/` beside the
/// running binary (where `make build` puts it), else inside a running AppImage
/// (`$APPDIR/usr/lib/berth/guest`), else `/usr/lib/berth/guest` (the .deb).
pub fn guest_image_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_GUEST_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(app) = std::env::var_os("APPDIR").filter(|v| !v.is_empty()) {
        let dir = Path::new(&app).join("usr/lib/berth/guest");
        if dir.join("vmlinuz").exists() {
            return dir;
        }
    }
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("guest")));
    match beside_exe {
        Some(dir) if dir.join("vmlinuz").exists() => dir,
        _ => {
            let system = Path::new("/usr/lib/berth/guest");
            beside_exe
                .filter(|_| !system.exists())
                .unwrap_or_else(|| system.to_path_buf())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_dir_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().join("home"));
        paths.ensure().unwrap();
        let mode = std::fs::metadata(&paths.run_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn overlong_socket_paths_are_refused() {
        let long = "x".repeat(120);
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().join(long));
        assert!(matches!(paths.ensure(), Err(PathsError::SocketTooLong(_))));
    }
}
