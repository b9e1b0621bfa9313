//! Tree copies into a root filesystem: COPY and ADD in builds, a volume's first fill from its
//! image, the layer a commit takes from a container. Owns [`Root`], the one way the agent
//! writes into a tree that an image or a container controls.
//!
//! Every destination path is resolved inside its root (`openat2` with `RESOLVE_IN_ROOT`), so a
//! symlink that an image or a RUN step planted leads at most elsewhere in the same root, as it
//! would inside the container, never to the VM's own files or a host share. Leaves are created
//! with `O_EXCL`/`O_NOFOLLOW` in a directory opened that way, and sources are read through
//! descriptors opened without following links. What is copied keeps owners (or a given owner),
//! modes with their setuid bits, symlinks as links and device nodes (overlay whiteouts among
//! them). Copying into a directory merges with what is there; a file replaces a non-directory.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat, openat2, readlinkat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmod, fchmodat, fstatat, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};

/// How deep a copied tree may nest: the walk holds one descriptor per level. Real images stay
/// far below; a deeper tree (an attack on the agent) is an error, not a crash.
pub const MAX_DEPTH: usize = 512;

/// A directory every destination path is resolved inside of.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` (a directory the agent chose, such as a build step's merged view) as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    fn how(flags: OFlag) -> OpenHow {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    }

    /// The directory at `rel` (cleaned, relative), symlinks followed inside the root.
    pub fn open_dir(&self, rel: &str) -> io::Result<OwnedFd> {
        let path = if rel.is_empty() { "." } else { rel };
        Ok(openat2(
            self.fd.as_fd(),
            path,
            Self::how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
        )?)
    }

    /// Whether `rel` resolves (inside the root) to a directory.
    pub fn is_dir(&self, rel: &str) -> bool {
        self.open_dir(rel).is_ok()
    }

    /// The directory at `rel`, created (0755, owned by root) where missing along the way. A
    /// dangling link on the way gets its target made, inside the root, as dockerd's COPY does.
    pub fn create_dir_all(&self, rel: &str) -> io::Result<OwnedFd> {
        self.create_dir_all_hops(rel, 0)
    }

    fn create_dir_all_hops(&self, rel: &str, hops: usize) -> io::Result<OwnedFd> {
        let mut cur = self.open_dir("")?;
        let mut prefix = String::new();
        for comp in clean_rel(rel).split('/').filter(|c| !c.is_empty()) {
            let parent = std::mem::take(&mut prefix);
            prefix = join(&parent, comp);
            cur = match self.open_dir(&prefix) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match mkdirat(cur.as_fd(), comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) => {}
                        Err(Errno::EEXIST) => {
                            // A link whose target is missing: make the target (inside the root).
                            let target = readlinkat(cur.as_fd(), comp)?;
                            if hops >= 40 {
                                return Err(Errno::ELOOP.into());
                            }
                            let target = target.to_string_lossy();
                            let target = if target.starts_with('/') {
                                clean_rel(&target)
                            } else {
                                clean_rel(&format!("{parent}/{target}"))
                            };
                            self.create_dir_all_hops(&target, hops + 1)?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    self.open_dir(&prefix)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }
}

/// `path` made relative and lexical: no empty, `.` or `..` components (`..` stops at the top).
pub fn clean_rel(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}

/// Copies one entry `from` (file, link, device node, or directory tree) to `to` inside `root`,
/// owned by `owner` or by its own owner when `None`. A directory merges into what `to`
/// resolves to inside the root (a link there is followed, inside the root); any other entry
/// replaces what is at `to`. An empty `to` is the root itself.
pub fn copy_entry(from: &Path, root: &Root, to: &str, owner: Option<(u32, u32)>) -> io::Result<()> {
    let parent = match from.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = from.file_name().unwrap_or(OsStr::new("."));
    let src_dir = open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let name = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))?;
    let to = clean_rel(to);
    let st = fstatat(
        src_dir.as_fd(),
        name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let dst = root.create_dir_all(&to)?;
        let (uid, gid) = owner.unwrap_or((st.st_uid, st.st_gid));
        set_owner_and_mode(&dst, uid, gid, st.st_mode)?;
        let src = open_src_dir(src_dir.as_fd(), &name)?;
        return copy_children(src, dst, &to, owner);
    }
    if to.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "only a directory can be copied onto a root",
        ));
    }
    let (parent_rel, leaf) = split(&to);
    let dst = root.open_dir(parent_rel)?;
    copy_at(
        src_dir.as_fd(),
        &name,
        dst.as_fd(),
        &cstr(leaf)?,
        &to,
        owner,
    )
    .map(drop)
}

/// Copies the contents of directory `from` into directory `to` inside the root (a link at
/// `to` is followed, inside the root).
pub fn copy_into(from: &Path, root: &Root, to: &str, owner: Option<(u32, u32)>) -> io::Result<()> {
    let src = open(
        from,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let to = clean_rel(to);
    let dst = root.open_dir(&to)?;
    copy_children(src, dst, &to, owner)
}

fn open_src_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// The owner first: chown clears setuid and setgid bits, which the mode then restores.
fn set_owner_and_mode(fd: &OwnedFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    fchown(
        fd.as_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(mode & 0o7777))?;
    Ok(())
}

/// The names in directory `fd` (without `.` and `..`), last first (popped in order).
fn names_in(fd: &OwnedFd, to: &str) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in nix::dir::Dir::from_fd(fd.try_clone()?)?.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        if std::str::from_utf8(name.as_bytes()).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{to}: a file name that is not UTF-8"),
            ));
        }
        names.push(name);
    }
    names.sort_by(|a, b| b.cmp(a));
    Ok(names)
}

/// Copies the children of source directory `src` into destination directory `dst` (named
/// `to` in messages), walking with a stack of open directory pairs: no recursion, so a deep
/// tree cannot exhaust the thread's stack.
fn copy_children(
    src: OwnedFd,
    dst: OwnedFd,
    to: &str,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let names = names_in(&src, to)?;
    let mut stack = vec![(src, dst, names, to.to_owned())];
    while let Some((src, dst, names, to)) = stack.last_mut() {
        let Some(name) = names.pop() else {
            stack.pop();
            continue;
        };
        let child = join(to, &String::from_utf8_lossy(name.as_bytes()));
        if let Some((sub_src, sub_dst)) =
            copy_at(src.as_fd(), &name, dst.as_fd(), &name, &child, owner)?
        {
            if stack.len() >= MAX_DEPTH {
                return Err(io::Error::other(format!(
                    "{child}: the tree nests deeper than {MAX_DEPTH} directories"
                )));
            }
            let names = names_in(&sub_src, &child)?;
            stack.push((sub_src, sub_dst, names, child));
        }
    }
    Ok(())
}

/// Copies entry `name` of `src_dir` to `leaf` in `dst_dir` (named `to` in messages). What is at
/// `leaf` is never followed: a directory there is merged into, anything else (a link included)
/// is replaced. For a directory, returns the opened source and destination, whose children
/// the caller copies next.
fn copy_at(
    src_dir: BorrowedFd<'_>,
    name: &CStr,
    dst_dir: BorrowedFd<'_>,
    leaf: &CStr,
    to: &str,
    owner: Option<(u32, u32)>,
) -> io::Result<Option<(OwnedFd, OwnedFd)>> {
    let st = fstatat(src_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let (uid, gid) = owner.unwrap_or((st.st_uid, st.st_gid));
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let existing = fstatat(dst_dir, leaf, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let existing_dir = existing.is_some_and(|e| e.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if kind == SFlag::S_IFDIR {
        if existing.is_some() && !existing_dir {
            unlinkat(dst_dir, leaf, UnlinkatFlags::NoRemoveDir)?;
        }
        if !existing_dir {
            mkdirat(dst_dir, leaf, Mode::from_bits_truncate(0o700))?;
        }
        let dst = open_src_dir(dst_dir, leaf)?;
        set_owner_and_mode(&dst, uid, gid, st.st_mode)?;
        return Ok(Some((open_src_dir(src_dir, name)?, dst)));
    }
    if existing_dir {
        return Err(io::Error::other(format!(
            "{to}: cannot replace a directory with a file"
        )));
    }
    if existing.is_some() {
        unlinkat(dst_dir, leaf, UnlinkatFlags::NoRemoveDir)?;
    }
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    if kind == SFlag::S_IFLNK {
        let target = readlinkat(src_dir, name)?;
        symlinkat(target.as_os_str(), dst_dir, leaf)?;
        fchownat(dst_dir, leaf, u, g, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    } else if kind == SFlag::S_IFREG {
        let src = openat(
            src_dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let dst = openat(
            dst_dir,
            leaf,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        io::copy(
            &mut std::fs::File::from(src),
            &mut std::fs::File::from(dst.try_clone()?),
        )?;
        set_owner_and_mode(&dst, uid, gid, st.st_mode)?;
    } else {
        mknodat(dst_dir, leaf, kind, perm, st.st_rdev as libc::dev_t)?;
        fchownat(dst_dir, leaf, u, g, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        // The node was just made here and is no link: there is nothing to follow.
        fchmodat(dst_dir, leaf, perm, FchmodatFlags::FollowSymlink)?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn trees_keep_modes_links_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/file"), b"x").unwrap();
        std::fs::set_permissions(
            src.join("sub/file"),
            std::fs::Permissions::from_mode(0o4750),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/file", src.join("link")).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let dst = dir.path().join("dst");
        std::fs::create_dir_all(dst.join("sub")).unwrap();
        std::fs::write(dst.join("sub/kept"), b"k").unwrap();
        let root = Root::open(&dst).unwrap();
        copy_entry(&src, &root, "", None).unwrap();
        assert_eq!(std::fs::read(dst.join("sub/file")).unwrap(), b"x");
        assert_eq!(
            std::fs::read(dst.join("sub/kept")).unwrap(),
            b"k",
            "a merge"
        );
        assert_eq!(
            mode(&dst.join("sub/file")),
            0o4750,
            "setuid survives the chown"
        );
        assert_eq!(mode(&dst), 0o1777);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("sub/file")
        );
        copy_entry(&src.join("sub/file"), &root, "owned", Some((1000, 1000))).unwrap();
        assert_eq!(std::fs::metadata(dst.join("owned")).unwrap().uid(), 1000);
        // A file replaces a file (and a link) at its name.
        copy_entry(&src.join("sub/file"), &root, "link", None).unwrap();
        assert!(
            std::fs::symlink_metadata(dst.join("link"))
                .unwrap()
                .is_file()
        );
    }

    /// A RUN step planted links that lead out of the image; COPY writes stay inside it.
    #[test]
    fn planted_links_lead_only_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("host-home");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join(".bashrc"), b"original").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir_all(image.join("app")).unwrap();
        // Absolute, relative and dangling links out of the root, at every depth of the walk.
        std::os::unix::fs::symlink(&outside, image.join("app/x")).unwrap();
        std::os::unix::fs::symlink("../../host-home", image.join("app/y")).unwrap();
        std::os::unix::fs::symlink(&outside, image.join("dest")).unwrap();
        std::os::unix::fs::symlink(outside.join(".bashrc"), image.join("app/f")).unwrap();
        let ctx = dir.path().join("ctx");
        for d in ["d/x", "d/y"] {
            std::fs::create_dir_all(ctx.join(d)).unwrap();
            std::fs::write(ctx.join(d).join(".bashrc"), b"evil").unwrap();
        }
        std::fs::write(ctx.join("d/f"), b"evil").unwrap();
        let root = Root::open(&image).unwrap();
        copy_into(&ctx.join("d"), &root, "app", None).unwrap();
        let fd = root.create_dir_all("dest/sub").unwrap();
        drop(fd);
        copy_into(&ctx.join("d"), &root, "/dest/sub/../", None).unwrap();
        assert_eq!(std::fs::read(outside.join(".bashrc")).unwrap(), b"original");
        assert_eq!(mode(&outside), 0o700, "the outside directory kept its mode");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        // Below the destination, a link is replaced as tar replaces it, never followed.
        for p in ["app/x", "app/y"] {
            assert!(std::fs::symlink_metadata(image.join(p)).unwrap().is_dir());
            assert_eq!(
                std::fs::read(image.join(p).join(".bashrc")).unwrap(),
                b"evil"
            );
        }
        assert!(
            std::fs::symlink_metadata(image.join("app/f"))
                .unwrap()
                .is_file()
        );
        // The destination itself resolved inside the image, as it would in the container.
        let inside = image.join(outside.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(inside.join("x/.bashrc")).unwrap(), b"evil");
        assert!(inside.join("sub").is_dir());
    }

    #[test]
    fn too_deep_trees_are_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        // Built relative to a moving directory, since the whole path passes PATH_MAX.
        let mut fd = std::fs::File::open(&src).unwrap();
        for _ in 0..MAX_DEPTH + 2 {
            mkdirat(fd.as_fd(), "d", Mode::from_bits_truncate(0o755)).unwrap();
            fd = std::fs::File::from(
                openat(fd.as_fd(), "d", OFlag::O_DIRECTORY, Mode::empty()).unwrap(),
            );
        }
        let dst = dir.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let err = copy_into(&src, &Root::open(&dst).unwrap(), "", None).unwrap_err();
        assert!(err.to_string().contains("deeper than"), "{err}");
    }

    #[test]
    fn paths_clean_lexically() {
        assert_eq!(clean_rel("/a/./b/../c/"), "a/c");
        assert_eq!(clean_rel("../../x"), "x");
        assert_eq!(clean_rel("/"), "");
    }
}
