//! What this host can run: whether /dev/kvm is usable and can boot Linux, which VM backend
//! `auto` picks and why, and where the helper programs are. Probes only; starts nothing.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::settings::BackendChoice;

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_API_VERSION: libc::c_int = 12;

/// The KVM device path; `BERTH_KVM_DEVICE` overrides it (used to check the no-KVM paths).
pub fn kvm_device() -> PathBuf {
    std::env::var_os("BERTH_KVM_DEVICE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/dev/kvm"), PathBuf::from)
}

#[derive(Debug, Clone, Serialize)]
pub struct KvmProbe {
    pub device: PathBuf,
    /// The device opened and answered `KVM_GET_API_VERSION` with 12.
    pub usable: bool,
    /// Why it is not usable, when it is not.
    pub error: Option<String>,
    /// The CPU advertises hardware virtualization (vmx or svm). Without it, /dev/kvm may be a
    /// software hypervisor that runs small guests but cannot boot Linux.
    pub hardware_virtualization: bool,
}

impl KvmProbe {
    /// KVM is usable and backed by hardware virtualization: a stock Linux kernel boots on it.
    pub fn can_boot_linux(&self) -> bool {
        self.usable && self.hardware_virtualization
    }

    /// What to do about it, for the doctor.
    pub fn fix(&self) -> Option<String> {
        if self.usable {
            return (!self.hardware_virtualization).then(|| {
                "no fix needed: the CPU has no vmx/svm, so Berth emulates the guest with qemu TCG \
                 (slower); enable nested or hardware virtualization for full speed"
                    .to_owned()
            });
        }
        Some(format!(
            "give your user access to {} (sudo usermod -aG kvm $USER, then log in again) or \
             enable virtualization in the firmware; until then Berth uses qemu TCG (slower)",
            self.device.display()
        ))
    }
}

fn cpu_has_hardware_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

pub fn probe_kvm() -> KvmProbe {
    let device = kvm_device();
    let hardware_virtualization =
        cpu_has_hardware_virt(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&device);
    let error = match opened {
        Err(e) => Some(format!("cannot open {}: {e}", device.display())),
        Ok(file) => {
            // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an integer; on a
            // file that is not a KVM device the ioctl fails with ENOTTY and nothing is touched.
            let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
            if version == KVM_API_VERSION {
                None
            } else {
                Some(format!(
                    "{} is not a KVM device (KVM_GET_API_VERSION: {})",
                    device.display(),
                    if version < 0 {
                        std::io::Error::last_os_error().to_string()
                    } else {
                        version.to_string()
                    }
                ))
            }
        }
    };
    KvmProbe {
        device,
        usable: error.is_none(),
        error,
        hardware_virtualization,
    }
}

/// A backend that can actually run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Qemu,
    Builtin,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Qemu => "qemu",
            BackendKind::Builtin => "builtin",
        })
    }
}

/// Guest acceleration for the qemu backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendPick {
    pub kind: BackendKind,
    pub accel: Accel,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error(
        "the builtin VMM needs hardware KVM that can boot Linux, and {0}; set \"backend\": \"qemu\" or \"auto\" in settings.json"
    )]
    BuiltinUnavailable(String),
}

/// Which backend runs for `choice` on a host with `kvm`.
pub fn pick_backend(choice: BackendChoice, kvm: &KvmProbe) -> Result<BackendPick, PickError> {
    let accel = if kvm.can_boot_linux() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let why_accel = if kvm.can_boot_linux() {
        "hardware KVM can boot Linux, so qemu uses KVM".to_owned()
    } else if let Some(e) = &kvm.error {
        format!("{e}, so qemu emulates the guest with TCG")
    } else {
        format!(
            "{} works but the CPU has no vmx/svm (a software hypervisor that cannot boot Linux), \
             so qemu emulates the guest with TCG",
            kvm.device.display()
        )
    };
    let why_not_builtin = if let Some(e) = &kvm.error {
        e.clone()
    } else {
        format!(
            "the CPU has no vmx/svm ({} is a software hypervisor that cannot boot Linux)",
            kvm.device.display()
        )
    };
    match choice {
        BackendChoice::Builtin if kvm.can_boot_linux() => Ok(BackendPick {
            kind: BackendKind::Builtin,
            accel: Accel::Kvm,
            reason: "settings ask for the builtin VMM; hardware KVM can boot Linux".into(),
        }),
        BackendChoice::Builtin => Err(PickError::BuiltinUnavailable(why_not_builtin)),
        BackendChoice::Auto if kvm.can_boot_linux() => Ok(BackendPick {
            kind: BackendKind::Builtin,
            accel: Accel::Kvm,
            reason: "auto: hardware KVM can boot Linux, so the builtin VMM runs the guest".into(),
        }),
        BackendChoice::Qemu => Ok(BackendPick {
            kind: BackendKind::Qemu,
            accel,
            reason: format!("settings ask for qemu; {why_accel}"),
        }),
        BackendChoice::Auto => Ok(BackendPick {
            kind: BackendKind::Qemu,
            accel,
            reason: format!("auto: the builtin VMM needs hardware KVM; {why_accel}"),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{program} not found ({searched}); {fix}")]
pub struct MissingProgram {
    pub program: String,
    pub searched: String,
    pub fix: String,
}

/// Where the .deb puts the helper programs it ships for Berth alone.
pub const PACKAGE_BIN: &str = "/usr/lib/berth/bin";

/// Finds a helper program: the environment variable `env` names it exactly; otherwise PATH,
/// then `~/.cargo/bin` (where the project's setup cargo-installs tools), then [`PACKAGE_BIN`].
pub fn find_program(name: &str, env: &str, fix: &str) -> Result<PathBuf, MissingProgram> {
    let missing = |searched: String| MissingProgram {
        program: name.to_owned(),
        searched,
        fix: fix.to_owned(),
    };
    if let Some(path) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(missing(format!("{env}={}", path.display())))
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    // Programs the packages ship for Berth alone (vhost-device-vsock).
    dirs.push(PathBuf::from(PACKAGE_BIN));
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| missing(format!("not on PATH, in ~/.cargo/bin nor in {PACKAGE_BIN}")))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `berth` program that runs `berth vmm`: `BERTH_BIN`, else this process when it is
/// `berth`, else a `berth` beside it or on PATH.
pub fn berth_program() -> Result<PathBuf, MissingProgram> {
    if std::env::var_os("BERTH_BIN").is_none()
        && let Ok(me) = std::env::current_exe()
    {
        if me.file_name().is_some_and(|n| n == "berth") {
            return Ok(me);
        }
        if let Some(beside) = me.parent().map(|d| d.join("berth"))
            && is_executable(&beside)
        {
            return Ok(beside);
        }
    }
    find_program(
        "berth",
        "BERTH_BIN",
        "build it with `make build` or set BERTH_BIN",
    )
}

pub fn qemu_program() -> Result<PathBuf, MissingProgram> {
    find_program(
        "qemu-system-x86_64",
        "BERTH_QEMU",
        "install Debian's qemu-system-x86 (scripts/setup.sh does)",
    )
}

pub fn vhost_vsock_program() -> Result<PathBuf, MissingProgram> {
    find_program(
        "vhost-device-vsock",
        "BERTH_VHOST_VSOCK",
        "run `cargo install --locked --version 0.3.0 vhost-device-vsock` (scripts/setup.sh does)",
    )
}

pub fn virtiofsd_program() -> Result<PathBuf, MissingProgram> {
    find_program(
        "virtiofsd",
        "BERTH_VIRTIOFSD",
        "run `cargo install --locked --version 1.14.0 virtiofsd` (scripts/setup.sh does)",
    )
}

pub fn passt_program() -> Result<PathBuf, MissingProgram> {
    find_program(
        "passt",
        "BERTH_PASST",
        "install Debian's passt (scripts/setup.sh does)",
    )
}

/// The host's TSC frequency in kHz, for `tsc_early_khz=` under TCG (the calibration hangs
/// without it on microvm).
pub fn tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .filter(|mhz| *mhz > 100.0)
        .map_or(2_600_000, |mhz| (mhz * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(usable: bool, hw: bool) -> KvmProbe {
        KvmProbe {
            device: "/dev/kvm".into(),
            usable,
            error: (!usable).then(|| "cannot open /dev/kvm: Permission denied".to_owned()),
            hardware_virtualization: hw,
        }
    }

    #[test]
    fn auto_uses_tcg_without_hardware_virtualization() {
        let pick = pick_backend(BackendChoice::Auto, &probe(true, false)).unwrap();
        assert_eq!((pick.kind, pick.accel), (BackendKind::Qemu, Accel::Tcg));
        assert!(pick.reason.contains("no vmx/svm"), "{}", pick.reason);
        let pick = pick_backend(BackendChoice::Auto, &probe(true, true)).unwrap();
        assert_eq!((pick.kind, pick.accel), (BackendKind::Builtin, Accel::Kvm));
        let pick = pick_backend(BackendChoice::Qemu, &probe(true, true)).unwrap();
        assert_eq!((pick.kind, pick.accel), (BackendKind::Qemu, Accel::Kvm));
        let pick = pick_backend(BackendChoice::Qemu, &probe(false, true)).unwrap();
        assert_eq!(pick.accel, Accel::Tcg);
        assert!(pick.reason.contains("Permission denied"));
        let pick = pick_backend(BackendChoice::Builtin, &probe(true, true)).unwrap();
        assert_eq!(pick.kind, BackendKind::Builtin);
        let err = pick_backend(BackendChoice::Builtin, &probe(true, false)).unwrap_err();
        assert!(err.to_string().contains("no vmx/svm"), "{err}");
    }

    #[test]
    fn cpu_flags() {
        assert!(cpu_has_hardware_virt("flags\t\t: fpu vmx sse\n"));
        assert!(!cpu_has_hardware_virt("flags\t\t: fpu hypervisor sse\n"));
    }

    #[test]
    fn a_regular_file_is_not_kvm() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        // SAFETY: setting an environment variable in a single-threaded test before any reader.
        unsafe { std::env::set_var("BERTH_KVM_DEVICE", tmp.path()) };
        let p = probe_kvm();
        // SAFETY: as above.
        unsafe { std::env::remove_var("BERTH_KVM_DEVICE") };
        assert!(!p.usable);
        assert!(p.error.as_deref().unwrap().contains("not a KVM device"));
        assert!(p.fix().unwrap().contains("usermod"));
    }
}
