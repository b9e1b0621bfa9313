//! PID 1 of the guest: mounts the pseudo filesystems and a cgroup2-only hierarchy, loads the
//! virtio/vsock/overlay/fuse modules, seeds entropy, takes the agent key, sets the hostname,
//! prepares and mounts the data disk, then supervises the agent service (restarting it when it
//! dies, and handing it the key by pipe), reaps every orphan, and powers the VM off cleanly on
//! SIGUSR2/SIGTERM/SIGPWR. It must never exit: the kernel panics.
//!
//! Init's first act is to put the console on fds 0-2 and install a panic hook that writes the
//! panic to the console and to `/dev/kmsg` (which reaches the serial log through printk even
//! when the console's tty is broken), so init never dies silently. `berth.fault=init-panic` on
//! the kernel command line makes init panic once its filesystems are up: the engine's tests use
//! it to check that the message reaches the user.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::{disk, modules};

/// Printed on the console when init starts; benchmarks and the engine look for it.
pub const INIT_MARKER: &str = "berth-init: up";
/// Where init leaves what went wrong at boot, one line each, for the agent's `Info`.
pub const PROBLEMS_FILE: &str = "/run/berth/init-problems";
pub const HOSTNAME: &str = "berth";

fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "berth-init: {msg}");
}

/// The kernel command line word that makes init panic on purpose (a test of the panic path).
pub const FAULT_INIT_PANIC: &str = "berth.fault=init-panic";

/// Init's first act: the console on fds 0-2 (mounting devtmpfs when the initramfs has no
/// `/dev/console`), and the panic hook. Returns whether it mounted devtmpfs on /dev.
fn console_first() -> bool {
    let mut mounted_dev = false;
    if !Path::new("/dev/console").exists() {
        let _ = std::fs::create_dir_all("/dev");
        mounted_dev = mount(
            Some("devtmpfs"),
            "/dev",
            Some("devtmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )
        .is_ok();
    }
    reopen_console();
    std::panic::set_hook(Box::new(|info| report_panic(&info.to_string())));
    mounted_dev
}

/// Writes a panic to stderr (the console) and to the kernel log, ignoring failures: the console
/// may be the very thing that broke.
fn report_panic(what: &str) {
    let line = format!(
        "{} {}",
        berth_agent_proto::INIT_PANIC_PREFIX,
        what.replace('\n', " | ")
    );
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // One write is one record; level 2 (critical) passes `quiet`.
        let _ = kmsg.write_all(format!("<2>{line}\n").as_bytes());
    }
}

/// Milliseconds of CLOCK_BOOTTIME: time since the kernel started.
pub fn boottime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

fn mount_fs(src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    let _ = std::fs::create_dir_all(target);
    if let Err(e) = mount(Some(src), target, Some(fstype), flags, data) {
        log(&format!("mount {fstype} on {target}: {e}"));
    }
}

/// Decodes a `%XX`-escaped command-line word.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The host directories shared over virtio-fs: (tag, host path) from each
/// `berth.share=<tag>:<path>` word.
pub fn shares(cmdline: &str) -> Vec<(String, String)> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("berth.share="))
        .filter_map(|v| {
            let (tag, path) = v.split_once(':')?;
            let path = percent_decode(path)?;
            (path.starts_with('/') && !path.split('/').any(|c| c == "..") && !tag.is_empty())
                .then(|| (tag.to_owned(), path))
        })
        .collect()
}

/// Mounts each share at `/mnt/host<path>`, where bind mounts of host paths find it.
fn mount_shares(cmdline: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (tag, path) in shares(cmdline) {
        let target = format!("{}{path}", crate::containers::volumes::HOST_SHARE_ROOT);
        let _ = std::fs::create_dir_all(&target);
        if let Err(e) = mount(
            Some(tag.as_str()),
            target.as_str(),
            Some("virtiofs"),
            // Root in the VM may write what the user shared, but a setuid file or a device
            // node there gives nothing.
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        ) {
            problems.push(format!("sharing {path} ({tag}): {e}"));
        }
    }
    problems
}

/// Points fds 0-2 at /dev/console (the serial port) once devtmpfs is mounted.
fn reopen_console() {
    let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors with a valid open fd; the File stays alive
        // for the call and the duplicates are owned by the process from then on.
        unsafe {
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&console), fd);
        }
    }
}

fn mount_early(dev_mounted: bool) {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", nodev, None);
    mount_fs("sysfs", "/sys", "sysfs", nodev, None);
    if !dev_mounted {
        mount_fs(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        );
        reopen_console();
    }
}

fn mount_rest() {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    mount_fs("shm", "/dev/shm", "tmpfs", nodev, Some("mode=1777"));
    mount_fs(
        "run",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    );
    mount_fs(
        "tmp",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    );
    mount_fs(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        nodev,
        Some("nsdelegate"),
    );
    // Hand every controller to child groups, as a cgroup2-only host with systemd does.
    if let Ok(controllers) = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        let enable: Vec<String> = controllers
            .split_whitespace()
            .map(|c| format!("+{c}"))
            .collect();
        if let Err(e) = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", enable.join(" ")) {
            log(&format!("enabling cgroup controllers: {e}"));
        }
    }
    let _ = std::fs::create_dir_all("/run/berth");
    // No process may map the first MiB: the seccomp profile tells a 32-bit socketcall's
    // argument pointer from a socket type by its value (see containers::spec::seccomp).
    if let Err(e) = std::fs::write("/proc/sys/vm/mmap_min_addr", MMAP_MIN_ADDR.to_string()) {
        log(&format!("raising vm.mmap_min_addr: {e}"));
    }
}

/// The lowest address a process may map in the guest (`vm.mmap_min_addr`, 64 KiB by default).
pub const MMAP_MIN_ADDR: u64 = 1 << 20;

/// Where the host puts the entropy seed: a file of the initramfs (an archive the host appends
/// per boot), never the kernel command line, which containers read in `/proc/cmdline`.
pub const SEED_FILE: &str = "/berth-seed";

/// Credits the host-provided seed ([`SEED_FILE`]) to the kernel's entropy pool, so the crng is
/// ready at once even without a virtio-rng device, and removes the file.
fn seed_entropy() -> Result<(), String> {
    let bytes = std::fs::read(SEED_FILE).map_err(|e| format!("reading {SEED_FILE}: {e}"))?;
    let _ = std::fs::remove_file(SEED_FILE);
    if bytes.len() < 16 {
        return Err(format!("{SEED_FILE} is too short"));
    }
    #[repr(C)]
    struct RandPoolInfo {
        entropy_count: libc::c_int,
        buf_size: libc::c_int,
        buf: [u8; 64],
    }
    let mut info = RandPoolInfo {
        entropy_count: (bytes.len().min(64) * 8) as libc::c_int,
        buf_size: bytes.len().min(64) as libc::c_int,
        buf: [0; 64],
    };
    info.buf[..bytes.len().min(64)].copy_from_slice(&bytes[..bytes.len().min(64)]);
    let file = std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?;
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    // SAFETY: RNDADDENTROPY reads a rand_pool_info header followed by buf_size bytes, all inside
    // `info`, which lives across the call; the fd is open.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            RNDADDENTROPY,
            &info as *const RandPoolInfo,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

fn bring_up_loopback() -> Result<(), String> {
    let status = Command::new("/bin/busybox")
        .args(["ip", "link", "set", "lo", "up"])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip link set lo up: {status}"))
    }
}

/// Where the host puts the agent key (see `berth_agent_proto::auth`): a file of the appended
/// boot archive, which init reads into memory and removes before anything else runs.
pub const KEY_FILE: &str = "/berth-key";

/// The agent key, out of [`KEY_FILE`], which is removed.
fn take_agent_key() -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(KEY_FILE).map_err(|e| format!("reading {KEY_FILE}: {e}"))?;
    let _ = std::fs::remove_file(KEY_FILE);
    if bytes.len() != berth_agent_proto::auth::KEY_LEN {
        return Err(format!("{KEY_FILE} holds {} bytes, not a key", bytes.len()));
    }
    Ok(bytes)
}

/// The descriptor the agent finds its key on (see `service::auth::KEY_FD_ENV`).
const AGENT_KEY_FD: i32 = 3;

fn spawn_agent(init_started_ms: u64, starts: u32, key: Option<&[u8]>) -> std::io::Result<Child> {
    let mut cmd = Command::new("/init");
    cmd.arg("serve")
        .env("BERTH_INIT_STARTED_MS", init_started_ms.to_string())
        .env("BERTH_AGENT_STARTS", starts.to_string())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // The key travels in a pipe: it never lies in a file, an argument or the environment.
    let pipe = match key {
        Some(key) => {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            // A pipe holds far more than a key: this does not block.
            std::fs::File::from(write).write_all(key)?;
            cmd.env(crate::service::auth::KEY_FD_ENV, AGENT_KEY_FD.to_string());
            Some(read)
        }
        None => None,
    };
    let pipe_fd = pipe.as_ref().map(|p| p.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe
    // functions (sigprocmask, setsid, dup2, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
            libc::setsid();
            if let Some(fd) = pipe_fd {
                // dup2 onto itself keeps close-on-exec; clear it then.
                if fd == AGENT_KEY_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, AGENT_KEY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Signals init handles synchronously; blocked so they queue for `sigtimedwait`.
fn init_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGPWR,
        Signal::SIGINT,
    ] {
        set.add(sig);
    }
    set
}

fn wait_signal(set: &SigSet, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the set and timespec are valid for the call; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Reaps every exited child; returns true if `agent` was among them.
fn reap(agent: Option<u32>) -> bool {
    let mut agent_died = false;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return agent_died,
            Ok(status) => {
                if let Some(pid) = status.pid()
                    && Some(pid.as_raw() as u32) == agent
                {
                    log(&format!("agent exited: {status:?}"));
                    agent_died = true;
                }
            }
        }
    }
}

fn power_off(agent: Option<u32>) -> ! {
    log("powering off");
    if let Some(pid) = agent {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if reap(agent) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Everything else gets SIGKILL; init itself is immune.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(50));
    reap(None);
    // Container root filesystems (overlays) live on the data disk: unmount them first.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let below = format!("{}/", disk::MOUNT_POINT);
    for target in mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&below))
        .collect::<Vec<_>>()
        .iter()
        .rev()
    {
        let _ = nix::mount::umount2(*target, nix::mount::MntFlags::MNT_DETACH);
    }
    if let Err(e) = disk::unmount() {
        log(&format!(
            "unmounting the data disk: {e}; remounting read-only"
        ));
        let _ = mount(
            None::<&str>,
            disk::MOUNT_POINT,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
    nix::unistd::sync();
    log("bye");
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // No power-off path: reboot, which the VMM turns into an exit.
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The kernel's initramfs root (rootfs) cannot be `pivot_root`ed away from, which container
/// runtimes need; so init first copies itself into a tmpfs and switches root to it.
fn switch_to_tmpfs() {
    const NEW_ROOT: &str = "/sysroot";
    let _ = std::fs::create_dir_all(NEW_ROOT);
    if let Err(e) = mount(
        Some("rootfs"),
        NEW_ROOT,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    ) {
        log(&format!(
            "mounting the new root: {e}; staying on the initramfs"
        ));
        return;
    }
    let entries: Vec<String> = std::fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !matches!(n.as_str(), "sysroot" | "proc" | "sys" | "dev"))
                .map(|n| format!("/{n}"))
                .collect()
        })
        .unwrap_or_default();
    let copied = Command::new("/bin/busybox")
        .arg("cp")
        .arg("-a")
        .args(&entries)
        .arg(NEW_ROOT)
        .status();
    if !copied.is_ok_and(|s| s.success()) {
        log("copying the initramfs to the new root failed; staying on the initramfs");
        let _ = nix::mount::umount(NEW_ROOT);
        return;
    }
    for d in ["proc", "sys", "dev"] {
        let _ = std::fs::create_dir_all(Path::new(NEW_ROOT).join(d));
    }
    let err = Command::new("/bin/busybox")
        .args(["switch_root", NEW_ROOT, "/init", "init", "--switched"])
        .exec();
    log(&format!("switch_root: {err}; staying on the initramfs"));
}

pub fn run() -> ! {
    let dev_mounted = console_first();
    let started_ms = match std::env::var("BERTH_INIT_STARTED_MS") {
        Ok(ms) => ms.parse().unwrap_or(0),
        Err(_) => {
            let ms = boottime_ms();
            let _ = writeln!(std::io::stderr(), "{INIT_MARKER} at {ms} ms");
            ms
        }
    };
    if !std::env::args().any(|a| a == "--switched") {
        // SAFETY: PID 1 is single-threaded here; nothing reads the environment concurrently.
        unsafe { std::env::set_var("BERTH_INIT_STARTED_MS", started_ms.to_string()) };
        switch_to_tmpfs();
    }
    mount_early(dev_mounted);
    let set = init_signals();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        log(&format!("blocking signals: {e}"));
    }
    mount_rest();
    let mut problems = Vec::new();
    if let Err(e) = nix::unistd::sethostname(HOSTNAME) {
        problems.push(format!("hostname: {e}"));
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == FAULT_INIT_PANIC) {
        panic!("{FAULT_INIT_PANIC} asked init to fail here");
    }
    if let Err(e) = seed_entropy() {
        problems.push(format!("entropy: {e}"));
    }
    let agent_key = take_agent_key()
        .inspect_err(|e| problems.push(format!("agent key: {e}")))
        .ok();
    if let Err(e) = bring_up_loopback() {
        problems.push(format!("loopback: {e}"));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let module_dir = Path::new("/lib/modules").join(&release);
    match modules::load_all(&module_dir, modules::BOOT_MODULES) {
        Ok(n) => log(&format!("loaded {n} modules")),
        Err(e) => problems.push(format!("modules: {e}")),
    }
    match disk::prepare_and_mount() {
        Ok(true) => log("formatted and mounted the data disk"),
        Ok(false) => log("mounted the data disk"),
        Err(e) => problems.push(format!("data disk: {e}")),
    }
    problems.extend(mount_shares(&cmdline));
    for p in &problems {
        log(p);
    }
    let _ = std::fs::write(PROBLEMS_FILE, problems.join("\n"));
    log(&format!("ready at {} ms", boottime_ms()));

    let mut starts = 0u32;
    let mut agent: Option<u32> = None;
    let mut agent_since = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut restart_at = Some(Instant::now());
    loop {
        if let Some(at) = restart_at
            && Instant::now() >= at
        {
            starts += 1;
            match spawn_agent(started_ms, starts, agent_key.as_deref()) {
                Ok(child) => {
                    agent = Some(child.id());
                    agent_since = Instant::now();
                    restart_at = None;
                }
                Err(e) => {
                    log(&format!("starting the agent: {e}"));
                    restart_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        let timeout = restart_at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(60));
        match wait_signal(&set, timeout) {
            Some(libc::SIGCHLD) if reap(agent) => {
                agent = None;
                if agent_since.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(100);
                }
                log(&format!("restarting the agent in {backoff:?}"));
                restart_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Some(libc::SIGUSR2) | Some(libc::SIGTERM) | Some(libc::SIGPWR) | Some(libc::SIGINT) => {
                power_off(agent)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_come_from_the_command_line_decoded() {
        let cmdline = "console=ttyS0 berth.share=berth0:/root berth.share=berth1:/home/me/My%20Code \
                       berth.share=berth2:/a/../etc berth.share=bad berth.share=berth3:rel";
        assert_eq!(
            shares(cmdline),
            vec![
                ("berth0".to_owned(), "/root".to_owned()),
                ("berth1".to_owned(), "/home/me/My Code".to_owned()),
            ]
        );
        assert_eq!(percent_decode("%zz"), None);
    }
}
