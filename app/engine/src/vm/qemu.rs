//! The `qemu` backend: Debian's `qemu-system-x86_64 -M microvm` (KVM where it can boot Linux,
//! else TCG), memfd shared guest memory, `vhost-device-vsock` giving the hybrid-vsock socket,
//! qemu's virtio-blk on the sparse data disk with discard passed through, and a virtio-net NIC
//! on passt's socket ([`super::net`]), and one `virtiofsd` per shared host directory
//! ([`crate::shares`]) behind a `vhost-user-fs-device`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::{RunningVm, VmBackend, VmConfig, VmError, ensure_data_disk};
use crate::host::{self, Accel, BackendKind};

/// The guest's vsock context id. One VM per vhost-device-vsock, so any fixed id works.
pub const GUEST_CID: u32 = 3;

pub struct QemuBackend;

pub(super) fn log_file(path: &Path) -> Result<std::fs::File, VmError> {
    crate::paths::private_file_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(VmError::io(format!("opening {}", path.display())))
}

/// Empties (or makes, 0600) the log at `path`.
pub(super) fn truncate(path: &Path) -> std::io::Result<()> {
    crate::paths::private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map(drop)
}

/// The kernel command line for `config`.
pub fn kernel_cmdline(config: &VmConfig) -> String {
    let mut words = vec![
        "console=ttyS0".to_owned(),
        "panic=-1".to_owned(),
        "reboot=t".to_owned(),
        "quiet".to_owned(),
        "8250.nr_uarts=1".to_owned(),
    ];
    if config.accel == Accel::Tcg {
        words.push(format!("tsc_early_khz={}", host::tsc_khz()));
    }
    words.extend(config.extra_cmdline.iter().cloned());
    words.extend(crate::shares::cmdline_words(&config.shares));
    words.join(" ")
}

/// qemu's arguments for `config`.
pub fn qemu_args(config: &VmConfig) -> Vec<String> {
    let p = &config.paths;
    let mem = config.memory_mib;
    let mut args: Vec<String> = vec![
        "-M".into(),
        "microvm,memory-backend=mem0".into(),
        "-accel".into(),
        match config.accel {
            Accel::Kvm => "kvm".into(),
            Accel::Tcg => "tcg".into(),
        },
        "-cpu".into(),
        match config.accel {
            Accel::Kvm => "host".into(),
            Accel::Tcg => "max".into(),
        },
        "-m".into(),
        format!("{mem}M"),
        "-smp".into(),
        config.cpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-object".into(),
        format!("memory-backend-memfd,id=mem0,size={mem}M,share=on"),
        "-chardev".into(),
        format!("file,id=ser0,path={}", p.serial_log().display()),
        "-serial".into(),
        "chardev:ser0".into(),
        "-kernel".into(),
        config.image.vmlinuz.display().to_string(),
        "-initrd".into(),
        config.image.initramfs.display().to_string(),
        "-append".into(),
        kernel_cmdline(config),
        "-chardev".into(),
        format!("socket,id=vsock0,path={}", p.vhost_vsock_socket().display()),
        "-device".into(),
        "vhost-user-vsock-device,chardev=vsock0".into(),
        "-drive".into(),
        format!(
            "id=data,file={},format=raw,if=none,discard=unmap,detect-zeroes=unmap,cache=writeback,aio=threads",
            p.data_disk().display()
        ),
        "-device".into(),
        "virtio-blk-device,drive=data".into(),
        "-netdev".into(),
        format!(
            "stream,id=net0,server=off,addr.type=unix,addr.path={}",
            p.passt_socket().display()
        ),
        "-device".into(),
        format!(
            "virtio-net-device,netdev=net0,mac={}",
            super::net::GUEST_MAC
        ),
    ];
    for i in 0..config.shares.len() {
        args.push("-chardev".into());
        args.push(format!(
            "socket,id=fs{i},path={}",
            p.virtiofs_socket(i).display()
        ));
        args.push("-device".into());
        args.push(format!(
            "vhost-user-fs-device,chardev=fs{i},tag={}",
            crate::shares::tag(i)
        ));
    }
    args.shrink_to_fit();
    args
}

/// Starts `program` with `args`, its output appended to the VMM log. It dies with its handle,
/// and with this process however it ends (SIGKILL on the parent's death), so no VM or helper
/// outlives the engine or the app.
pub(super) fn spawn_logged<I, S>(
    program: &Path,
    args: I,
    vmm_log: &Path,
) -> Result<tokio::process::Child, VmError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    spawn(program, &mut logged_command(program, args, vmm_log)?)
}

/// The command [`spawn_logged`] runs, for callers that set more up in the child first.
pub(super) fn logged_command<I, S>(
    program: &Path,
    args: I,
    vmm_log: &Path,
) -> Result<Command, VmError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log_file(vmm_log)?)
        .stderr(log_file(vmm_log)?)
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl and
    // getppid, which are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the signal was armed: do not start at all.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the engine exited"));
            }
            Ok(())
        });
    }
    Ok(cmd)
}

pub(super) fn spawn(program: &Path, cmd: &mut Command) -> Result<tokio::process::Child, VmError> {
    cmd.spawn().map_err(|e| VmError::Spawn {
        what: program.display().to_string(),
        detail: e.to_string(),
    })
}

/// Waits up to 10 s for helper `what` to create `socket`; its exit or the deadline is an error
/// carrying the tail of the VMM log.
pub(super) fn wait_for_socket(
    child: &mut tokio::process::Child,
    socket: &Path,
    what: &str,
    vmm_log: &Path,
) -> Result<(), VmError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmError::Spawn {
                what: what.into(),
                detail: format!(
                    "exited with {status}: {}",
                    super::log_tail(Path::new("/nonexistent"), vmm_log, 5).trim()
                ),
            });
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(VmError::Spawn {
                what: what.into(),
                detail: "its socket did not appear within 10 s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub(super) fn remove_stale_sockets(config: &VmConfig) {
    let p = &config.paths;
    let _ = std::fs::remove_file(p.vhost_vsock_socket());
    let _ = std::fs::remove_file(p.passt_socket());
    for i in 0..8 {
        let _ = std::fs::remove_file(p.virtiofs_socket(i));
    }
    let vsock = p.vsock_socket();
    let _ = std::fs::remove_file(&vsock);
    let prefix = format!(
        "{}_",
        vsock.file_name().unwrap_or_default().to_string_lossy()
    );
    if let Ok(entries) = std::fs::read_dir(&p.run_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl VmBackend for QemuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    fn start(&self, config: &VmConfig) -> Result<RunningVm, VmError> {
        let qemu = host::qemu_program()?;
        let vhost = host::vhost_vsock_program()?;
        let p = &config.paths;
        ensure_data_disk(&p.data_disk(), config.disk_gib)?;
        remove_stale_sockets(config);
        truncate(&p.serial_log()).map_err(VmError::io("truncating the serial log"))?;
        truncate(&p.vmm_log()).map_err(VmError::io("truncating the vmm log"))?;
        let started = Instant::now();

        let vhost_args: Vec<std::ffi::OsString> = vec![
            "--guest-cid".into(),
            GUEST_CID.to_string().into(),
            "--socket".into(),
            p.vhost_vsock_socket().into(),
            "--uds-path".into(),
            p.vsock_socket().into(),
        ];
        let mut daemon = spawn_logged(&vhost, vhost_args, &p.vmm_log())?;
        // qemu connects to the daemon's socket at once: wait until it exists.
        wait_for_socket(
            &mut daemon,
            &p.vhost_vsock_socket(),
            "vhost-device-vsock",
            &p.vmm_log(),
        )?;

        let passt = match super::net::spawn_passt(p) {
            Ok(passt) => passt,
            Err(e) => {
                let _ = daemon.start_kill();
                return Err(e);
            }
        };

        let mut helpers = vec![daemon, passt];
        let shares = super::virtiofs::spawn_all(config, &mut helpers)?;

        let vmm = spawn_logged(&qemu, qemu_args(config), &p.vmm_log())?;
        Ok(RunningVm {
            vmm,
            helpers,
            shares,
            vsock_socket: p.vsock_socket(),
            serial_log: p.serial_log(),
            vmm_log: p.vmm_log(),
            started,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;
    use crate::vm::GuestImage;

    fn config(accel: Accel) -> VmConfig {
        VmConfig {
            paths: Paths::new("/tmp/bh"),
            image: GuestImage {
                vmlinuz: "/img/vmlinuz".into(),
                initramfs: "/img/initramfs".into(),
            },
            cpus: 2,
            memory_mib: 1024,
            disk_gib: 64,
            accel,
            extra_cmdline: vec!["berth.dns=10.0.0.9".into()],
            shares: vec![],
        }
    }

    #[test]
    fn tcg_gets_the_tsc_frequency_and_kvm_does_not() {
        let tcg = kernel_cmdline(&config(Accel::Tcg));
        assert!(tcg.contains("tsc_early_khz=") && tcg.ends_with("berth.dns=10.0.0.9"));
        assert!(!kernel_cmdline(&config(Accel::Kvm)).contains("tsc_early_khz"));
    }

    #[test]
    fn shared_memfd_memory_and_discard_on_the_data_disk() {
        let args = qemu_args(&config(Accel::Tcg)).join(" ");
        assert!(args.contains("memory-backend-memfd,id=mem0,size=1024M,share=on"));
        assert!(args.contains("file=/tmp/bh/data.img,format=raw"));
        assert!(args.contains("discard=unmap"));
        assert!(args.contains("-accel tcg"));
        assert!(args.contains("path=/tmp/bh/run/vhost-vsock.sock"));
        assert!(args.contains("addr.path=/tmp/bh/run/passt.sock"));
        assert!(args.contains("virtio-net-device,netdev=net0"));
    }
}
