//! VMs: the [`VmBackend`] trait every backend implements, the processes of one running VM
//! ([`RunningVm`]), the lifecycle state machine ([`state`]) and the [`supervisor`] that drives
//! them. Backends live in their own files (`qemu.rs`; the builtin VMM later).

pub mod builtin;
pub mod lock;
pub mod logtrim;
pub mod net;
pub mod qemu;
pub mod seed;
pub mod state;
pub mod supervisor;
pub mod virtiofs;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Instant;

use crate::host::{Accel, BackendKind};
use crate::paths::Paths;

pub use state::{VmState, VmStatus};
pub use supervisor::{BootReport, Overrides, Supervisor};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Paths(#[from] crate::paths::PathsError),
    #[error("{0}")]
    Settings(#[from] crate::settings::SettingsError),
    #[error("{0}")]
    Backend(#[from] crate::host::PickError),
    #[error("{0}")]
    MissingProgram(#[from] crate::host::MissingProgram),
    #[error("guest image not found: {0} is missing; run `make build` or set BERTH_GUEST_DIR")]
    NoGuestImage(PathBuf),
    #[error(
        "the data disk of {home} is in use by another Berth VM (engine pid {pid}); stop it with `berth vm stop` or use another BERTH_HOME"
    )]
    Locked { home: PathBuf, pid: String },
    #[error(
        "the data disk {disk} is locked by another program (qemu could not take its write lock); stop the other VM that uses it"
    )]
    DiskInUse { disk: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not start: {detail}")]
    Spawn { what: String, detail: String },
    #[error("the VM failed to boot: {reason}")]
    Boot { reason: String, log_tail: String },
    #[error("the VM is {0}, which does not allow {1}")]
    InvalidTransition(VmState, &'static str),
    #[error("the VM is not running")]
    NotRunning,
    #[error("{0}")]
    Agent(#[from] crate::agent::AgentError),
}

impl VmError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
        let what = what.into();
        move |source| VmError::Io { what, source }
    }
}

/// The guest kernel and initramfs.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
}

impl GuestImage {
    pub fn locate(dir: &Path) -> Result<Self, VmError> {
        let image = GuestImage {
            vmlinuz: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs"),
        };
        for file in [&image.vmlinuz, &image.initramfs] {
            if !file.is_file() {
                return Err(VmError::NoGuestImage(file.clone()));
            }
        }
        Ok(image)
    }

    /// Size in bytes of kernel plus initramfs.
    pub fn size(&self) -> u64 {
        [&self.vmlinuz, &self.initramfs]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Everything a backend needs to start the VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub paths: Paths,
    pub image: GuestImage,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub accel: Accel,
    /// Extra words for the kernel command line (entropy seed and the like).
    pub extra_cmdline: Vec<String>,
    /// Host directories to share over virtio-fs, tagged by position ([`crate::shares`]).
    pub shares: Vec<std::path::PathBuf>,
}

/// One VM backend: turns a [`VmConfig`] into running processes that expose the hybrid-vsock
/// socket and write the serial log.
pub trait VmBackend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn start(&self, config: &VmConfig) -> Result<RunningVm, VmError>;
}

/// The processes of one running VM: the VMM itself and helpers that must end with it.
#[derive(Debug)]
pub struct RunningVm {
    pub vmm: tokio::process::Child,
    pub helpers: Vec<tokio::process::Child>,
    /// The host directories the VM sees over virtio-fs.
    pub shares: Vec<PathBuf>,
    pub vsock_socket: PathBuf,
    pub serial_log: PathBuf,
    pub vmm_log: PathBuf,
    pub started: Instant,
}

impl RunningVm {
    pub fn pid(&self) -> Option<u32> {
        self.vmm.id()
    }

    /// Waits for the VMM to exit, then ends the helpers (they outlive it otherwise).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.vmm.wait().await;
        self.end_helpers().await;
        status
    }

    /// SIGKILL to the VMM; [`RunningVm::wait`] then reaps it.
    pub fn kill(&mut self) {
        let _ = self.vmm.start_kill();
    }

    async fn end_helpers(&mut self) {
        for helper in &mut self.helpers {
            let _ = helper.start_kill();
            let _ = helper.wait().await;
        }
        self.helpers.clear();
    }

    /// The serial log's last `lines` lines followed by the VMM's own stderr tail.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.serial_log, &self.vmm_log, lines)
    }
}

pub fn log_tail(serial: &Path, vmm: &Path, lines: usize) -> String {
    let tail = |path: &Path| {
        let text = logtrim::tail_bytes(path, 256 << 10);
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    };
    let mut out = tail(serial);
    let vmm = tail(vmm);
    if !vmm.trim().is_empty() {
        out.push_str("\n--- vmm ---\n");
        out.push_str(&vmm);
    }
    out
}

/// Creates the sparse data disk if it does not exist yet.
pub fn ensure_data_disk(path: &Path, gib: u32) -> Result<(), VmError> {
    if path.exists() {
        return Ok(());
    }
    let file = crate::paths::private_file_options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(VmError::io(format!(
            "creating the data disk {}",
            path.display()
        )))?;
    file.set_len(u64::from(gib) << 30)
        .map_err(VmError::io("sizing the data disk"))?;
    Ok(())
}

pub fn backend(kind: BackendKind) -> Box<dyn VmBackend> {
    match kind {
        BackendKind::Qemu => Box::new(qemu::QemuBackend),
        BackendKind::Builtin => Box::new(builtin::BuiltinBackend),
    }
}
