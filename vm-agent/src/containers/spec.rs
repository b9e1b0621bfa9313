//! OCI runtime `config.json` generation for Berth containers.
//!
//! This module owns the translation of a Docker-style container configuration
//! ([`ContainerConfig`]) into the OCI runtime spec that the guest agent hands to
//! `crun`: the process (args, environment, user, capabilities, rlimits), the root
//! filesystem entry, Docker's default mounts plus user tmpfs and bind mounts, namespaces,
//! masked and read-only paths, the device cgroup allow-list, resource limits and
//! Docker's default seccomp filter (`seccomp` submodule). It also resolves Docker `User`
//! strings against the container's own `/etc/passwd` and `/etc/group` (`user`),
//! and writes `config.json` atomically.
//!
//! It does not prepare the rootfs, networking, volume contents or cgroups; those belong to
//! the caller. The serde structs below are a deliberately small subset of the OCI
//! runtime spec (`ociVersion` 1.0.2), with the exact camelCase field names crun reads.

mod mounts;
mod oci;
mod resources;
mod seccomp;
#[cfg(test)]
mod tests;
mod user;

#[cfg(test)]
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use oci::*;
pub use user::resolve_user;

use mounts::build_mounts;
use resources::{build_resources, host_devices};

/// The OCI runtime spec version written into `config.json`.
pub const OCI_VERSION: &str = "1.0.2";

/// Docker's default `PATH` for Linux containers, added when the image sets none.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default `/dev/shm` size: 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// Docker's minimum memory limit (`docker run -m` below this is rejected).
pub const MIN_MEMORY_LIMIT: i64 = 6 * 1024 * 1024;

/// The CFS period used for `nano_cpus`, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Paths masked in every unprivileged container (moby's current default list).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only in every unprivileged container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Every capability name Linux defines, indexed by capability number (0..=40,
/// up to `CAP_CHECKPOINT_RESTORE`, Linux 5.9).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's 14 default capabilities, in moby's order.
pub fn default_capabilities() -> Vec<&'static str> {
    vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
}

/// A Docker-style container configuration, already merged from the image config and
/// the create request by the caller.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// Entrypoint + cmd, already resolved; must be non-empty.
    pub args: Vec<String>,
    /// `K=V` entries; a bare `K` removes a default variable (Docker semantics).
    pub env: Vec<String>,
    /// `""` means `/`; a relative path is taken relative to `/`.
    pub working_dir: String,
    /// Docker's `User`: `""`, `name`, `uid`, `name:group`, `uid:gid`, ...
    pub user: String,
    /// `GroupAdd`: more groups for the process, by gid or by name in the image's `/etc/group`.
    pub group_add: Vec<String>,
    pub hostname: String,
    pub tty: bool,
    /// The terminal's (height, width) at start, for a TTY.
    pub console_size: Option<(u32, u32)>,
    pub privileged: bool,
    /// `NET_ADMIN`, `CAP_NET_ADMIN` (any case), or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub readonly_rootfs: bool,
    /// `no-new-privileges[:|=bool]`, `seccomp[:|=]unconfined`,
    /// `systempaths[:|=]unconfined`; `apparmor=unconfined` and `label=disable` are
    /// accepted as no-ops (the guest enforces neither); anything else is an error.
    pub security_opt: Vec<String>,
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    /// Memory + swap in bytes; 0 = twice `memory`, -1 = unlimited swap.
    pub memory_swap: i64,
    /// 1e9 = one CPU.
    pub nano_cpus: i64,
    /// cgroup v1 shares (crun converts to cgroup2 weight).
    pub cpu_shares: i64,
    /// 0 or negative = unlimited.
    pub pids_limit: i64,
    /// (path, options like `rw,size=64m,mode=1777`).
    pub tmpfs: Vec<(String, String)>,
    /// Bytes; 0 = 64 MiB.
    pub shm_size: i64,
    /// (name like `nofile`, soft, hard); -1 = unlimited.
    pub ulimits: Vec<(String, i64, i64)>,
    /// Prefix args with `[init_path, "--"]`.
    pub init: bool,
    pub init_path: String,
    pub oom_score_adj: Option<i32>,
    /// The network namespace: `None` a new one, `Some("")` the VM's own (network mode host),
    /// else the path of one to join.
    pub netns: Option<String>,
    /// The VM's own PID, IPC and UTS namespaces (`--pid host`, `--ipc host`, `--uts host`)
    /// instead of new ones.
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_uts: bool,
    /// Files bound over the rootfs's: (target in the container, source in the VM).
    pub etc_files: Vec<(String, String)>,
    /// Volumes and host directories bound into the container.
    pub binds: Vec<BindMount>,
}

/// A directory of the VM bound into the container (a volume's data, a shared host path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BindMount {
    /// The path in the VM.
    pub source: String,
    /// The path in the container.
    pub destination: String,
    pub readonly: bool,
    /// `rprivate`, `rshared`, ...; empty means `rprivate`.
    pub propagation: String,
}

/// Errors from building or writing a spec. Each message names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified: the container args (entrypoint + cmd) are empty")]
    EmptyArgs,
    #[error("invalid container argument {0:?}: {1}")]
    InvalidArg(String, &'static str),
    #[error("invalid environment variable {0:?}: {1}")]
    InvalidEnv(String, &'static str),
    #[error("invalid working directory {0:?}: {1}")]
    InvalidWorkingDir(String, &'static str),
    #[error("invalid hostname {0:?}: {1}")]
    InvalidHostname(String, &'static str),
    #[error("invalid rootfs path {0:?}: it must be absolute")]
    InvalidRootfs(PathBuf),
    #[error("invalid cgroup path {0:?}: {1}")]
    InvalidCgroupPath(String, &'static str),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user {0:?}: {1}")]
    InvalidUser(String, String),
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    #[error("invalid security option {0:?}: {1}")]
    InvalidSecurityOpt(String, &'static str),
    #[error("invalid ulimit {name:?}: {reason}")]
    InvalidUlimit { name: String, reason: String },
    #[error("invalid bind mount {path:?}: {reason}")]
    InvalidBind { path: String, reason: String },
    #[error("invalid tmpfs mount {path:?}: {reason}")]
    InvalidTmpfs { path: String, reason: String },
    #[error("invalid {field} {value}: {reason}")]
    InvalidResource {
        field: &'static str,
        value: i64,
        reason: &'static str,
    },
    #[error("invalid oom_score_adj {0}: it must be between -1000 and 1000")]
    InvalidOomScoreAdj(i32),
    #[error("init is enabled but init_path is empty")]
    MissingInitPath,
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serializing config.json: {0}")]
    Json(#[from] serde_json::Error),
}

type Result<T> = std::result::Result<T, SpecError>;

// ---------------------------------------------------------------------------
// Host facts (injectable for tests)
// ---------------------------------------------------------------------------

/// What `build_spec` needs to know about the machine it runs on.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// Highest capability number the kernel supports (`/proc/sys/kernel/cap_last_cap`).
    pub(crate) last_cap: usize,
    pub(crate) arch: seccomp::Arch,
    /// Where to enumerate host devices for privileged containers; `None` = none.
    pub(crate) dev_dir: Option<PathBuf>,
}

impl Host {
    fn detect() -> Self {
        let last_cap = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map_or(ALL_CAPABILITIES.len() - 1, |n| {
                n.min(ALL_CAPABILITIES.len() - 1)
            });
        Host {
            last_cap,
            arch: seccomp::Arch::native(),
            dev_dir: Some(PathBuf::from("/dev")),
        }
    }

    fn supported_caps(&self) -> &'static [&'static str] {
        &ALL_CAPABILITIES[..=self.last_cap]
    }
}

// ---------------------------------------------------------------------------
// Building the spec
// ---------------------------------------------------------------------------

/// Builds config.json's content. `rootfs` is the absolute path of the container's root
/// (an overlay mount prepared by the caller); `cgroup_path` is e.g. `"/berth/<id>"`
/// (cgroup v2, crun creates it).
/// The cgroup limits of `cfg`, checked as a start checks them (for `docker update`).
pub fn resources(cfg: &ContainerConfig) -> Result<Resources> {
    resources::build_resources(cfg)
}

pub fn build_spec(cfg: &ContainerConfig, rootfs: &Path, cgroup_path: &str) -> Result<Spec> {
    build_spec_on(cfg, rootfs, cgroup_path, &Host::detect())
}

pub(crate) fn build_spec_on(
    cfg: &ContainerConfig,
    rootfs: &Path,
    cgroup_path: &str,
    host: &Host,
) -> Result<Spec> {
    if !rootfs.is_absolute() {
        return Err(SpecError::InvalidRootfs(rootfs.to_path_buf()));
    }
    let rootfs_str = rootfs
        .to_str()
        .ok_or_else(|| SpecError::InvalidRootfs(rootfs.to_path_buf()))?;
    validate_cgroup_path(cgroup_path)?;
    let security = parse_security_opts(&cfg.security_opt)?;
    validate_hostname(&cfg.hostname)?;

    let args = build_args(cfg)?;
    let env = build_env(cfg)?;
    let cwd = build_cwd(&cfg.working_dir)?;

    let (uid, gid, sgids) = resolve_user(rootfs, &cfg.user)?;
    // Like moby >= 25: the primary group is listed first in additionalGids, then
    // the supplementary groups, without duplicates.
    let mut additional_gids = vec![gid];
    for g in sgids
        .into_iter()
        .chain(user::resolve_groups(rootfs, &cfg.group_add)?)
    {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }

    let caps = tweak_capabilities(cfg, host)?;
    let rlimits = build_rlimits(&cfg.ulimits)?;
    if let Some(adj) = cfg.oom_score_adj
        && !(-1000..=1000).contains(&adj)
    {
        return Err(SpecError::InvalidOomScoreAdj(adj));
    }

    let mounts = build_mounts(cfg)?;
    let resources = build_resources(cfg)?;

    let seccomp = if cfg.privileged || security.seccomp_unconfined {
        None
    } else {
        Some(seccomp::default_profile(&caps, host.arch))
    };

    let confine_paths = !cfg.privileged && !security.systempaths_unconfined;
    let to_strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let devices = match (&host.dev_dir, cfg.privileged) {
        (Some(dir), true) => host_devices(dir),
        _ => Vec::new(),
    };

    let namespaces = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        .iter()
        .filter(|ns| !(**ns == "network" && cfg.netns.as_deref() == Some("")))
        .filter(|ns| {
            !((**ns == "pid" && cfg.host_pid)
                || (**ns == "ipc" && cfg.host_ipc)
                || (**ns == "uts" && cfg.host_uts))
        })
        .map(|ns| Namespace {
            kind: ns.to_string(),
            path: if *ns == "network" {
                cfg.netns.clone()
            } else {
                None
            },
        })
        .collect();

    Ok(Spec {
        oci_version: OCI_VERSION.to_string(),
        process: Process {
            terminal: cfg.tty,
            user: User {
                uid,
                gid,
                additional_gids,
            },
            args,
            env,
            cwd,
            capabilities: Some(Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                inheritable: Vec::new(),
                permitted: caps,
                ambient: Vec::new(),
            }),
            rlimits,
            no_new_privileges: security.no_new_privileges,
            oom_score_adj: cfg.oom_score_adj,
            console_size: cfg
                .console_size
                .filter(|_| cfg.tty)
                .map(|(height, width)| oci::ConsoleSize { height, width }),
        },
        root: Root {
            path: rootfs_str.to_string(),
            readonly: cfg.readonly_rootfs,
        },
        // The VM's UTS namespace keeps the VM's name.
        hostname: (!cfg.hostname.is_empty() && !cfg.host_uts).then(|| cfg.hostname.clone()),
        mounts,
        linux: Linux {
            resources: Some(resources),
            cgroups_path: cgroup_path.to_string(),
            namespaces,
            devices,
            seccomp,
            masked_paths: if confine_paths {
                to_strings(MASKED_PATHS)
            } else {
                Vec::new()
            },
            readonly_paths: if confine_paths {
                to_strings(READONLY_PATHS)
            } else {
                Vec::new()
            },
        },
    })
}

fn validate_cgroup_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(SpecError::InvalidCgroupPath(path.into(), "it is empty"));
    }
    if path.contains('\0') {
        return Err(SpecError::InvalidCgroupPath(
            path.into(),
            "it contains a NUL byte",
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(SpecError::InvalidCgroupPath(
            path.into(),
            "it contains '..'",
        ));
    }
    Ok(())
}

fn validate_hostname(name: &str) -> Result<()> {
    if name.len() > 64 {
        return Err(SpecError::InvalidHostname(
            name.into(),
            "longer than 64 bytes",
        ));
    }
    if name.contains(['\0', '/']) || name.chars().any(char::is_whitespace) {
        return Err(SpecError::InvalidHostname(
            name.into(),
            "it contains a NUL, '/' or whitespace character",
        ));
    }
    Ok(())
}

fn build_args(cfg: &ContainerConfig) -> Result<Vec<String>> {
    if cfg.args.is_empty() || cfg.args[0].is_empty() {
        return Err(SpecError::EmptyArgs);
    }
    let mut args = Vec::with_capacity(cfg.args.len() + 2);
    if cfg.init {
        if cfg.init_path.is_empty() {
            return Err(SpecError::MissingInitPath);
        }
        args.push(cfg.init_path.clone());
        args.push("--".to_string());
    }
    args.extend(cfg.args.iter().cloned());
    if let Some(bad) = args.iter().find(|a| a.contains('\0')) {
        return Err(SpecError::InvalidArg(bad.clone(), "it contains a NUL byte"));
    }
    Ok(args)
}

/// Docker's container environment: PATH, HOSTNAME and (with a tty) TERM defaults,
/// then the configured entries replace or append by key; a bare `KEY` unsets it.
fn build_env(cfg: &ContainerConfig) -> Result<Vec<String>> {
    fn key(entry: &str) -> &str {
        entry.split_once('=').map_or(entry, |(k, _)| k)
    }
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    if !cfg.hostname.is_empty() {
        env.push(format!("HOSTNAME={}", cfg.hostname));
    }
    if cfg.tty {
        env.push("TERM=xterm".to_string());
    }
    for entry in &cfg.env {
        if entry.contains('\0') {
            return Err(SpecError::InvalidEnv(
                entry.clone(),
                "it contains a NUL byte",
            ));
        }
        let k = key(entry);
        if k.is_empty() {
            return Err(SpecError::InvalidEnv(
                entry.clone(),
                "the variable name is empty",
            ));
        }
        if entry.contains('=') {
            match env.iter().position(|e| key(e) == k) {
                Some(i) => env[i] = entry.clone(),
                None => env.push(entry.clone()),
            }
        } else {
            env.retain(|e| key(e) != k);
        }
    }
    Ok(env)
}

fn build_cwd(dir: &str) -> Result<String> {
    if dir.contains('\0') {
        return Err(SpecError::InvalidWorkingDir(
            dir.into(),
            "it contains a NUL byte",
        ));
    }
    // dockerd joins a relative WorkingDir onto "/" and cleans it.
    Ok(clean_path(dir))
}

/// Lexically cleans `path` as an absolute path ("a/./b/../c" -> "/a/c").
pub(crate) fn clean_path(path: &str) -> String {
    berth_agent_proto::dockerignore::clean(path)
}

// ---------------------------------------------------------------------------
// Security options and capabilities
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp_unconfined: bool,
    systempaths_unconfined: bool,
}

fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for opt in opts {
        let bad = |why| SpecError::InvalidSecurityOpt(opt.clone(), why);
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        let Some((key, value)) = opt.split_once('=').or_else(|| opt.split_once(':')) else {
            return Err(bad("expected KEY=VALUE or KEY:VALUE"));
        };
        match key {
            "no-new-privileges" => {
                out.no_new_privileges = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "t" => true,
                    "false" | "0" | "f" => false,
                    _ => return Err(bad("no-new-privileges takes true or false")),
                }
            }
            "seccomp" if value == "unconfined" => out.seccomp_unconfined = true,
            "seccomp" => {
                return Err(bad(
                    "only seccomp=unconfined is supported; custom seccomp profiles are not",
                ));
            }
            "systempaths" if value == "unconfined" => out.systempaths_unconfined = true,
            "systempaths" => return Err(bad("only systempaths=unconfined is supported")),
            // The guest kernel enforces neither AppArmor nor SELinux, so asking for
            // less confinement is a no-op; asking for a profile/label is not possible.
            "apparmor" if value == "unconfined" => {}
            "apparmor" => return Err(bad("AppArmor profiles are not supported")),
            "label" if value == "disable" => {}
            "label" => return Err(bad("SELinux labels are not supported")),
            _ => return Err(bad("unsupported security option")),
        }
    }
    Ok(out)
}

/// Normalizes "net_admin" / "CAP_NET_ADMIN" / "all" to "CAP_NET_ADMIN" / "ALL".
fn normalize_capability(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability(name.to_string()))
    }
}

/// Docker's capability computation (moby `caps.TweakCapabilities`), limited to the
/// capabilities the running kernel knows.
fn tweak_capabilities(cfg: &ContainerConfig, host: &Host) -> Result<Vec<String>> {
    let adds = cfg
        .cap_add
        .iter()
        .map(|c| normalize_capability(c))
        .collect::<Result<Vec<_>>>()?;
    let drops = cfg
        .cap_drop
        .iter()
        .map(|c| normalize_capability(c))
        .collect::<Result<Vec<_>>>()?;
    let supported = host.supported_caps();
    let all = || supported.iter().map(|c| c.to_string()).collect::<Vec<_>>();

    if cfg.privileged {
        return Ok(all());
    }
    if adds.is_empty() && drops.is_empty() {
        return Ok(default_capabilities()
            .into_iter()
            .filter(|c| supported.contains(c))
            .map(str::to_string)
            .collect());
    }
    let mut caps: Vec<String> = if adds.iter().any(|c| c == "ALL") {
        all().into_iter().filter(|c| !drops.contains(c)).collect()
    } else if drops.iter().any(|c| c == "ALL") {
        adds
    } else {
        let mut caps: Vec<String> = default_capabilities()
            .into_iter()
            .filter(|c| !drops.iter().any(|d| d == c))
            .map(str::to_string)
            .collect();
        for add in adds {
            if !caps.contains(&add) {
                caps.push(add);
            }
        }
        caps
    };
    caps.retain(|c| supported.contains(&c.as_str()));
    caps.sort();
    caps.dedup();
    Ok(caps)
}

fn build_rlimits(ulimits: &[(String, i64, i64)]) -> Result<Vec<Rlimit>> {
    const NAMES: &[&str] = &[
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let mut out: Vec<Rlimit> = Vec::new();
    for (name, soft, hard) in ulimits {
        let bad = |reason: String| SpecError::InvalidUlimit {
            name: name.clone(),
            reason,
        };
        let lower = name.trim().to_ascii_lowercase();
        let short = lower.strip_prefix("rlimit_").unwrap_or(&lower);
        if !NAMES.contains(&short) {
            return Err(bad(format!(
                "unknown ulimit name; expected one of {NAMES:?}"
            )));
        }
        let conv = |v: i64| -> Result<u64> {
            match v {
                -1 => Ok(u64::MAX),
                v if v >= 0 => Ok(v as u64),
                v => Err(bad(format!("value {v} is negative (use -1 for unlimited)"))),
            }
        };
        let (soft, hard) = (conv(*soft)?, conv(*hard)?);
        if soft > hard {
            return Err(bad(format!(
                "soft limit {soft} is greater than hard limit {hard}"
            )));
        }
        let kind = format!("RLIMIT_{}", short.to_ascii_uppercase());
        // A later entry for the same limit wins, as with dockerd's ulimit map.
        out.retain(|r| r.kind != kind);
        out.push(Rlimit { kind, hard, soft });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Writes config.json into `bundle_dir` atomically (tmp + fsync + rename), mode 0600.
pub fn write_spec(spec: &Spec, bundle_dir: &Path) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let data = serde_json::to_vec_pretty(spec)?;
    let final_path = bundle_dir.join("config.json");
    let tmp_path = bundle_dir.join(format!(
        ".config.json.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| SpecError::Io { op, path, source }
    };
    let write = || -> Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)
            .map_err(io("creating", &tmp_path))?;
        file.write_all(&data).map_err(io("writing", &tmp_path))?;
        file.sync_all().map_err(io("syncing", &tmp_path))?;
        drop(file);
        fs::rename(&tmp_path, &final_path).map_err(io("renaming into", &final_path))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp_path);
        return Err(e);
    }
    // Persist the rename itself.
    fs::File::open(bundle_dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", bundle_dir))?;
    Ok(())
}

/// Names of the syscalls a rule list allows unconditionally (used by tests and
/// callers that want to inspect a profile).
#[cfg(test)]
pub fn allowed_syscalls(seccomp: &Seccomp) -> BTreeSet<&str> {
    seccomp
        .syscalls
        .iter()
        .filter(|r| r.action == "SCMP_ACT_ALLOW" && r.args.is_empty())
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect()
}
