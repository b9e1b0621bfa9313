//! Docker's default mounts, user tmpfs mounts and bind mounts (volumes, host paths).

use super::{ContainerConfig, DEFAULT_SHM_SIZE, Mount, Result, SpecError, clean_path};

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: dest.to_string(),
        kind: kind.to_string(),
        source: source.to_string(),
        options: options.iter().map(|o| o.to_string()).collect(),
    }
}

/// Formats a byte count for a tmpfs `size=` option, in KiB when exact.
fn tmpfs_size(bytes: i64) -> String {
    if bytes % 1024 == 0 {
        format!("{}k", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

pub(super) fn build_mounts(cfg: &ContainerConfig) -> Result<Vec<Mount>> {
    if cfg.shm_size < 0 {
        return Err(SpecError::InvalidResource {
            field: "shm_size",
            value: cfg.shm_size,
            reason: "it must not be negative",
        });
    }
    let shm_bytes = if cfg.shm_size == 0 {
        DEFAULT_SHM_SIZE
    } else {
        cfg.shm_size
    };
    let shm_size = format!("size={}", tmpfs_size(shm_bytes));
    let sys_opts: &[&str] = if cfg.privileged {
        &["rw", "nosuid", "noexec", "nodev"]
    } else {
        &["ro", "nosuid", "noexec", "nodev"]
    };
    // "cgroup" (not "cgroup2") is what moby writes: crun then mounts cgroup2 on a
    // unified host and falls back to a bind mount if the fresh mount is refused.
    let cgroup_opts: &[&str] = if cfg.privileged {
        &["rw", "nosuid", "noexec", "nodev"]
    } else {
        &["ro", "nosuid", "noexec", "nodev"]
    };
    let defaults = vec![
        mount(
            "/proc",
            "proc",
            "proc",
            &["rw", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["rw", "nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "rw",
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount("/sys", "sysfs", "sysfs", sys_opts),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_opts),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["rw", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["rw", "nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
    ];

    let mut user_mounts = Vec::with_capacity(cfg.tmpfs.len());
    for (path, options) in &cfg.tmpfs {
        let m = parse_tmpfs(path, options)?;
        if user_mounts
            .iter()
            .any(|u: &Mount| u.destination == m.destination)
        {
            return Err(SpecError::InvalidTmpfs {
                path: path.clone(),
                reason: format!("duplicate mount point {}", m.destination),
            });
        }
        user_mounts.push(m);
    }

    for b in &cfg.binds {
        let dest = clean_path(&b.destination);
        if !b.source.starts_with('/') || !dest.starts_with('/') || dest == "/" {
            return Err(SpecError::InvalidBind {
                path: b.destination.clone(),
                reason: "the source and the mount point must be absolute, and not /".into(),
            });
        }
        if user_mounts.iter().any(|u| u.destination == dest) {
            return Err(SpecError::InvalidBind {
                path: b.destination.clone(),
                reason: format!("duplicate mount point {dest}"),
            });
        }
        let propagation = if b.propagation.is_empty() {
            "rprivate"
        } else {
            b.propagation.as_str()
        };
        let mut options = vec!["rbind".to_string(), propagation.to_string()];
        if b.readonly {
            options.push("ro".into());
        }
        // Host files: a setuid program or a device node there gives nothing in here.
        if b.source.starts_with(crate::containers::binds::STAGING_DIR) {
            options.extend(["nosuid".into(), "nodev".into()]);
        }
        user_mounts.push(Mount {
            destination: dest,
            kind: "bind".into(),
            source: b.source.clone(),
            options,
        });
    }
    // Parents before children, as dockerd sorts mounts, so a mount inside another lands on it.
    user_mounts.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());

    // As dockerd: a user mount replaces a default mount at the same place, and a
    // user mount on /dev also drops the default mounts below /dev.
    let user_dev = user_mounts.iter().any(|m| m.destination == "/dev");
    let mut mounts: Vec<Mount> = defaults
        .into_iter()
        .filter(|d| !user_mounts.iter().any(|u| u.destination == d.destination))
        .filter(|d| !(user_dev && d.destination.starts_with("/dev/")))
        .collect();
    mounts.extend(user_mounts);
    // /etc/hosts, /etc/resolv.conf and /etc/hostname, written per container, as dockerd
    // binds them (writable, like dockerd's, even on a read-only rootfs).
    for (target, source) in &cfg.etc_files {
        mounts.push(Mount {
            destination: target.clone(),
            kind: "bind".into(),
            source: source.clone(),
            options: vec!["rbind".into(), "rprivate".into()],
        });
    }
    Ok(mounts)
}

/// Which options override each other in a tmpfs option list.
fn tmpfs_option_group(opt: &str) -> Option<&'static str> {
    Some(match opt {
        "rw" | "ro" => "rw",
        "exec" | "noexec" => "exec",
        "suid" | "nosuid" => "suid",
        "dev" | "nodev" => "dev",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "atime" | "noatime" => "atime",
        "diratime" | "nodiratime" => "diratime",
        "relatime" | "norelatime" | "strictatime" | "nostrictatime" => "relatime",
        "mand" | "nomand" => "mand",
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
        | "runbindable" => "propagation",
        "tmpcopyup" | "notmpcopyup" => "tmpcopyup",
        "noswap" => "noswap",
        _ => return None,
    })
}

/// Parses a tmpfs size such as `65536`, `64k`, `64m`, `1g` or `50%`.
fn valid_tmpfs_size(v: &str) -> bool {
    let digits = v
        .strip_suffix(['k', 'K', 'm', 'M', 'g', 'G', '%'])
        .unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn parse_tmpfs(path: &str, options: &str) -> Result<Mount> {
    let bad = |reason: String| SpecError::InvalidTmpfs {
        path: path.to_string(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(bad("the mount point must be an absolute path".into()));
    }
    if path.contains('\0') {
        return Err(bad("the mount point contains a NUL byte".into()));
    }
    let dest = clean_path(path);
    if dest == "/" {
        return Err(bad("cannot mount a tmpfs over /".into()));
    }

    // (group, option); later options replace earlier ones of the same group.
    let mut merged: Vec<(String, String)> = Vec::new();
    let defaults = ["nosuid", "nodev", "noexec", "rprivate"];
    let user = options.split(',').map(str::trim).filter(|o| !o.is_empty());
    for (i, opt) in defaults.into_iter().chain(user).enumerate() {
        let user_supplied = i >= defaults.len();
        let group = if let Some((key, value)) = opt.split_once('=') {
            let ok = match key {
                "size" | "nr_blocks" | "nr_inodes" => valid_tmpfs_size(value),
                "mode" => {
                    !value.is_empty()
                        && value.len() <= 5
                        && u32::from_str_radix(value, 8).is_ok_and(|m| m <= 0o7777)
                }
                "uid" | "gid" => value.parse::<u32>().is_ok(),
                "huge" => matches!(
                    value,
                    "never" | "always" | "within_size" | "advise" | "deny" | "force"
                ),
                "mpol" => !value.is_empty(),
                _ => return Err(bad(format!("unknown tmpfs option {opt:?}"))),
            };
            if !ok {
                return Err(bad(format!("invalid value in tmpfs option {opt:?}")));
            }
            key.to_string()
        } else if let Some(g) = tmpfs_option_group(opt) {
            g.to_string()
        } else {
            debug_assert!(user_supplied);
            return Err(bad(format!("unknown tmpfs option {opt:?}")));
        };
        merged.retain(|(g, _)| *g != group);
        merged.push((group, opt.to_string()));
    }
    Ok(Mount {
        destination: dest,
        kind: "tmpfs".to_string(),
        source: "tmpfs".to_string(),
        options: merged.into_iter().map(|(_, o)| o).collect(),
    })
}
