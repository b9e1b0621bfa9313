//! `berth vmm`: the builtin VMM as its own process, one per VM, as the engine's `builtin`
//! backend runs it (the way Firecracker runs beside its orchestrator). SIGTERM and SIGINT end
//! the VM; the exit status says how the guest ended (see [`berth_vmm::ExitReason`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_vmm::vmm::{Boot, DiskConfig, FsConfig, NetConfig, SerialConfig, VsockConfig};
use berth_vmm::{ExitReason, Vmm, VmmConfig};

#[derive(clap::Args)]
pub struct VmmArgs {
    /// The Linux kernel (bzImage or ELF vmlinux).
    #[arg(long, required_unless_present = "test_guest")]
    kernel: Option<PathBuf>,
    #[arg(long)]
    initrd: Option<PathBuf>,
    #[arg(
        long,
        default_value = "console=ttyS0 panic=-1 reboot=t 8250.nr_uarts=1"
    )]
    cmdline: String,
    /// A flat real-mode test guest instead of Linux (loaded at 0x1000).
    #[arg(long, conflicts_with = "kernel")]
    test_guest: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    #[arg(long, default_value_t = 512)]
    memory_mib: u32,
    /// A raw disk image for virtio-blk (locked exclusively while the VM runs).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// The hybrid-vsock Unix socket (`CONNECT <port>` in; `<socket>_<port>` for the guest's
    /// connections out).
    #[arg(long)]
    vsock_uds: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    guest_cid: u64,
    /// A NIC whose frames go to this Unix socket in qemu's `-netdev stream` framing (passt's
    /// `--socket`).
    #[arg(long)]
    net_socket: Option<PathBuf>,
    /// A virtio-fs device: TAG=SOCKET, the mount tag and the vhost-user socket of its
    /// backend (virtiofsd); repeatable.
    #[arg(long = "fs", value_parser = parse_fs)]
    fs: Vec<(String, PathBuf)>,
    /// The NIC's MAC address.
    #[arg(long, default_value = "5a:94:ef:e4:0c:ee", value_parser = parse_mac)]
    mac: [u8; 6],
    /// Append the serial console to this file.
    #[arg(long)]
    serial_log: Option<PathBuf>,
    /// Copy the serial console to stdout.
    #[arg(long)]
    serial_stdout: bool,
}

/// `TAG=SOCKET`.
fn parse_fs(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((tag, socket)) if !tag.is_empty() && !socket.is_empty() => {
            Ok((tag.to_owned(), PathBuf::from(socket)))
        }
        _ => Err(format!("{s:?} is not TAG=SOCKET")),
    }
}

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address (like 5a:94:ef:e4:0c:ee)");
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

pub fn config(args: &VmmArgs) -> Result<VmmConfig> {
    let boot = match (&args.test_guest, &args.kernel) {
        (Some(image), _) => Boot::TestGuest {
            image: std::fs::read(image)
                .with_context(|| format!("reading the test guest {}", image.display()))?,
            load_addr: 0x1000,
        },
        (None, Some(kernel)) => Boot::Linux {
            kernel: kernel.clone(),
            initrd: args.initrd.clone(),
            cmdline: args.cmdline.clone(),
        },
        (None, None) => anyhow::bail!("--kernel or --test-guest is required"),
    };
    Ok(VmmConfig {
        vcpus: args.cpus,
        memory_mib: args.memory_mib,
        boot,
        serial: SerialConfig {
            log: args.serial_log.clone(),
            stdout: args.serial_stdout,
        },
        rng: true,
        disk: args.disk.clone().map(|path| DiskConfig {
            path,
            read_only: false,
        }),
        vsock: args.vsock_uds.clone().map(|uds_path| VsockConfig {
            guest_cid: args.guest_cid,
            uds_path,
        }),
        net: args.net_socket.clone().map(|socket| NetConfig {
            socket,
            mac: args.mac,
        }),
        fs: args
            .fs
            .iter()
            .map(|(tag, socket)| FsConfig {
                tag: tag.clone(),
                socket: socket.clone(),
            })
            .collect(),
    })
}

/// Runs the VM to its end on this thread; signals end it from a watcher thread.
pub fn run(args: VmmArgs) -> Result<ExitCode> {
    let vmm = Vmm::new(config(&args)?).context("building the VM")?;
    let exit = vmm.exit_signal();
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.add(nix::sys::signal::Signal::SIGINT);
    // Blocked here (and so in the vCPU threads created after), taken by the watcher.
    signals.thread_block().context("blocking signals")?;
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            exit.request(ExitReason::Stopped);
        }
    });
    let reason = vmm.run().context("running the VM")?;
    tracing::info!(?reason, "the VM ended");
    Ok(ExitCode::from(reason.exit_code().clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_and_junk_is_refused() {
        assert_eq!(
            parse_mac("5a:94:ef:e4:0c:ee").unwrap(),
            [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee]
        );
        for bad in [
            "",
            "5a:94:ef:e4:0c",
            "5a:94:ef:e4:0c:zz",
            "5a:94:ef:e4:0c:eee",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
