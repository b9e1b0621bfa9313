//! `docker cp` and `docker export`: tar streams out of and into a container's filesystem.
//!
//! The work runs in a helper process (`berth-agent archive OP ROOTFS [PATH]`) that first
//! mounts the container's volumes and bind mounts over its rootfs in a mount namespace of its
//! own (so `docker cp` sees into them, as with dockerd), then chroots into the rootfs, so
//! paths and symlinks resolve the way they do inside the container and nothing can reach
//! outside it, whatever the tar or the links say. The
//! helper answers on stdout (a tar, or the stat JSON) and exits with [`NOT_FOUND`] or
//! [`INVALID`] for the errors dockerd answers with 404 and 400.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

/// Exit status of the helper for a path that does not exist.
pub const NOT_FOUND: u8 = 3;
/// Exit status for a request dockerd refuses as invalid.
pub const INVALID: u8 = 4;

/// Docker's container path stat (`X-Docker-Container-Path-Stat`): the mode in Go's
/// `os.FileMode` bits, as the docker CLI decodes it.
#[derive(Debug, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` for a file's metadata.
pub fn go_mode(meta: &std::fs::Metadata) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let ft = meta.file_type();
    let raw = meta.permissions().mode();
    let mut mode = raw & 0o777;
    if ft.is_dir() {
        mode |= DIR;
    } else if ft.is_symlink() {
        mode |= SYMLINK;
    } else if ft.is_fifo() {
        mode |= PIPE;
    } else if ft.is_socket() {
        mode |= SOCKET;
    } else if ft.is_char_device() {
        mode |= DEVICE | CHAR;
    } else if ft.is_block_device() {
        mode |= DEVICE;
    }
    if raw & 0o4000 != 0 {
        mode |= SETUID;
    }
    if raw & 0o2000 != 0 {
        mode |= SETGID;
    }
    if raw & 0o1000 != 0 {
        mode |= STICKY;
    }
    mode
}

/// The last element of a container path as the client named it (`/etc/` is `etc`, `/a/.`
/// is `.`, `/` is `/`).
pub fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

/// Stats `path` (not following a final symlink) relative to the current root.
pub fn stat(path: &str) -> std::io::Result<PathStat> {
    let meta = std::fs::symlink_metadata(path)?;
    let link_target = if meta.file_type().is_symlink() {
        std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| {
                std::fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            })
    } else {
        String::new()
    };
    let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    Ok(PathStat {
        name: base_name(path),
        size: meta.len() as i64,
        mode: go_mode(&meta),
        mtime: crate::clock::format(mtime),
        link_target,
    })
}

/// Appends `src` under the archive name `name`, and a directory's contents below it. Sockets
/// and device nodes are left out, as they cannot be copied meaningfully.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, src: &Path, name: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_socket() || ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        return Ok(());
    }
    if !name.as_os_str().is_empty() {
        b.append_path_with_name(src, name)?;
    }
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(src)?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for entry in entries {
            append_tree(b, &src.join(&entry), &name.join(&entry))?;
        }
    }
    Ok(())
}

/// Writes a tar of `path` (relative to the current root) to `out`, entries named from the
/// path's last element down, as dockerd's archive endpoint does.
pub fn write_tar(path: &str, out: impl Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let base = base_name(path);
    let name = if base == "/" {
        PathBuf::new()
    } else {
        PathBuf::from(base)
    };
    append_tree(&mut b, Path::new(path), &name)?;
    b.into_inner()?.flush()
}

/// Unpacks a tar from `input` into the directory `dest` (relative to the current root).
/// Entries that would land outside `dest` are refused by the tar reader; owners are kept only
/// with `keep_owners` (otherwise the files belong to the unpacking user, root).
pub fn unpack(input: impl Read, dest: &Path, keep_owners: bool) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(keep_owners);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "refusing archive entry {}: outside the destination",
                    path.display()
                ),
            ));
        }
        if !entry.unpack_in(dest)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("refusing archive entry {}", path.display()),
            ));
        }
    }
    Ok(())
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprint!("{msg}");
    ExitCode::from(code)
}

/// Mounts each `(source, destination, read_only)` over its destination inside `rootfs`, in a
/// mount namespace of this process's own (gone when it exits). A destination that resolves
/// outside `rootfs` (a symlink in the container) or does not exist is skipped.
fn bind_mounts(rootfs: &str, binds: &[(String, String, bool)]) -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    if binds.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    let root = std::fs::canonicalize(rootfs)?;
    let resolver = crate::copy::Root::open(&root)?;
    for (source, dest, read_only) in binds {
        // A container that never ran has no mount points yet: a directory's is made, inside
        // the root whatever links its image holds, as dockerd makes them at create.
        let rel = crate::copy::clean_rel(dest);
        if std::fs::symlink_metadata(root.join(&rel)).is_err()
            && std::fs::metadata(source).is_ok_and(|m| m.is_dir())
        {
            let _ = resolver.create_dir_all(&rel);
        }
        let Ok(target) = std::fs::canonicalize(root.join(&rel)) else {
            continue;
        };
        if !target.starts_with(&root) {
            continue;
        }
        // A host path is resolved again under the share root, and mounted by descriptor.
        let host = source.strip_prefix(super::volumes::HOST_SHARE_ROOT);
        let fd = match host {
            Some(host) if host.starts_with('/') => match super::binds::open_source(host) {
                Ok(fd) => Some(fd),
                Err(_) => continue,
            },
            _ => None,
        };
        let source = fd
            .as_ref()
            .map_or_else(|| source.clone(), super::binds::fd_path);
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
        if *read_only {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )?;
        }
    }
    Ok(())
}

fn enter(rootfs: &str, binds: &[(String, String, bool)]) -> std::io::Result<()> {
    bind_mounts(rootfs, binds)?;
    nix::unistd::chroot(rootfs).map_err(std::io::Error::from)?;
    std::env::set_current_dir("/")
}

/// The `--bind SRC DST ro|rw` arguments.
fn binds_of(args: &[String]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--bind"
            && let (Some(src), Some(dst), Some(mode)) = (it.next(), it.next(), it.next())
        {
            out.push((src.clone(), dst.clone(), mode == "ro"));
        }
    }
    out
}

/// The helper's entry point: `archive stat|get|put ROOTFS PATH [--keep-owners] [--bind SRC
/// DST ro|rw]...`, `archive export ROOTFS`.
pub fn run(args: &[String]) -> ExitCode {
    let (Some(op), Some(rootfs)) = (args.first(), args.get(1)) else {
        return fail(
            2,
            "usage: berth-agent archive stat|get|put|export ROOTFS [PATH]",
        );
    };
    let path = args.get(2).cloned().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        return fail(INVALID, format!("path {path} is not absolute"));
    }
    if let Err(e) = enter(rootfs, &binds_of(args)) {
        return fail(1, format!("entering the container's filesystem: {e}"));
    }
    let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let result = match op.as_str() {
        "stat" => stat(&path).and_then(|s| {
            serde_json::to_writer(std::io::stdout().lock(), &s).map_err(std::io::Error::other)
        }),
        "get" | "export" => match std::fs::symlink_metadata(&path) {
            Err(e) => Err(e),
            Ok(_) => write_tar(&path, std::io::BufWriter::new(std::io::stdout().lock())),
        },
        "put" => match std::fs::metadata(&path) {
            Err(e) => Err(e),
            Ok(m) if !m.is_dir() => {
                return fail(INVALID, "extraction point is not a directory");
            }
            Ok(_) => unpack(
                std::io::stdin().lock(),
                Path::new(&path),
                args.iter().any(|a| a == "--keep-owners"),
            ),
        },
        _ => return fail(2, format!("unknown archive operation {op}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if not_found(&e) => fail(NOT_FOUND, format!("Could not find the file {path}")),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => fail(INVALID, e),
        Err(e) => fail(1, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_modes_as_docker_reports_them() {
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/a/b/."), ".");
        assert_eq!(base_name("/"), "/");
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(go_mode(&d) >> 31, 1);
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let m = go_mode(&std::fs::metadata(&f).unwrap());
        assert_eq!(m, 0o755 | 1 << 23);
    }

    #[test]
    fn tar_round_trip_rebases_on_the_last_element() {
        let src = tempfile::tempdir().unwrap();
        let tree = src.path().join("data");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/file"), b"hello").unwrap();
        std::os::unix::fs::symlink("sub/file", tree.join("link")).unwrap();
        let mut tar = Vec::new();
        write_tar(tree.to_str().unwrap(), &mut tar).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["data", "data/link", "data/sub", "data/sub/file"]);
        let dest = tempfile::tempdir().unwrap();
        unpack(&tar[..], dest.path(), false).unwrap();
        assert_eq!(
            std::fs::read(dest.path().join("data/sub/file")).unwrap(),
            b"hello"
        );
        assert_eq!(
            std::fs::read_link(dest.path().join("data/link")).unwrap(),
            Path::new("sub/file")
        );
    }

    #[test]
    fn entries_leaving_the_destination_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dest = outside.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        // set_path refuses `..`, so write the name field directly as a hostile client would.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"bad"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err = unpack(&tar[..], &dest, false).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(!outside.path().join("escape").exists());
    }
}
