//! The `builtin` backend: Berth's own VMM (`app/vmm`) in its own process, `berth vmm`, with the
//! same guest image, data disk, hybrid-vsock socket, passt NIC and virtiofsd shares as the qemu
//! backend. The VMM serves the vsock socket itself; passt and one virtiofsd per shared
//! directory are its helpers. Chosen where hardware KVM can boot
//! Linux (see [`crate::host::pick_backend`]).

use std::time::Instant;

use super::qemu::{GUEST_CID, kernel_cmdline, remove_stale_sockets, spawn_logged, truncate};
use super::{RunningVm, VmBackend, VmConfig, VmError, ensure_data_disk};
use crate::host::{self, BackendKind};

pub struct BuiltinBackend;

/// `berth vmm`'s arguments for `config`, with a virtio-fs device for each of `shares` (the
/// ones whose virtiofsd runs).
pub fn vmm_args(config: &VmConfig, shares: &[std::path::PathBuf]) -> Vec<String> {
    let p = &config.paths;
    let path = |p: &std::path::Path| p.display().to_string();
    let mut args: Vec<String> = vec![
        "vmm".into(),
        "--kernel".into(),
        path(&config.image.vmlinuz),
        "--initrd".into(),
        path(&config.image.initramfs),
        "--cmdline".into(),
        kernel_cmdline(config),
        "--cpus".into(),
        config.cpus.min(u32::from(u8::MAX)).to_string(),
        "--memory-mib".into(),
        config.memory_mib.to_string(),
        "--disk".into(),
        path(&p.data_disk()),
        "--vsock-uds".into(),
        path(&p.vsock_socket()),
        "--guest-cid".into(),
        GUEST_CID.to_string(),
        "--serial-log".into(),
        path(&p.serial_log()),
        "--net-socket".into(),
        path(&p.passt_socket()),
        "--mac".into(),
        super::net::GUEST_MAC.into(),
    ];
    for i in 0..shares.len() {
        args.push("--fs".into());
        args.push(format!(
            "{}={}",
            crate::shares::tag(i),
            path(&p.virtiofs_socket(i))
        ));
    }
    args
}

impl VmBackend for BuiltinBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Builtin
    }

    fn start(&self, config: &VmConfig) -> Result<RunningVm, VmError> {
        let berth = host::berth_program()?;
        let p = &config.paths;
        ensure_data_disk(&p.data_disk(), config.disk_gib)?;
        remove_stale_sockets(config);
        truncate(&p.serial_log()).map_err(VmError::io("truncating the serial log"))?;
        truncate(&p.vmm_log()).map_err(VmError::io("truncating the vmm log"))?;
        let started = Instant::now();
        // The VMM connects to passt as it builds the NIC: passt's socket must be there first.
        let passt = super::net::spawn_passt(p)?;
        let mut helpers = vec![passt];
        // The VMM connects to each virtiofsd as it builds the device: they must serve first.
        let shares = super::virtiofs::spawn_all(config, &mut helpers)?;
        let vmm =
            spawn_logged(&berth, vmm_args(config, &shares), &p.vmm_log()).inspect_err(|_| {
                for h in &mut helpers {
                    let _ = h.start_kill();
                }
            })?;
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
    use crate::host::Accel;
    use crate::paths::Paths;
    use crate::vm::GuestImage;

    #[test]
    fn runs_berth_vmm_on_the_same_image_disk_and_socket() {
        let config = VmConfig {
            paths: Paths::new("/tmp/bh"),
            image: GuestImage {
                vmlinuz: "/img/vmlinuz".into(),
                initramfs: "/img/initramfs".into(),
            },
            cpus: 2,
            memory_mib: 1024,
            disk_gib: 64,
            accel: Accel::Kvm,
            extra_cmdline: vec!["berth.dns=10.0.0.9".into()],
            shares: vec![],
        };
        let args = vmm_args(&config, &["/home/u".into(), "/tmp".into()]).join(" ");
        assert!(args.starts_with("vmm --kernel /img/vmlinuz --initrd /img/initramfs"));
        assert!(args.contains("--disk /tmp/bh/data.img"));
        assert!(args.contains("--vsock-uds /tmp/bh/run/vm.vsock"));
        assert!(args.contains("berth.dns=10.0.0.9"));
        assert!(
            args.contains("--fs berth0=/tmp/bh/run/virtiofs-0.sock --fs berth1="),
            "{args}"
        );
        assert!(args.contains("--net-socket /tmp/bh/run/passt.sock --mac 5a:94:ef:e4:0c:ee"));
        assert!(
            !args.contains("tsc_early_khz"),
            "hardware KVM needs no TSC hint"
        );
    }
}
