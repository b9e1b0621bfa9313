//! Host paths a container bind-mounts, made safe at every start. Owns the resolution of a bind
//! source under the share root and its staging at `/run/berth/binds/<id>/<n>`.
//!
//! A bind source names a host path, seen in the VM under [`HOST_SHARE_ROOT`]. A container that
//! can write to a share can swap a directory there for a symlink between two starts; the VM's
//! kernel would follow it to the VM's own root. So each source is opened again at every start
//! with `openat2(RESOLVE_IN_ROOT)` under the share root (an absolute link means a host path, as
//! it would on the host), must land on a share (virtio-fs), and is bind-mounted by descriptor
//! onto a staging path that only the agent writes. crun mounts the staging path: what it mounts
//! is what was checked.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;

use super::volumes::HOST_SHARE_ROOT;

/// Where sources are staged, one directory per container.
pub const STAGING_DIR: &str = "/run/berth/binds";

/// virtio-fs is a FUSE file system.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// Opens host path `source` under `share_root`, every component (and every link met on the
/// way) resolved inside it.
pub fn open_under(share_root: &Path, source: &str) -> io::Result<OwnedFd> {
    let root = open(
        share_root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let rel = crate::copy::clean_rel(source);
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(openat2(
        root.as_fd(),
        if rel.is_empty() { "." } else { rel.as_str() },
        how,
    )?)
}

/// Opens bind source `source` (a host path) for a container: resolved under the share root,
/// and refused unless it lies on a share.
pub fn open_source(source: &str) -> io::Result<OwnedFd> {
    let fd = open_under(Path::new(HOST_SHARE_ROOT), source)?;
    let fs = nix::sys::statfs::fstatfs(fd.as_fd())?;
    if fs.filesystem_type().0 as i64 != FUSE_SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{source} is not under a directory shared with the Berth VM"),
        ));
    }
    Ok(fd)
}

/// The path `/proc/self/fd/N` of `fd`: as a mount source, it names exactly the opened file.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Bind-mounts what `fd` names onto a new staging path for container `id` (its `n`th bind)
/// and returns that path. The mount is `nosuid,nodev`, as the shares are.
pub fn stage(id: &str, n: usize, fd: &OwnedFd) -> io::Result<PathBuf> {
    let dir = Path::new(STAGING_DIR).join(id);
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(n.to_string());
    let is_dir =
        nix::sys::stat::fstat(fd.as_fd()).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)?;
    if is_dir {
        std::fs::create_dir(&target)?;
    } else {
        std::fs::File::create(&target)?;
    }
    mount(
        Some(fd_path(fd).as_str()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )?;
    Ok(target)
}

/// Unmounts and removes container `id`'s staged sources. Only empty mount points are removed:
/// a source that could not be unmounted is left alone, never walked into.
pub fn unstage(id: &str) {
    let dir = Path::new(STAGING_DIR).join(id);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let _ = umount2(&p, MntFlags::MNT_DETACH);
        if std::fs::remove_dir(&p).is_err() {
            let _ = std::fs::remove_file(&p);
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn target(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn links_resolve_inside_the_share_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mnt-host");
        std::fs::create_dir_all(root.join("home/u/proj/data")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        symlink("/", root.join("home/u/proj/to-root")).unwrap();
        symlink("../../../../..", root.join("home/u/proj/up")).unwrap();
        symlink("/tmp", root.join("home/u/proj/tmp")).unwrap();
        let canon = std::fs::canonicalize(&root).unwrap();
        for (source, want) in [
            ("/home/u/proj/data", canon.join("home/u/proj/data")),
            ("/home/u/proj/to-root", canon.clone()),
            ("/home/u/proj/to-root/etc/../tmp", canon.join("tmp")),
            ("/home/u/proj/up", canon.clone()),
            ("/home/u/proj/tmp", canon.join("tmp")),
            ("/../../home/u", canon.join("home/u")),
        ] {
            let fd = open_under(&root, source).unwrap();
            assert_eq!(target(&fd), want, "{source}");
        }
        let err = open_under(&root, "/home/u/proj/to-root/etc/passwd").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_path_off_the_shares_is_refused() {
        // The test host's /mnt/host is not virtio-fs (or is missing): never a share.
        assert!(open_source("/").is_err());
    }
}
