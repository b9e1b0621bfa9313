use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::resources::dev_major_minor;
use super::seccomp::{Arch, CLONE_NAMESPACE_FLAGS};
use super::*;

type RuleKey<'a> = (Option<&'a str>, Option<i64>, Option<i64>, &'a str);
type Mutator = fn(&mut ContainerConfig);

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment line
broken:x:notanumber:5:::
alice:x:1000:1000:Alice:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
";

const GROUP: &str = "\
root:x:0:root
daemon:x:1:
wheel:x:10:alice,root
audio:x:29:bob, alice
alice:x:1000:
bob:x:1001:
staff:x:50:
";

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
    fs::write(dir.path().join("etc/group"), GROUP).unwrap();
    dir
}

fn host() -> Host {
    Host {
        last_cap: 40,
        arch: Arch::X86_64,
        dev_dir: None,
    }
}

fn cfg() -> ContainerConfig {
    ContainerConfig {
        args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        hostname: "c0ffee".into(),
        ..Default::default()
    }
}

fn build(c: &ContainerConfig) -> Result<Spec> {
    let root = rootfs();
    build_spec_on(c, root.path(), "/berth/abc", &host())
}

fn caps_of(spec: &Spec) -> Vec<String> {
    spec.process.capabilities.as_ref().unwrap().bounding.clone()
}

/// Syscalls the profile lets through in some form (unconditionally or with args).
fn reachable(s: &Seccomp) -> BTreeSet<&str> {
    s.syscalls
        .iter()
        .filter(|r| r.action == "SCMP_ACT_ALLOW")
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect()
}

// ----- users ---------------------------------------------------------------

#[test]
fn user_empty_is_root_with_member_groups() {
    let r = rootfs();
    assert_eq!(resolve_user(r.path(), "").unwrap(), (0, 0, vec![0, 10]));
    assert_eq!(resolve_user(r.path(), "root").unwrap(), (0, 0, vec![0, 10]));
}

#[test]
fn user_by_name_gets_passwd_gid_and_supplementary_groups() {
    let r = rootfs();
    assert_eq!(
        resolve_user(r.path(), "alice").unwrap(),
        (1000, 1000, vec![10, 29])
    );
    assert_eq!(
        resolve_user(r.path(), "bob").unwrap(),
        (1001, 1001, vec![29])
    );
}

#[test]
fn user_by_uid() {
    let r = rootfs();
    assert_eq!(
        resolve_user(r.path(), "1000").unwrap(),
        (1000, 1000, vec![10, 29])
    );
    // Not in passwd: fine, gid 0, no groups.
    assert_eq!(resolve_user(r.path(), "4242").unwrap(), (4242, 0, vec![]));
}

#[test]
fn user_with_explicit_group() {
    let r = rootfs();
    assert_eq!(
        resolve_user(r.path(), "1000:50").unwrap(),
        (1000, 50, vec![])
    );
    assert_eq!(
        resolve_user(r.path(), "4242:4343").unwrap(),
        (4242, 4343, vec![])
    );
    assert_eq!(
        resolve_user(r.path(), "alice:staff").unwrap(),
        (1000, 50, vec![])
    );
    assert_eq!(
        resolve_user(r.path(), "1001:wheel").unwrap(),
        (1001, 10, vec![])
    );
    let err = resolve_user(r.path(), "alice:nogroup").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find group nogroup: no matching entries in group file"
    );
}

#[test]
fn unknown_user_error_text() {
    let r = rootfs();
    let err = resolve_user(r.path(), "mallory").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user mallory: no matching entries in passwd file"
    );
    // Malformed passwd lines never match.
    assert!(resolve_user(r.path(), "broken").is_err());
    // And it surfaces from build_spec too.
    let mut c = cfg();
    c.user = "mallory".into();
    assert!(matches!(build(&c), Err(SpecError::UnknownUser(u)) if u == "mallory"));
}

#[test]
fn user_out_of_range() {
    let r = rootfs();
    assert!(matches!(
        resolve_user(r.path(), "-1"),
        Err(SpecError::InvalidUser(..))
    ));
    assert!(matches!(
        resolve_user(r.path(), "1:99999999999"),
        Err(SpecError::InvalidUser(..))
    ));
}

#[test]
fn user_without_etc_files() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(resolve_user(dir.path(), "").unwrap(), (0, 0, vec![]));
    assert_eq!(
        resolve_user(dir.path(), "123:456").unwrap(),
        (123, 456, vec![])
    );
    assert!(matches!(
        resolve_user(dir.path(), "alice"),
        Err(SpecError::UnknownUser(_))
    ));
    assert!(matches!(
        resolve_user(dir.path(), "0:staff"),
        Err(SpecError::UnknownGroup(_))
    ));
}

#[test]
fn passwd_symlinks_stay_inside_rootfs() {
    // A hostile image: /etc/passwd -> /etc/shadow-host (absolute) must resolve inside
    // the rootfs, and ../../.. must not escape it.
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::create_dir_all(root.path().join("real")).unwrap();
    fs::write(root.path().join("real/passwd"), "inside:x:7:8::/:/bin/sh\n").unwrap();
    let abs_outside = outside.path().join("passwd");
    std::os::unix::fs::symlink(&abs_outside, root.path().join("etc/passwd")).unwrap();
    // The absolute target is re-rooted: it names a path that does not exist inside.
    assert!(matches!(
        resolve_user(root.path(), "evil"),
        Err(SpecError::UnknownUser(_))
    ));

    fs::remove_file(root.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/real/passwd", root.path().join("etc/passwd")).unwrap();
    assert_eq!(resolve_user(root.path(), "inside").unwrap(), (7, 8, vec![]));

    fs::remove_file(root.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("../../../../../real/passwd", root.path().join("etc/passwd"))
        .unwrap();
    assert_eq!(resolve_user(root.path(), "inside").unwrap(), (7, 8, vec![]));

    // A symlink loop is an error, not a hang.
    fs::remove_file(root.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.path().join("etc/passwd")).unwrap();
    assert!(matches!(
        resolve_user(root.path(), "x"),
        Err(SpecError::Io { .. })
    ));
}

#[test]
fn passwd_that_is_not_a_file_reads_as_missing() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc/passwd")).unwrap();
    assert_eq!(resolve_user(root.path(), "5").unwrap(), (5, 0, vec![]));
}

#[test]
fn additional_gids_include_primary_gid_first() {
    let mut c = cfg();
    c.user = "alice".into();
    let s = build(&c).unwrap();
    assert_eq!(s.process.user.uid, 1000);
    assert_eq!(s.process.user.gid, 1000);
    assert_eq!(s.process.user.additional_gids, vec![1000, 10, 29]);
    c.user = "root".into();
    let s = build(&c).unwrap();
    assert_eq!(s.process.user.additional_gids, vec![0, 10]);
}

#[test]
fn group_add_takes_gids_and_names_from_the_image() {
    let mut c = cfg();
    c.user = "root".into();
    c.group_add = vec!["4242".into(), "audio".into(), "10".into()];
    let s = build(&c).unwrap();
    assert_eq!(s.process.user.additional_gids, vec![0, 10, 4242, 29]);
    c.group_add = vec!["no-such-group".into()];
    assert!(matches!(build(&c), Err(SpecError::UnknownGroup(g)) if g == "no-such-group"));
}

// ----- process ---------------------------------------------------------------

#[test]
fn default_caps_are_exactly_dockers_14() {
    let caps = default_capabilities();
    assert_eq!(caps.len(), 14);
    let expected: BTreeSet<&str> = [
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
    .into();
    assert_eq!(caps.iter().copied().collect::<BTreeSet<_>>(), expected);

    let s = build(&cfg()).unwrap();
    let c = s.process.capabilities.as_ref().unwrap();
    assert_eq!(c.bounding, caps);
    assert_eq!(c.effective, caps);
    assert_eq!(c.permitted, caps);
    assert!(c.inheritable.is_empty());
    assert!(c.ambient.is_empty());
    let json = serde_json::to_value(&s).unwrap();
    let jc = &json["process"]["capabilities"];
    assert!(jc.get("inheritable").is_none() && jc.get("ambient").is_none());
}

#[test]
fn cap_add_and_drop() {
    let mut c = cfg();
    c.cap_add = vec!["NET_ADMIN".into(), "cap_sys_ptrace".into()];
    c.cap_drop = vec!["CAP_MKNOD".into(), "net_raw".into()];
    let caps = caps_of(&build(&c).unwrap());
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
    assert!(!caps.contains(&"CAP_MKNOD".to_string()));
    assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
    assert_eq!(caps.len(), 14);
    let mut sorted = caps.clone();
    sorted.sort();
    assert_eq!(caps, sorted);
}

#[test]
fn cap_all_forms() {
    let mut c = cfg();
    c.cap_add = vec!["ALL".into()];
    c.cap_drop = vec!["SYS_ADMIN".into()];
    let caps = caps_of(&build(&c).unwrap());
    assert_eq!(caps.len(), 40);
    assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));

    let mut c = cfg();
    c.cap_drop = vec!["all".into()];
    assert!(caps_of(&build(&c).unwrap()).is_empty());
    c.cap_add = vec!["CHOWN".into(), "KILL".into()];
    assert_eq!(caps_of(&build(&c).unwrap()), vec!["CAP_CHOWN", "CAP_KILL"]);
}

#[test]
fn cap_bad_name() {
    let mut c = cfg();
    c.cap_add = vec!["NET_WIZARD".into()];
    let err = build(&c).unwrap_err();
    assert!(matches!(&err, SpecError::UnknownCapability(n) if n == "NET_WIZARD"));
    assert!(err.to_string().contains("NET_WIZARD"));
    let mut c = cfg();
    c.cap_drop = vec!["CAP_".into()];
    assert!(matches!(build(&c), Err(SpecError::UnknownCapability(_))));
}

#[test]
fn caps_are_limited_to_the_kernel() {
    let root = rootfs();
    let mut h = host();
    h.last_cap = 37; // a 5.4 kernel: no PERFMON, BPF, CHECKPOINT_RESTORE
    let mut c = cfg();
    c.privileged = true;
    let s = build_spec_on(&c, root.path(), "/b", &h).unwrap();
    assert_eq!(caps_of(&s).len(), 38);
    assert!(!caps_of(&s).contains(&"CAP_BPF".to_string()));
}

#[test]
fn env_defaults_and_overrides() {
    let mut c = cfg();
    c.tty = true;
    c.env = vec!["FOO=bar".into(), "HOSTNAME=override".into(), "TERM".into()];
    let s = build(&c).unwrap();
    assert!(s.process.terminal);
    assert_eq!(
        s.process.env,
        vec![DEFAULT_PATH_ENV, "HOSTNAME=override", "FOO=bar"]
    );

    let mut c = cfg();
    c.env = vec!["PATH=/custom".into(), "A=1".into(), "A=2".into()];
    let s = build(&c).unwrap();
    assert_eq!(
        s.process.env,
        vec!["PATH=/custom", "HOSTNAME=c0ffee", "A=2"]
    );
    assert!(!s.process.terminal);

    let mut c = cfg();
    c.env = vec!["=x".into()];
    assert!(matches!(build(&c), Err(SpecError::InvalidEnv(..))));
}

#[test]
fn args_cwd_init_hostname() {
    let s = build(&cfg()).unwrap();
    assert_eq!(s.process.cwd, "/");
    assert_eq!(s.hostname.as_deref(), Some("c0ffee"));
    assert_eq!(s.process.args, vec!["/bin/sh", "-c", "true"]);

    let mut c = cfg();
    c.working_dir = "app/./src/".into();
    c.init = true;
    c.init_path = "/sbin/docker-init".into();
    let s = build(&c).unwrap();
    assert_eq!(s.process.cwd, "/app/src");
    assert_eq!(
        s.process.args,
        vec!["/sbin/docker-init", "--", "/bin/sh", "-c", "true"]
    );

    c.init_path.clear();
    assert!(matches!(build(&c), Err(SpecError::MissingInitPath)));

    let mut c = cfg();
    c.args.clear();
    assert!(matches!(build(&c), Err(SpecError::EmptyArgs)));

    let mut c = cfg();
    c.hostname = "x".repeat(65);
    assert!(matches!(build(&c), Err(SpecError::InvalidHostname(..))));
}

#[test]
fn rootfs_and_cgroup_path() {
    let mut c = cfg();
    c.readonly_rootfs = true;
    let root = rootfs();
    let s = build_spec_on(&c, root.path(), "/berth/abc", &host()).unwrap();
    assert_eq!(s.root.path, root.path().to_str().unwrap());
    assert!(s.root.readonly);
    assert_eq!(s.linux.cgroups_path, "/berth/abc");
    assert!(matches!(
        build_spec_on(&c, Path::new("relative"), "/b", &host()),
        Err(SpecError::InvalidRootfs(_))
    ));
    assert!(matches!(
        build_spec_on(&c, root.path(), "/berth/../x", &host()),
        Err(SpecError::InvalidCgroupPath(..))
    ));
}

#[test]
fn ulimits() {
    let mut c = cfg();
    c.ulimits = vec![
        ("nofile".into(), 1024, 4096),
        ("NPROC".into(), -1, -1),
        ("nofile".into(), 2048, 8192),
    ];
    let s = build(&c).unwrap();
    assert_eq!(
        s.process.rlimits,
        vec![
            Rlimit {
                kind: "RLIMIT_NPROC".into(),
                hard: u64::MAX,
                soft: u64::MAX
            },
            Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: 8192,
                soft: 2048
            },
        ]
    );
    let mut c = cfg();
    c.ulimits = vec![("nofiles".into(), 1, 1)];
    let err = build(&c).unwrap_err();
    assert!(matches!(&err, SpecError::InvalidUlimit { name, .. } if name == "nofiles"));
    c.ulimits = vec![("core".into(), 10, 5)];
    assert!(matches!(build(&c), Err(SpecError::InvalidUlimit { .. })));
    c.ulimits = vec![("core".into(), -5, 5)];
    assert!(matches!(build(&c), Err(SpecError::InvalidUlimit { .. })));
}

#[test]
fn security_opts() {
    let cases = [
        ("no-new-privileges", true),
        ("no-new-privileges:true", true),
        ("no-new-privileges=true", true),
        ("no-new-privileges=false", false),
    ];
    for (opt, want) in cases {
        let mut c = cfg();
        c.security_opt = vec![opt.into()];
        assert_eq!(build(&c).unwrap().process.no_new_privileges, want, "{opt}");
    }
    assert!(!build(&cfg()).unwrap().process.no_new_privileges);

    for bad in [
        "seccomp=/etc/profile.json",
        "apparmor=docker-default",
        "label=type:svirt_t",
        "bogus",
        "no-new-privileges=maybe",
        "foo=bar",
    ] {
        let mut c = cfg();
        c.security_opt = vec![bad.into()];
        let err = build(&c).unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidSecurityOpt(o, _) if o == bad),
            "{bad}"
        );
        assert!(err.to_string().contains(bad));
    }
    // Accepted no-ops.
    let mut c = cfg();
    c.security_opt = vec!["apparmor=unconfined".into(), "label:disable".into()];
    assert!(build(&c).unwrap().linux.seccomp.is_some());
}

#[test]
fn oom_score_adj() {
    let mut c = cfg();
    c.oom_score_adj = Some(-500);
    assert_eq!(build(&c).unwrap().process.oom_score_adj, Some(-500));
    c.oom_score_adj = Some(1001);
    assert!(matches!(
        build(&c),
        Err(SpecError::InvalidOomScoreAdj(1001))
    ));
}

// ----- privileged / seccomp ------------------------------------------------

#[test]
fn privileged_drops_confinement() {
    let mut c = cfg();
    c.privileged = true;
    let s = build(&c).unwrap();
    assert!(s.linux.seccomp.is_none());
    assert!(s.linux.masked_paths.is_empty());
    assert!(s.linux.readonly_paths.is_empty());
    let caps = caps_of(&s);
    assert_eq!(caps.len(), 41);
    assert_eq!(caps, ALL_CAPABILITIES.to_vec());
    let res = s.linux.resources.as_ref().unwrap();
    assert_eq!(
        res.devices,
        vec![DeviceCgroup {
            allow: true,
            kind: None,
            major: None,
            minor: None,
            access: Some("rwm".into())
        }]
    );
    let sys = s.mounts.iter().find(|m| m.destination == "/sys").unwrap();
    assert!(sys.options.contains(&"rw".to_string()));
    let cg = s
        .mounts
        .iter()
        .find(|m| m.destination == "/sys/fs/cgroup")
        .unwrap();
    assert!(!cg.options.contains(&"ro".to_string()));
}

#[test]
fn privileged_gets_host_devices() {
    let devs = host_devices(Path::new("/dev"));
    if Path::new("/dev/null").exists() {
        let null = devs
            .iter()
            .find(|d| d.path == "/dev/null")
            .expect("/dev/null");
        assert_eq!((null.kind.as_str(), null.major, null.minor), ("c", 1, 3));
    }
    assert!(devs.iter().all(|d| !d.path.starts_with("/dev/pts/")));
    assert!(
        devs.iter()
            .all(|d| d.path != "/dev/console" && d.path != "/dev/ptmx")
    );
    assert_eq!(dev_major_minor(0x0000_0000_0000_8801), (136, 1));
    assert_eq!(dev_major_minor((259u64 << 8) | 5), (259, 5));
    for (major, minor) in [
        (0u32, 0u32),
        (1, 3),
        (259, 5),
        (4095, 255),
        (4096, 256),
        (0xfffff, 0xfffff),
    ] {
        let dev = libc::makedev(major, minor);
        assert_eq!(dev_major_minor(dev), (i64::from(major), i64::from(minor)));
    }
}

#[test]
fn default_confinement() {
    let s = build(&cfg()).unwrap();
    assert_eq!(s.linux.masked_paths, MASKED_PATHS.to_vec());
    assert_eq!(s.linux.readonly_paths, READONLY_PATHS.to_vec());
    let ns: Vec<&str> = s.linux.namespaces.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(ns, vec!["pid", "network", "ipc", "uts", "mount", "cgroup"]);
    assert!(s.linux.devices.is_empty());
    let rules = &s.linux.resources.as_ref().unwrap().devices;
    assert_eq!(rules.len(), 12);
    assert!(!rules[0].allow && rules[0].kind.is_none() && rules[0].major.is_none());
    let allowed: Vec<RuleKey> = rules[1..]
        .iter()
        .map(|r| {
            assert!(r.allow);
            (
                r.kind.as_deref(),
                r.major,
                r.minor,
                r.access.as_deref().unwrap(),
            )
        })
        .collect();
    for want in [
        (Some("c"), None, None, "m"),
        (Some("b"), None, None, "m"),
        (Some("c"), Some(1), Some(3), "rwm"),
        (Some("c"), Some(1), Some(5), "rwm"),
        (Some("c"), Some(1), Some(7), "rwm"),
        (Some("c"), Some(1), Some(8), "rwm"),
        (Some("c"), Some(1), Some(9), "rwm"),
        (Some("c"), Some(5), Some(0), "rwm"),
        (Some("c"), Some(5), Some(1), "rwm"),
        (Some("c"), Some(5), Some(2), "rwm"),
        (Some("c"), Some(136), None, "rwm"),
    ] {
        assert!(allowed.contains(&want), "{want:?}");
    }
}

#[test]
fn systempaths_unconfined() {
    let mut c = cfg();
    c.security_opt = vec!["systempaths=unconfined".into()];
    let s = build(&c).unwrap();
    assert!(s.linux.masked_paths.is_empty() && s.linux.readonly_paths.is_empty());
    assert!(s.linux.seccomp.is_some());
}

#[test]
fn seccomp_unconfined() {
    for opt in ["seccomp=unconfined", "seccomp:unconfined"] {
        let mut c = cfg();
        c.security_opt = vec![opt.into()];
        let s = build(&c).unwrap();
        assert!(s.linux.seccomp.is_none(), "{opt}");
        assert_eq!(caps_of(&s).len(), 14);
        assert!(!s.linux.masked_paths.is_empty());
    }
}

#[test]
fn default_seccomp_profile() {
    let s = build(&cfg()).unwrap();
    let sc = s.linux.seccomp.as_ref().unwrap();
    assert_eq!(sc.default_action, "SCMP_ACT_ERRNO");
    assert_eq!(sc.default_errno_ret, Some(1));
    assert_eq!(
        sc.architectures,
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    let allowed = allowed_syscalls(sc);
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "rseq",
        "statx",
        "faccessat2",
        "openat2",
        "close_range",
        "clock_nanosleep",
        "futex_waitv",
        "epoll_pwait2",
        "pidfd_open",
        "pidfd_send_signal",
        "copy_file_range",
        "membarrier",
        "landlock_create_ruleset",
        "memfd_create",
        "mlock2",
        "pkey_alloc",
        "preadv2",
        "pwritev2",
        "getrandom",
        "sendmmsg",
        "recvmmsg",
        "arch_prctl",
        "chroot",
        "ptrace",
        "wait4",
        "exit_group",
        "mmap",
        "futex",
        "set_robust_list",
        "prlimit64",
        "sched_getaffinity",
        "epoll_wait",
        "madvise",
    ] {
        assert!(allowed.contains(name), "{name} should be allowed");
    }
    let reach = reachable(sc);
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "open_by_handle_at",
        "userfaultfd",
        "syslog",
        "quotactl",
        "lookup_dcookie",
        "iopl",
        "ioperm",
        "vm86",
        "create_module",
        "uselib",
        "nfsservctl",
        "_sysctl",
        "kcmp",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        "move_pages",
        "mbind",
        "set_mempolicy",
        "get_mempolicy",
        "fanotify_init",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "sethostname",
        "vhangup",
        "clone3",
    ] {
        assert!(!reach.contains(name), "{name} should be denied");
    }
    // clone: only without namespace flags.
    assert!(!allowed.contains("clone"));
    let clone: Vec<&SyscallRule> = sc
        .syscalls
        .iter()
        .filter(|r| r.names.iter().any(|n| n == "clone"))
        .collect();
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].action, "SCMP_ACT_ALLOW");
    assert_eq!(
        clone[0].args,
        vec![SyscallArg {
            index: 0,
            value: 0x7E02_0000,
            value_two: 0,
            op: "SCMP_CMP_MASKED_EQ".into()
        }]
    );
    assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
    // clone3: ENOSYS so libcs fall back to clone.
    let clone3: Vec<&SyscallRule> = sc
        .syscalls
        .iter()
        .filter(|r| r.names.iter().any(|n| n == "clone3"))
        .collect();
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action, "SCMP_ACT_ERRNO");
    assert_eq!(clone3[0].errno_ret, Some(38));
    // personality: only the listed personas, one rule each.
    let pers: Vec<u64> = sc
        .syscalls
        .iter()
        .filter(|r| r.names == ["personality"])
        .map(|r| {
            assert_eq!(r.args.len(), 1);
            assert_eq!(r.args[0].op, "SCMP_CMP_EQ");
            r.args[0].value
        })
        .collect();
    assert_eq!(pers, vec![0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    // socket: anything but AF_VSOCK.
    let socket = sc.syscalls.iter().find(|r| r.names == ["socket"]).unwrap();
    assert_eq!(socket.args[0].value, 40);
    assert_eq!(socket.args[0].op, "SCMP_CMP_NE");
    // ... and a socket type (the rule libseccomp derives for 32-bit socketcall reads a pointer
    // there, which never passes: the guest maps nothing below 1 MiB).
    assert_eq!(socket.args[1].op, "SCMP_CMP_MASKED_EQ");
    assert_eq!(socket.args[1].value & (1 | 0x800 | 0x8_0000 | 10), 0);
    assert!(socket.args[1].value & 0xffd0_0000 != 0);
    const { assert!(0x8_08ff < crate::init::MMAP_MIN_ADDR) };
    // socketcall: anything but SYS_SOCKET, whose family seccomp cannot see.
    let socketcall = sc
        .syscalls
        .iter()
        .find(|r| r.names == ["socketcall"])
        .unwrap();
    assert_eq!(
        (socketcall.args[0].value, socketcall.args[0].op.as_str()),
        (1, "SCMP_CMP_NE")
    );
    assert!(!sc.syscalls[0].names.iter().any(|n| n == "socketcall"));
    // No name appears in two rules with different actions.
    let mut seen = std::collections::BTreeMap::new();
    for r in &sc.syscalls {
        for n in &r.names {
            let prev = seen.insert(n.as_str(), r.action.as_str());
            assert!(prev.is_none() || prev == Some(r.action.as_str()), "{n}");
        }
    }
    // The unconditional allow list has no duplicates.
    let first = &sc.syscalls[0].names;
    assert_eq!(first.len(), first.iter().collect::<BTreeSet<_>>().len());
}

#[test]
fn seccomp_cap_gated_groups() {
    let mut c = cfg();
    c.cap_add = vec!["SYS_ADMIN".into()];
    let s = build(&c).unwrap();
    let sc = s.linux.seccomp.as_ref().unwrap();
    let allowed = allowed_syscalls(sc);
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "bpf",
        "perf_event_open",
    ] {
        assert!(allowed.contains(name), "{name}");
    }
    // No conditional clone / clone3 ENOSYS rule once they are plainly allowed.
    assert_eq!(
        sc.syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == "clone" || n == "clone3"))
            .count(),
        1
    );

    let gated = [
        (
            "SYS_PTRACE",
            &[
                "kcmp",
                "pidfd_getfd",
                "process_vm_readv",
                "process_vm_writev",
            ][..],
        ),
        (
            "SYS_MODULE",
            &["init_module", "finit_module", "delete_module"],
        ),
        ("SYS_TIME", &["settimeofday", "clock_settime"]),
        ("SYS_BOOT", &["reboot"]),
        ("SYSLOG", &["syslog"]),
        (
            "SYS_NICE",
            &["mbind", "set_mempolicy", "get_mempolicy", "move_pages"],
        ),
        ("SYS_RAWIO", &["iopl", "ioperm"]),
        ("SYS_PACCT", &["acct"]),
        ("BPF", &["bpf"]),
        ("PERFMON", &["perf_event_open"]),
        ("DAC_READ_SEARCH", &["open_by_handle_at"]),
        ("SYS_TTY_CONFIG", &["vhangup"]),
    ];
    for (cap, names) in gated {
        let mut c = cfg();
        c.cap_add = vec![cap.into()];
        let s = build(&c).unwrap();
        let allowed = allowed_syscalls(s.linux.seccomp.as_ref().unwrap());
        for name in names {
            assert!(allowed.contains(name), "{cap} should allow {name}");
        }
        assert!(!allowed.contains("mount"), "{cap} must not allow mount");
    }

    // Dropping SYS_CHROOT removes chroot.
    let mut c = cfg();
    c.cap_drop = vec!["SYS_CHROOT".into()];
    let s = build(&c).unwrap();
    assert!(!allowed_syscalls(s.linux.seccomp.as_ref().unwrap()).contains("chroot"));
}

#[test]
fn seccomp_arm64() {
    let p = seccomp::default_profile(&[], Arch::Aarch64);
    assert_eq!(p.architectures, vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
    let allowed = allowed_syscalls(&p);
    assert!(allowed.contains("set_tls") && !allowed.contains("arch_prctl"));
}

// ----- resources -----------------------------------------------------------

#[test]
fn resources_mapping() {
    let mut c = cfg();
    c.memory = 512 << 20;
    c.nano_cpus = 500_000_000;
    c.cpu_shares = 512;
    c.pids_limit = 100;
    let s = build(&c).unwrap();
    let r = s.linux.resources.as_ref().unwrap();
    assert_eq!(
        r.memory,
        Some(Memory {
            limit: Some(512 << 20),
            swap: Some(1024 << 20)
        })
    );
    let cpu = r.cpu.as_ref().unwrap();
    assert_eq!(cpu.quota, Some(50_000));
    assert_eq!(cpu.period, Some(100_000));
    assert_eq!(cpu.shares, Some(512));
    assert_eq!(r.pids, Some(Pids { limit: 100 }));

    c.memory_swap = -1;
    c.nano_cpus = 2_000_000_000;
    let s = build(&c).unwrap();
    let r = s.linux.resources.as_ref().unwrap();
    assert_eq!(r.memory.as_ref().unwrap().swap, Some(-1));
    assert_eq!(r.cpu.as_ref().unwrap().quota, Some(200_000));

    c.memory_swap = 768 << 20;
    let s = build(&c).unwrap();
    assert_eq!(
        s.linux
            .resources
            .as_ref()
            .unwrap()
            .memory
            .as_ref()
            .unwrap()
            .swap,
        Some(768 << 20)
    );
}

#[test]
fn resources_unlimited_by_default() {
    for pids in [0, -1] {
        let mut c = cfg();
        c.pids_limit = pids;
        let s = build(&c).unwrap();
        let r = s.linux.resources.as_ref().unwrap();
        assert!(r.memory.is_none() && r.cpu.is_none() && r.pids.is_none());
    }
    let json = serde_json::to_value(build(&cfg()).unwrap()).unwrap();
    let res = &json["linux"]["resources"];
    assert!(res.get("memory").is_none() && res.get("pids").is_none());
}

#[test]
fn resources_invalid() {
    let cases: [(Mutator, &str); 7] = [
        (|c| c.memory = -5, "memory"),
        (|c| c.memory = 1 << 20, "memory"),
        (|c| c.memory_swap = 1 << 30, "memory_swap"),
        (
            |c| {
                c.memory = 1 << 30;
                c.memory_swap = 1 << 20
            },
            "memory_swap",
        ),
        (|c| c.nano_cpus = 1000, "nano_cpus"),
        (|c| c.cpu_shares = -1, "cpu_shares"),
        (|c| c.shm_size = -1, "shm_size"),
    ];
    for (set, want) in cases {
        let mut c = cfg();
        set(&mut c);
        match build(&c) {
            Err(SpecError::InvalidResource { field, .. }) => assert_eq!(field, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

// ----- mounts ----------------------------------------------------------------

fn find<'a>(s: &'a Spec, dest: &str) -> &'a Mount {
    s.mounts
        .iter()
        .find(|m| m.destination == dest)
        .unwrap_or_else(|| panic!("no mount at {dest}"))
}

#[test]
fn default_mounts() {
    let s = build(&cfg()).unwrap();
    let dests: Vec<&str> = s.mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(
        dests,
        vec![
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm"
        ]
    );
    assert_eq!(find(&s, "/proc").kind, "proc");
    let dev = find(&s, "/dev");
    assert_eq!(dev.kind, "tmpfs");
    assert!(
        dev.options.contains(&"size=65536k".into()) && dev.options.contains(&"mode=755".into())
    );
    let pts = find(&s, "/dev/pts");
    for o in ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] {
        assert!(pts.options.contains(&o.to_string()), "{o}");
    }
    let sys = find(&s, "/sys");
    assert_eq!(sys.kind, "sysfs");
    assert!(sys.options.contains(&"ro".into()));
    assert!(find(&s, "/sys/fs/cgroup").options.contains(&"ro".into()));
    assert_eq!(find(&s, "/dev/mqueue").kind, "mqueue");
    let shm = find(&s, "/dev/shm");
    assert_eq!(shm.kind, "tmpfs");
    assert_eq!(
        shm.options,
        vec![
            "rw",
            "nosuid",
            "noexec",
            "nodev",
            "mode=1777",
            "size=65536k"
        ]
    );
}

#[test]
fn shm_size() {
    let mut c = cfg();
    c.shm_size = 128 << 20;
    let s = build(&c).unwrap();
    assert!(
        find(&s, "/dev/shm")
            .options
            .contains(&"size=131072k".into())
    );
    c.shm_size = 1000;
    let s = build(&c).unwrap();
    assert!(find(&s, "/dev/shm").options.contains(&"size=1000".into()));
}

#[test]
fn tmpfs_parsing() {
    let mut c = cfg();
    c.tmpfs = vec![
        ("/run".into(), "".into()),
        ("/tmp/".into(), "rw,exec,size=64m,mode=1777".into()),
        (
            "/cache".into(),
            "uid=1000,gid=1000,nr_inodes=10k,size=50%,noatime".into(),
        ),
    ];
    let s = build(&c).unwrap();
    let run = find(&s, "/run");
    assert_eq!((run.kind.as_str(), run.source.as_str()), ("tmpfs", "tmpfs"));
    assert_eq!(run.options, vec!["nosuid", "nodev", "noexec", "rprivate"]);
    let tmp = find(&s, "/tmp");
    assert_eq!(
        tmp.options,
        vec![
            "nosuid",
            "nodev",
            "rprivate",
            "rw",
            "exec",
            "size=64m",
            "mode=1777"
        ]
    );
    let cache = find(&s, "/cache");
    assert!(cache.options.contains(&"uid=1000".into()));
    assert!(cache.options.contains(&"size=50%".into()));
    assert!(cache.options.contains(&"noexec".into()));

    for (path, opts) in [
        ("relative", ""),
        ("/", ""),
        ("/x", "size=lots"),
        ("/x", "mode=999"),
        ("/x", "uid=-1"),
        ("/x", "bogus"),
        ("/x", "weird=1"),
    ] {
        let mut c = cfg();
        c.tmpfs = vec![(path.into(), opts.into())];
        let err = build(&c).unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidTmpfs { path: p, .. } if p == path),
            "{path} {opts}: {err}"
        );
    }
    let mut c = cfg();
    c.tmpfs = vec![("/a".into(), "".into()), ("/a/".into(), "".into())];
    assert!(matches!(build(&c), Err(SpecError::InvalidTmpfs { .. })));
}

#[test]
fn tmpfs_overrides_default_mounts() {
    let mut c = cfg();
    c.tmpfs = vec![("/dev/shm".into(), "size=1g".into())];
    let s = build(&c).unwrap();
    let shm: Vec<&Mount> = s
        .mounts
        .iter()
        .filter(|m| m.destination == "/dev/shm")
        .collect();
    assert_eq!(shm.len(), 1);
    assert!(shm[0].options.contains(&"size=1g".into()));

    let mut c = cfg();
    c.tmpfs = vec![("/dev".into(), "".into())];
    let s = build(&c).unwrap();
    assert!(s.mounts.iter().all(|m| !m.destination.starts_with("/dev/")));
    assert_eq!(
        s.mounts.iter().filter(|m| m.destination == "/dev").count(),
        1
    );
}

// ----- JSON and writing ------------------------------------------------------

#[test]
fn json_field_names() {
    let mut c = cfg();
    c.oom_score_adj = Some(100);
    c.ulimits = vec![("nofile".into(), 1, 2)];
    let s = build(&c).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    for key in [
        "\"ociVersion\":\"1.0.2\"",
        "\"noNewPrivileges\"",
        "\"cgroupsPath\"",
        "\"maskedPaths\"",
        "\"readonlyPaths\"",
        "\"defaultAction\"",
        "\"defaultErrnoRet\"",
        "\"oomScoreAdj\":100",
        "\"additionalGids\"",
        "\"errnoRet\"",
        "\"valueTwo\"",
        "\"type\":\"RLIMIT_NOFILE\"",
        "\"type\":\"tmpfs\"",
        "\"type\":\"pid\"",
    ] {
        assert!(json.contains(key), "missing {key}");
    }
    for bad in [
        "oci_version",
        "no_new_privileges",
        "cgroups_path",
        "\"kind\"",
        "errno_ret",
    ] {
        assert!(!json.contains(bad), "unexpected {bad}");
    }
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["process"]["user"]["uid"], 0);
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
    assert!(v["linux"]["resources"]["devices"][1].get("major").is_none());
    // Round trip.
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn write_spec_is_atomic_and_valid() {
    let bundle = tempfile::tempdir().unwrap();
    let s = build(&cfg()).unwrap();
    fs::write(bundle.path().join("config.json"), "stale").unwrap();
    write_spec(&s, bundle.path()).unwrap();
    let text = fs::read_to_string(bundle.path().join("config.json")).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
    let mode = fs::metadata(bundle.path().join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // No temporary files left behind.
    let names: Vec<String> = fs::read_dir(bundle.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["config.json"]);
    // A missing bundle directory is an error naming the path.
    let missing = bundle.path().join("nope");
    let err = write_spec(&s, &missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn build_spec_uses_the_real_host() {
    let root = rootfs();
    let s = build_spec(&cfg(), root.path(), "/berth/x").unwrap();
    assert_eq!(s.oci_version, "1.0.2");
    assert!(caps_of(&s).len() <= 14);
}

#[test]
fn binds_mount_parents_first_with_their_options() {
    let mut c = cfg();
    c.binds = vec![
        BindMount {
            source: "/var/lib/berth/volumes/inner/_data".into(),
            destination: "/data/inner/".into(),
            readonly: true,
            propagation: String::new(),
        },
        BindMount {
            source: "/mnt/host/home/u/src".into(),
            destination: "/data".into(),
            readonly: false,
            propagation: "rshared".into(),
        },
    ];
    let spec = build(&c).unwrap();
    let user: Vec<&Mount> = spec
        .mounts
        .iter()
        .filter(|m| m.destination.starts_with("/data"))
        .collect();
    assert_eq!(user.len(), 2);
    assert_eq!(user[0].destination, "/data");
    assert_eq!(user[0].options, ["rbind", "rshared"]);
    assert_eq!(user[1].destination, "/data/inner");
    assert_eq!(user[1].options, ["rbind", "rprivate", "ro"]);

    c.tmpfs = vec![("/data".into(), String::new())];
    let err = build(&c).unwrap_err().to_string();
    assert!(err.contains("duplicate mount point /data"), "{err}");
    c.tmpfs.clear();
    c.binds[0].source = "relative".into();
    assert!(build(&c).is_err());
}
