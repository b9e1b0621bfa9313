//! Docker's default seccomp profile, as an OCI `linux.seccomp` section.
//!
//! Everything not allowed fails with EPERM. The allow list is the set of syscalls
//! moby's default profile grants a container with default capabilities on a kernel
//! newer than 4.8, minus io_uring (dropped by moby 25.0), plus the groups moby
//! unlocks per capability, evaluated against the container's final bounding set.
//! Names unknown to the runtime's libseccomp are ignored by crun (with a warning).

use std::collections::BTreeSet;

use super::{Seccomp, SyscallArg, SyscallRule};

const ACT_ALLOW: &str = "SCMP_ACT_ALLOW";
const ACT_ERRNO: &str = "SCMP_ACT_ERRNO";
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const AF_VSOCK: u64 = 40;
/// socketcall(2)'s call number for socket(2).
const SYS_SOCKET: u64 = 1;
/// The bits of socket(2)'s `type` that no socket type, SOCK_NONBLOCK or SOCK_CLOEXEC uses
/// (low 32 bits only: the argument is an int). Together they reach at most 0x808ff, below
/// the guest's `vm.mmap_min_addr`.
const SOCKET_TYPE_UNUSED_BITS: u64 = 0xffff_ffff & !(0xff | 0x800 | 0x8_0000);

/// The namespace flags a process may not pass to clone() without CAP_SYS_ADMIN:
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET.
pub(crate) const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// personality(2) values allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff (query the current persona).
const PERSONALITY_VALUES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The architecture family the filter is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Aarch64,
    /// Any other: native architecture only, no arch-specific syscalls.
    Other,
}

impl Arch {
    pub(crate) fn native() -> Self {
        if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::Other
        }
    }

    fn scmp_arches(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            Arch::Aarch64 => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            Arch::Other => &[],
        }
    }

    fn extra_syscalls(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["arch_prctl", "modify_ldt"],
            Arch::Aarch64 => &[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ],
            Arch::Other => &[],
        }
    }
}

/// Process, thread and scheduling management. ptrace is here because moby allows
/// it without CAP_SYS_PTRACE on kernels >= 4.8 (seccomp can no longer be bypassed).
#[rustfmt::skip]
const PROCESS: &[&str] = &[
    "brk", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork",
    "getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid",
    "getpriority", "setpriority", "prctl", "getrlimit", "setrlimit", "ugetrlimit", "prlimit64",
    "getrusage", "wait4", "waitid", "waitpid", "kill", "tkill", "tgkill", "pidfd_open",
    "pidfd_send_signal", "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "restart_syscall", "seccomp", "get_thread_area", "set_thread_area", "process_mrelease",
    "times", "sysinfo", "uname", "umask", "getcpu", "getrandom", "membarrier", "ptrace",
    "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_yield", "ioprio_get", "ioprio_set",
];

/// Credentials (the kernel checks CAP_SETUID/CAP_SETGID itself).
#[rustfmt::skip]
const CREDENTIALS: &[&str] = &[
    "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
    "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
    "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid",
    "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32", "setfsuid",
    "setfsuid32", "setfsgid", "setfsgid32", "setgroups", "setgroups32",
];

#[rustfmt::skip]
const SIGNALS: &[&str] = &[
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sigaltstack", "sigprocmask", "sigreturn", "signalfd", "signalfd4", "pause", "alarm",
];

#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "mmap", "mmap2", "munmap", "mprotect", "mremap", "madvise", "mincore", "msync", "mlock",
    "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages", "memfd_create",
    "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect",
];

/// Clocks and timers; setting the clock needs CAP_SYS_TIME (see CAP_GATED).
/// adjtimex/clock_adjtime stay here as in moby: without CAP_SYS_TIME the kernel only
/// lets them read.
#[rustfmt::skip]
const TIME: &[&str] = &[
    "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
    "clock_nanosleep", "clock_nanosleep_time64", "clock_adjtime", "clock_adjtime64",
    "adjtimex", "gettimeofday", "time", "nanosleep", "getitimer", "setitimer", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64",
];

/// Files, directories, descriptors, extended attributes.
#[rustfmt::skip]
const FILES: &[&str] = &[
    "open", "openat", "openat2", "creat", "close", "close_range", "read", "readv", "pread64",
    "preadv", "preadv2", "write", "writev", "pwrite64", "pwritev", "pwritev2", "lseek",
    "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "fsync", "fdatasync",
    "sync", "syncfs", "sync_file_range", "fallocate", "fadvise64", "fadvise64_64", "readahead",
    "truncate", "truncate64", "ftruncate", "ftruncate64", "stat", "stat64", "lstat", "lstat64",
    "fstat", "fstat64", "fstatat64", "newfstatat", "statx", "statfs", "statfs64", "fstatfs",
    "fstatfs64", "access", "faccessat", "faccessat2", "chdir", "fchdir", "getcwd", "mkdir",
    "mkdirat", "mknod", "mknodat", "rmdir", "rename", "renameat", "renameat2", "link",
    "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "readlink", "readlinkat", "chmod",
    "fchmod", "fchmodat", "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown",
    "lchown32", "utime", "utimes", "utimensat", "utimensat_time64", "futimesat", "getdents",
    "getdents64", "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
    "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    "name_to_handle_at", "copy_file_range", "sendfile", "sendfile64", "splice", "tee",
    "vmsplice", "ioctl", "pipe", "pipe2", "eventfd", "eventfd2", "inotify_init",
    "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
];

/// Waiting: select/poll/epoll, futexes, legacy AIO (io_uring is deliberately absent).
#[rustfmt::skip]
const WAITING: &[&str] = &[
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait",
    "epoll_wait_old", "epoll_pwait", "epoll_pwait2", "futex", "futex_time64", "futex_waitv",
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64",
];

/// Sockets (socket() and 32-bit x86's socketcall() are conditional rules: no AF_VSOCK).
#[rustfmt::skip]
const NETWORK: &[&str] = &[
    "accept", "accept4", "bind", "connect", "listen", "getpeername", "getsockname",
    "getsockopt", "setsockopt", "socketpair", "shutdown", "recv", "recvfrom", "recvmsg",
    "recvmmsg", "recvmmsg_time64", "send", "sendto", "sendmsg", "sendmmsg",
];

/// System V IPC and POSIX message queues (isolated by the IPC namespace).
#[rustfmt::skip]
const IPC: &[&str] = &[
    "ipc", "msgget", "msgctl", "msgsnd", "msgrcv", "semget", "semctl", "semop", "semtimedop",
    "semtimedop_time64", "shmget", "shmctl", "shmat", "shmdt", "mq_open", "mq_unlink",
    "mq_notify", "mq_getsetattr", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
    "mq_timedreceive_time64",
];

/// Unprivileged syscalls from kernels newer than libseccomp 2.5.4 knows (6.2+).
/// Allowed so that newer libcs do not see EPERM once the runtime can resolve them.
#[rustfmt::skip]
const NEWER: &[&str] = &[
    "cachestat", "fchmodat2", "map_shadow_stack", "futex_wake", "futex_wait", "futex_requeue",
    "mseal",
];

/// Syscalls unlocked by a capability in the container's bounding set.
const CAP_GATED: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["init_module", "finit_module", "delete_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "move_pages",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

fn rule(
    names: &[&str],
    action: &str,
    errno_ret: Option<u32>,
    args: Vec<SyscallArg>,
) -> SyscallRule {
    SyscallRule {
        names: names.iter().map(|s| s.to_string()).collect(),
        action: action.to_string(),
        errno_ret,
        args,
    }
}

fn arg(index: u32, value: u64, value_two: u64, op: &str) -> SyscallArg {
    SyscallArg {
        index,
        value,
        value_two,
        op: op.to_string(),
    }
}

/// Builds the default profile for a container whose bounding set is `caps`.
pub(crate) fn default_profile(caps: &[String], arch: Arch) -> Seccomp {
    let has = |cap: &str| caps.iter().any(|c| c == cap);

    let mut allowed: BTreeSet<&str> = [
        PROCESS,
        CREDENTIALS,
        SIGNALS,
        MEMORY,
        TIME,
        FILES,
        WAITING,
        NETWORK,
        IPC,
        NEWER,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect();
    allowed.extend(arch.extra_syscalls());
    for (cap, names) in CAP_GATED {
        if has(cap) {
            allowed.extend(names.iter().copied());
        }
    }

    let allowed_names: Vec<&str> = allowed.iter().copied().collect();
    let mut syscalls = vec![rule(&allowed_names, ACT_ALLOW, None, Vec::new())];

    // Every socket family but vsock: the guest's vsock belongs to the agent and host. The
    // second condition holds for every socket type (SOCK_* with SOCK_NONBLOCK, SOCK_CLOEXEC),
    // and matters on 32-bit x86: there libseccomp also turns this rule into one for
    // socketcall(SYS_SOCKET, args*), replacing the family test with the call number and
    // keeping this one, which then reads the pointer to the arguments, where the family
    // lies out of seccomp's sight. A pointer passes only below 1 MiB, which the agent keeps
    // unmappable (`init::MMAP_MIN_ADDR`), so a 32-bit socket() through socketcall is refused
    // whatever its family, or a 32-bit binary would open vsock. (Programs that make sockets
    // that way, 32-bit glibc and Go among them, cannot; the direct 32-bit socket syscall and
    // 64-bit programs are filtered by family only.)
    syscalls.push(rule(
        &["socket"],
        ACT_ALLOW,
        None,
        vec![
            arg(0, AF_VSOCK, 0, "SCMP_CMP_NE"),
            arg(1, SOCKET_TYPE_UNUSED_BITS, 0, "SCMP_CMP_MASKED_EQ"),
        ],
    ));
    // The other socketcall calls, whose arguments hold nothing to filter.
    syscalls.push(rule(
        &["socketcall"],
        ACT_ALLOW,
        None,
        vec![arg(0, SYS_SOCKET, 0, "SCMP_CMP_NE")],
    ));
    // One rule per value: conditions inside one rule are ANDed.
    for value in PERSONALITY_VALUES {
        syscalls.push(rule(
            &["personality"],
            ACT_ALLOW,
            None,
            vec![arg(0, value, 0, "SCMP_CMP_EQ")],
        ));
    }
    if !allowed.contains("clone") {
        // Plain fork/thread creation only: (flags & NAMESPACE_FLAGS) == 0.
        syscalls.push(rule(
            &["clone"],
            ACT_ALLOW,
            None,
            vec![arg(0, CLONE_NAMESPACE_FLAGS, 0, "SCMP_CMP_MASKED_EQ")],
        ));
    }
    if !allowed.contains("clone3") {
        // clone3's flags live in memory seccomp cannot inspect: make libcs fall back
        // to clone, which the rule above filters.
        syscalls.push(rule(&["clone3"], ACT_ERRNO, Some(ENOSYS), Vec::new()));
    }

    Seccomp {
        default_action: ACT_ERRNO.to_string(),
        default_errno_ret: Some(EPERM),
        architectures: arch.scmp_arches().iter().map(|s| s.to_string()).collect(),
        syscalls,
    }
}
