//! cgroup resources, the device cgroup allow-list and host devices.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{
    CPU_PERIOD_US, ContainerConfig, Cpu, Device, DeviceCgroup, MIN_MEMORY_LIMIT, Memory, Pids,
    Resources, Result, SpecError,
};

pub(super) fn build_resources(cfg: &ContainerConfig) -> Result<Resources> {
    let bad = |field, value, reason| SpecError::InvalidResource {
        field,
        value,
        reason,
    };
    let memory = if cfg.memory < 0 {
        return Err(bad("memory", cfg.memory, "it must not be negative"));
    } else if cfg.memory == 0 {
        if cfg.memory_swap > 0 {
            return Err(bad(
                "memory_swap",
                cfg.memory_swap,
                "a memory limit is required when setting a memory+swap limit",
            ));
        }
        None
    } else {
        if cfg.memory < MIN_MEMORY_LIMIT {
            return Err(bad(
                "memory",
                cfg.memory,
                "the minimum memory limit is 6 MiB",
            ));
        }
        let swap = match cfg.memory_swap {
            -1 => -1,
            0 => cfg.memory.saturating_mul(2),
            s if s >= cfg.memory => s,
            s if s > 0 => {
                return Err(bad(
                    "memory_swap",
                    s,
                    "the memory+swap limit must be at least the memory limit",
                ));
            }
            s => return Err(bad("memory_swap", s, "use -1 for unlimited swap")),
        };
        Some(Memory {
            limit: Some(cfg.memory),
            swap: Some(swap),
        })
    };

    let mut cpu = Cpu::default();
    if cfg.nano_cpus < 0 {
        return Err(bad("nano_cpus", cfg.nano_cpus, "it must not be negative"));
    }
    if cfg.nano_cpus > 0 {
        if cfg.nano_cpus < 10_000_000 {
            return Err(bad("nano_cpus", cfg.nano_cpus, "the minimum is 0.01 CPUs"));
        }
        let quota = (i128::from(cfg.nano_cpus) * i128::from(CPU_PERIOD_US) / 1_000_000_000) as i64;
        cpu.quota = Some(quota);
        cpu.period = Some(CPU_PERIOD_US);
    }
    if cfg.cpu_shares < 0 {
        return Err(bad("cpu_shares", cfg.cpu_shares, "it must not be negative"));
    }
    if cfg.cpu_shares > 0 {
        // The kernel's (and runc's) accepted range for cpu.shares.
        cpu.shares = Some(cfg.cpu_shares.clamp(2, 262_144) as u64);
    }
    let cpu = (cpu != Cpu::default()).then_some(cpu);

    let pids = (cfg.pids_limit > 0).then_some(Pids {
        limit: cfg.pids_limit,
    });

    Ok(Resources {
        devices: device_rules(cfg.privileged),
        memory,
        cpu,
        pids,
    })
}

fn device_rules(privileged: bool) -> Vec<DeviceCgroup> {
    fn rule(
        allow: bool,
        kind: Option<&str>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceCgroup {
        DeviceCgroup {
            allow,
            kind: kind.map(str::to_string),
            major,
            minor,
            access: Some(access.to_string()),
        }
    }
    if privileged {
        return vec![rule(true, None, None, None, "rwm")];
    }
    let c = Some("c");
    vec![
        rule(false, None, None, None, "rwm"),
        // mknod of any node is allowed; using it needs one of the rules below.
        rule(true, c, None, None, "m"),
        rule(true, Some("b"), None, None, "m"),
        rule(true, c, Some(1), Some(3), "rwm"), // null
        rule(true, c, Some(1), Some(5), "rwm"), // zero
        rule(true, c, Some(1), Some(7), "rwm"), // full
        rule(true, c, Some(1), Some(8), "rwm"), // random
        rule(true, c, Some(1), Some(9), "rwm"), // urandom
        rule(true, c, Some(5), Some(0), "rwm"), // tty
        rule(true, c, Some(5), Some(1), "rwm"), // console
        rule(true, c, Some(5), Some(2), "rwm"), // ptmx
        rule(true, c, Some(136), None, "rwm"),  // pts/*
    ]
}

/// Splits a Linux `dev_t` into (major, minor) as glibc's `major()`/`minor()` do.
pub(super) fn dev_major_minor(dev: u64) -> (i64, i64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    (major as i64, minor as i64)
}

/// The host's device nodes, for privileged containers (as dockerd does). Skips the
/// directories and nodes the runtime sets up itself.
pub(crate) fn host_devices(dev_dir: &Path) -> Vec<Device> {
    fn walk(dir: &Path, rel: &str, depth: usize, out: &mut Vec<Device>) {
        if depth > 8 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(md) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let ft = md.file_type();
            let path = format!("{rel}/{name}");
            if ft.is_dir() {
                if rel == "/dev"
                    && matches!(
                        name.as_str(),
                        "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
                    )
                {
                    continue;
                }
                walk(&entry.path(), &path, depth + 1, out);
            } else if ft.is_char_device() || ft.is_block_device() {
                if rel == "/dev" && matches!(name.as_str(), "console" | "ptmx") {
                    continue;
                }
                let (major, minor) = dev_major_minor(md.rdev());
                out.push(Device {
                    kind: if ft.is_char_device() { "c" } else { "b" }.to_string(),
                    path,
                    major,
                    minor,
                    file_mode: Some(md.mode() & 0o7777),
                    uid: Some(md.uid()),
                    gid: Some(md.gid()),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(dev_dir, "/dev", 0, &mut out);
    out
}
