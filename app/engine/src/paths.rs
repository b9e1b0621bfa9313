//! Where Berth keeps things: `$BERTH_HOME` (data disk, settings, the VM lock) and the runtime
//! directory (sockets, logs). Owns the path rules and the modes of what lives there: both
//! directories are private to their owner (0700, tightened when an older Berth or the user
//! left them wider), and so is every file Berth creates in them (0600).
//!
//! Whoever creates a file in the home or the runtime directory goes through this module:
//! [`private_file_options`] to open or create one, [`write_private_atomic`] to replace one
//! whole (settings, `ports-off.json`). [`Paths::ensure`] creates the directories and also
//! tightens the files it knows that an older Berth created group- or world-readable.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fchmod};

/// The mode of the Berth home and the runtime directory: only their owner may enter.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of the files Berth creates in them.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

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
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} belongs to user {owner}, not to this user ({me}); Berth keeps its files only in a directory of its own user"
    )]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("making {path} private: {source}")]
    Tighten {
        path: PathBuf,
        source: std::io::Error,
    },
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

    /// Creates the home and runtime directories 0700 (tightening existing ones) and takes
    /// group and other permissions off the files Berth keeps in them, in case an older Berth
    /// created them wider. Refuses socket paths too long for a Unix socket.
    pub fn ensure(&self) -> Result<(), PathsError> {
        ensure_private_dir(&self.home)?;
        ensure_private_dir(&self.run_dir)?;
        for file in [
            self.data_disk(),
            self.settings(),
            self.ports_off(),
            self.vm_lock(),
            self.serial_log(),
            self.vmm_log(),
            self.engine_log(),
            self.vm_failure(),
            self.agent_key(),
        ] {
            tighten_file(&file)?;
        }
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
    /// The published ports the user switched off (see `ports::Ports`).
    pub fn ports_off(&self) -> PathBuf {
        self.home.join("ports-off.json")
    }
    /// What each container's create request asked to publish (see `published`).
    pub fn published(&self) -> crate::published::Published {
        crate::published::Published::new(self.home.join("published"))
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
    /// The running VM's agent key (see `berth_agent_proto::auth`), 0600 beside the vsock
    /// socket: whoever may dial the guest must also check that the agent answers.
    pub fn agent_key(&self) -> PathBuf {
        crate::agent::key_path(&self.vsock_socket())
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

/// Creates `dir` and its missing parents 0700, or tightens an existing `dir` to 0700 (a
/// symlink to a directory is followed: the user chose it). Refuses a `dir` that is not a
/// directory or belongs to another user: Berth's files would not be private there.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathsError> {
    let create = |source| PathsError::Create {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(create)?;
    // Judged and changed through one descriptor, so that what is checked is what is changed.
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ENOTDIR => PathsError::NotADirectory {
            path: dir.to_path_buf(),
        },
        e => create(e.into()),
    })?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(create)?;
    tighten(dir, &file, &meta, PRIVATE_DIR_MODE)
}

/// Options that create a file 0600 (the umask can only take more away), for every file
/// Berth creates in its home or runtime directory; add `.write`, `.append`, `.create` etc.
pub fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(PRIVATE_FILE_MODE);
    options
}

/// Takes group and other permissions off an existing file (a missing one is fine). A symlink
/// is left as it is, never followed.
pub fn tighten_file(path: &Path) -> Result<(), PathsError> {
    let fd = match nix::fcntl::open(
        path,
        // Non-blocking: a FIFO in its place must not hang the open.
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP) => return Ok(()),
        Err(e) => {
            return Err(PathsError::Tighten {
                path: path.to_path_buf(),
                source: e.into(),
            });
        }
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|source| PathsError::Tighten {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Ok(());
    }
    tighten(path, &file, &meta, meta.mode() & 0o7777 & !0o077)
}

/// Sets `mode` on the open `file` (at `path`) when it differs, after checking its owner.
fn tighten(
    path: &Path,
    file: &std::fs::File,
    meta: &std::fs::Metadata,
    mode: u32,
) -> Result<(), PathsError> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PathsError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o7777 != mode {
        fchmod(file.as_fd(), Mode::from_bits_truncate(mode)).map_err(|e| PathsError::Tighten {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Replaces `path` with `data` atomically and durably: a new 0600 file beside it (a name of
/// its own, so that concurrent writers do not mix), written and fsynced, renamed over
/// `path`, then the directory fsynced so that the rename survives a crash. A reader sees the
/// old content or the new, never a part. On failure the temporary file is removed and
/// `path` is as it was.
pub fn write_private_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut file = private_file_options()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
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
    use std::os::unix::fs::PermissionsExt;

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

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn home_and_runtime_dirs_are_private_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().join("a/home"));
        paths.ensure().unwrap();
        assert_eq!(mode_of(&paths.home), 0o700);
        assert_eq!(mode_of(&paths.run_dir), 0o700);
        assert_eq!(mode_of(&tmp.path().join("a")), 0o700);

        // An older Berth's home: 0755 with a 0644 data disk and settings.
        let old = Paths::new(tmp.path().join("old"));
        std::fs::create_dir_all(&old.run_dir).unwrap();
        for (p, mode) in [(&old.home, 0o755), (&old.run_dir, 0o775)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        for (file, mode) in [
            (old.data_disk(), 0o644),
            (old.settings(), 0o666),
            (old.engine_log(), 0o640),
            (old.ports_off(), 0o400),
        ] {
            std::fs::write(&file, b"x").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        // A symlink in a file's place is not followed.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::write(&elsewhere, b"").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, old.vm_lock()).unwrap();
        old.ensure().unwrap();
        assert_eq!(mode_of(&old.home), 0o700);
        assert_eq!(mode_of(&old.run_dir), 0o700);
        assert_eq!(mode_of(&old.data_disk()), 0o600);
        assert_eq!(mode_of(&old.settings()), 0o600);
        assert_eq!(mode_of(&old.engine_log()), 0o600);
        assert_eq!(mode_of(&old.ports_off()), 0o400);
        assert_eq!(mode_of(&elsewhere), 0o644);
    }

    #[test]
    fn a_home_of_another_user_is_refused_untouched() {
        if !nix::unistd::geteuid().is_root() {
            // Making a directory of another user needs root.
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        assert!(matches!(
            Paths::new(&home).ensure(),
            Err(PathsError::NotOwned { owner: 65534, .. })
        ));
        assert_eq!(mode_of(&home), 0o755);
    }

    #[test]
    fn a_file_where_the_home_should_be_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("home");
        std::fs::write(&file, b"").unwrap();
        assert!(ensure_private_dir(&file).is_err());
        assert!(matches!(
            ensure_private_dir(&file.join("x")),
            Err(PathsError::Create { .. })
        ));
    }

    #[test]
    fn private_files_are_created_0600_and_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("engine.log");
        private_file_options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        assert_eq!(mode_of(&log), 0o600);

        let path = tmp.path().join("settings.json");
        write_private_atomic(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o600);
        // Only the file itself is left: no temporary beside it.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
        // A failed write leaves the old content and no temporary.
        assert!(write_private_atomic(&tmp.path().join("missing/x"), b"y").is_err());
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        assert!(write_private_atomic(&dir, b"y").is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);
    }

    #[test]
    fn overlong_socket_paths_are_refused() {
        let long = "x".repeat(120);
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().join(long));
        assert!(matches!(paths.ensure(), Err(PathsError::SocketTooLong(_))));
    }
}
