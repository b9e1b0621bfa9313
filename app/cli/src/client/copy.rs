//! `cp`: files between a container and the host, through the engine's archive API, with the
//! docker CLI's rules for where a copy lands: into an existing directory, else as the named
//! path (its parent must exist); `-` streams a tar on stdin or stdout.
//!
//! Owns the host side of a copy out of a container too: unpacking the guest's tar into a host
//! directory without trusting it (see [`extract`]): nothing is created, written or linked
//! outside the destination, and nothing is written through a symlink.

use berth_agent_proto::tarpath::{climbs_out, parse_rel_path};
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bollard::container::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens,
    mkdirat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, linkat, mkfifoat, symlinkat, unlinkat};
use tar::EntryType;

use super::format::human_size;
use super::{CliError, Client, Result};

#[derive(clap::Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy.
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar on stdin)
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar on stdout)
    dest: String,
}

/// `CONTAINER:PATH` as (container, path); a host path (absolute, `.`-relative or without a
/// colon) as (None, path).
fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

fn fail(message: impl Into<String>) -> CliError {
    CliError::new(1, message)
}

/// The last component of a path (`/a/b/` is `b`), `.` for the root.
fn base_name(path: &str) -> String {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned())
}

pub async fn cp(client: &Client, args: CpArgs) -> Result<ExitCode> {
    match (split_arg(&args.src), split_arg(&args.dest)) {
        ((Some(_), _), (Some(_), _)) => Err(fail("copying between containers is not supported")),
        ((None, _), (None, _)) => Err(fail("must specify at least one container source")),
        ((Some(c), path), (None, dest)) => from_container(client, &args, c, path, dest).await,
        ((None, src), (Some(c), path)) => to_container(client, &args, src, c, path).await,
    }
}

async fn from_container(
    client: &Client,
    args: &CpArgs,
    container: &str,
    path: &str,
    dest: &str,
) -> Result<ExitCode> {
    let mut stream = client.docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.map_err(|e| client.error(e, 1))?);
    }
    if dest == "-" {
        std::io::stdout()
            .write_all(&tar)
            .map_err(|e| fail(format!("writing to stdout: {e}")))?;
        return Ok(ExitCode::SUCCESS);
    }
    let dest_path = Path::new(dest);
    // Into an existing directory as is; otherwise the copy's top entry takes the dest's name.
    let (dir, rename) = if dest_path.is_dir() {
        (dest_path.to_path_buf(), None)
    } else {
        let parent = match dest_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(fail(format!("no such directory: {}", parent.display())));
        }
        (parent, Some(base_name(dest)))
    };
    let done = extract(&tar, &dir, rename.as_deref())
        .map_err(|e| fail(format!("extracting the copy: {e}")))?;
    for name in &done.skipped {
        eprintln!("WARNING: {name} is a device node, which is not copied to the host");
    }
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {dest}",
            human_size(done.bytes as f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why an extraction into a host directory stopped.
#[derive(Debug, thiserror::Error)]
enum ExtractError {
    /// The entry would be created, written or linked outside the destination, or through a
    /// symlink. `entry` is the path as the archive writes it.
    #[error("refusing {entry:?}: {reason}")]
    Escape { entry: String, reason: String },
    #[error("{entry}: {source}")]
    Io { entry: String, source: io::Error },
    #[error("not a valid tar stream: {0}")]
    Corrupt(String),
}

/// What one extraction did.
#[derive(Debug, Default)]
struct Extracted {
    /// Bytes of regular file content written.
    bytes: u64,
    /// Entries left out (device nodes), as the archive names them.
    skipped: Vec<String>,
}

/// Permission bits kept on files and FIFOs: setuid and setgid are dropped, since
/// the copy is owned by whoever runs the CLI (root too), not by the owner in the archive.
const FILE_MODE_MASK: u32 = 0o1777;
/// Permission bits kept on directories (setgid and sticky included).
const DIR_MODE_MASK: u32 = 0o3777;

/// Unpacks `tar` into `dir`, the first component of each entry (and of each hard link's
/// target, as the docker CLI rebases them) replaced by `rename`.
///
/// The archive comes from the guest and is not trusted. Every entry is created inside `dir`
/// by `*at` calls relative to a descriptor of its parent, reached from `dir` one component at
/// a time with `O_NOFOLLOW`: a symlink on the way (one the archive made or one already in
/// `dir`) is refused, never followed. Leaves are created exclusively (`O_EXCL | O_NOFOLLOW`,
/// `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`) after whatever non-directory held their
/// name is unlinked. Absolute names and `..` are refused; symlinks are created as symlinks,
/// as `docker cp` does, but one whose relative target climbs above `dir` is refused (dockerd's
/// breakout rule); hard links may only name a file this extraction created. Device nodes are
/// skipped.
fn extract(tar: &[u8], dir: &Path, rename: Option<&str>) -> Extract<Extracted> {
    let shown = dir.display().to_string();
    let root = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys_error(&shown, e))?;
    let rename = match rename {
        Some(n) if n.is_empty() || n == "." || n == ".." || n.contains('/') => {
            return Err(escape(n, "not a name for a file in the destination".into()));
        }
        Some(n) => Some(cstring(n.as_bytes().to_vec(), n)?),
        None => None,
    };
    let mut extractor = Extractor {
        root,
        rename,
        created: HashSet::new(),
        deferred: Vec::new(),
        out: Extracted::default(),
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(corrupt)? {
        extractor.entry(entry.map_err(corrupt)?)?;
    }
    extractor.finish_dirs()?;
    Ok(extractor.out)
}

/// Mode and time of an entry.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    mtime: TimeSpec,
}

/// Why a walk beneath the destination stopped.
enum Walk {
    /// Component `n` of the walked path is a symlink.
    Symlink(usize),
    /// A component does not exist (and the walk was not asked to create it).
    Missing,
    Sys(Errno),
}

struct Extractor {
    root: OwnedFd,
    rename: Option<CString>,
    /// The non-directories this extraction created, by path below the destination: the only
    /// names a hard link may point at.
    created: HashSet<Vec<CString>>,
    /// Directories whose mode and time land once everything inside them is written.
    deferred: Vec<(String, Vec<CString>, Meta)>,
    out: Extracted,
}

/// An extraction step's outcome.
type Extract<T> = std::result::Result<T, ExtractError>;
type Done = Extract<()>;

impl Extractor {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Done {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let etype = entry.header().entry_type();
        if etype == EntryType::XGlobalHeader {
            return Ok(());
        }
        let comps = self.target(&raw).map_err(|reason| escape(&name, reason))?;
        let comps = to_cstrings(&comps, &name)?;
        if comps.is_empty() {
            // `.` or `./`: the destination itself, which stays as it is.
            return Ok(());
        }
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let meta = read_meta(&entry, &name)?;
        match etype {
            // Pre-POSIX archives mark directories with a trailing slash only.
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
                if raw.ends_with(b"/") =>
            {
                self.dir(&name, comps, meta)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = entry.size();
                self.file(&mut entry, size, &name, comps, &meta)
            }
            EntryType::Directory => self.dir(&name, comps, meta),
            EntryType::Symlink => self.symlink(&name, comps, link, &meta),
            EntryType::Link => self.hardlink(&name, comps, link),
            EntryType::Fifo => self.fifo(&name, comps, &meta),
            EntryType::Char | EntryType::Block => {
                self.out.skipped.push(name);
                Ok(())
            }
            other => Err(ExtractError::Corrupt(format!(
                "entry {name:?} has unsupported type {:?}",
                other.as_byte() as char
            ))),
        }
    }

    /// The components of an entry's path (or a hard link's target) below the destination,
    /// the first one renamed.
    fn target<'p>(&'p self, raw: &'p [u8]) -> std::result::Result<Vec<&'p [u8]>, String> {
        let mut comps = parse_rel_path(raw)?;
        if let (Some(name), Some(first)) = (&self.rename, comps.first_mut()) {
            *first = name.to_bytes();
        }
        Ok(comps)
    }

    fn file(
        &mut self,
        data: &mut impl Read,
        size: u64,
        name: &str,
        comps: Vec<CString>,
        meta: &Meta,
    ) -> Done {
        let (parent, leaf) = self.prepare_leaf(name, &comps)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&parent, leaf, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| sys_error(name, e))?;
        let mut file = File::from(fd);
        let written = io::copy(data, &mut file).map_err(|e| io_error(name, e))?;
        self.created.insert(comps);
        if written != size {
            return Err(ExtractError::Corrupt(format!(
                "entry {name:?} is truncated: {written} of {size} bytes"
            )));
        }
        self.out.bytes += written;
        fchmod(&file, Mode::from_bits_truncate(meta.mode & FILE_MODE_MASK))
            .map_err(|e| sys_error(name, e))?;
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| sys_error(name, e))
    }

    fn dir(&mut self, name: &str, comps: Vec<CString>, meta: Meta) -> Done {
        let (leaf, parent_comps) = comps
            .split_last()
            .expect("a directory entry below the root");
        let parent = self.open_parent(name, parent_comps)?;
        match fstatat(&parent, leaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if file_kind(&st) == SFlag::S_IFDIR => {}
            // An earlier entry of this copy: replaced, as the docker CLI does.
            Ok(_) if self.created.remove(&comps) => {
                unlinkat(&parent, leaf.as_c_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| sys_error(name, e))?;
                mkdirat(&parent, leaf.as_c_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| sys_error(name, e))?;
            }
            Ok(_) => {
                return Err(io_error(
                    name,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "cannot overwrite a non-directory with a directory",
                    ),
                ));
            }
            Err(Errno::ENOENT) => {
                mkdirat(&parent, leaf.as_c_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| sys_error(name, e))?
            }
            Err(e) => return Err(sys_error(name, e)),
        }
        // Mode and time land after the contents (see `finish_dirs`), so that a read-only
        // directory can still be filled and its mtime is not disturbed by the filling.
        self.deferred.push((name.to_owned(), comps, meta));
        Ok(())
    }

    fn symlink(
        &mut self,
        name: &str,
        comps: Vec<CString>,
        target: Option<Vec<u8>>,
        meta: &Meta,
    ) -> Done {
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing_link_name(name))?;
        // Never followed here; an absolute target is kept as the docker CLI keeps it. A
        // relative one is judged from the link's own directory.
        if !target.starts_with(b"/") && climbs_out(comps.len() - 1, &target) {
            return Err(escape(
                name,
                format!(
                    "symlink target {:?} climbs above the destination",
                    String::from_utf8_lossy(&target)
                ),
            ));
        }
        let target = cstring(target, name)?;
        let (parent, leaf) = self.prepare_leaf(name, &comps)?;
        symlinkat(target.as_c_str(), &parent, leaf).map_err(|e| sys_error(name, e))?;
        let set_time = utimensat(
            &parent,
            leaf,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        );
        self.created.insert(comps);
        set_time.map_err(|e| sys_error(name, e))
    }

    fn hardlink(&mut self, name: &str, comps: Vec<CString>, target: Option<Vec<u8>>) -> Done {
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing_link_name(name))?;
        let shown = String::from_utf8_lossy(&target).into_owned();
        let target_comps = self
            .target(&target)
            .map_err(|reason| escape(name, format!("hard link target {shown:?}: {reason}")))?;
        let target_comps = to_cstrings(&target_comps, name)?;
        if !self.created.contains(&target_comps) {
            return Err(escape(
                name,
                format!("hard link target {shown:?} is not a file this copy extracted"),
            ));
        }
        if target_comps == comps {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let (target_leaf, target_parent) = target_comps
            .split_last()
            .expect("extracted entries are below the root");
        let target_dir = match self.walk(target_parent, false) {
            Ok(fd) => fd,
            Err(Walk::Symlink(i)) => {
                return Err(escape(
                    name,
                    format!(
                        "hard link target {shown:?} goes through symlink {:?}",
                        join(&target_parent[..=i])
                    ),
                ));
            }
            Err(Walk::Missing) => return Err(sys_error(name, Errno::ENOENT)),
            Err(Walk::Sys(e)) => return Err(sys_error(name, e)),
        };
        let st = fstatat(
            &target_dir,
            target_leaf.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| sys_error(name, e))?;
        match file_kind(&st) {
            SFlag::S_IFDIR => return Err(sys_error(name, Errno::EISDIR)),
            SFlag::S_IFLNK => {
                // A hard link to a symlink is that symlink seen from another directory: its
                // relative target must stay inside from there too.
                let link_target = readlinkat(&target_dir, target_leaf.as_c_str())
                    .map_err(|e| sys_error(name, e))?;
                let link_target = link_target.as_encoded_bytes();
                if !link_target.starts_with(b"/") && climbs_out(comps.len() - 1, link_target) {
                    return Err(escape(
                        name,
                        format!("hard-linked symlink {shown:?} would point above the destination"),
                    ));
                }
            }
            _ => {}
        }
        let (parent, leaf) = self.prepare_leaf(name, &comps)?;
        linkat(
            &target_dir,
            target_leaf.as_c_str(),
            &parent,
            leaf,
            AtFlags::empty(),
        )
        .map_err(|e| sys_error(name, e))?;
        self.created.insert(comps);
        Ok(())
    }

    fn fifo(&mut self, name: &str, comps: Vec<CString>, meta: &Meta) -> Done {
        let (parent, leaf) = self.prepare_leaf(name, &comps)?;
        mkfifoat(&parent, leaf, Mode::from_bits_truncate(0o600)).map_err(|e| sys_error(name, e))?;
        // Following is harmless: `leaf` is the FIFO just created in a directory this walk
        // reached without following anything (Linux cannot chmod a name without following).
        let set_meta = fchmodat(
            &parent,
            leaf,
            Mode::from_bits_truncate(meta.mode & FILE_MODE_MASK),
            FchmodatFlags::FollowSymlink,
        )
        .and_then(|()| {
            utimensat(
                &parent,
                leaf,
                &meta.mtime,
                &meta.mtime,
                UtimensatFlags::NoFollowSymlink,
            )
        });
        self.created.insert(comps);
        set_meta.map_err(|e| sys_error(name, e))
    }

    /// Applies deferred directory modes and times, deepest first so that a directory made
    /// unsearchable does not block its children. The last entry for a path wins.
    fn finish_dirs(&mut self) -> Done {
        let deferred = std::mem::take(&mut self.deferred);
        let mut seen = HashSet::new();
        let mut todo: Vec<_> = deferred
            .iter()
            .rev()
            .filter(|(_, comps, _)| seen.insert(comps))
            .collect();
        todo.sort_by_key(|(_, comps, _)| std::cmp::Reverse(comps.len()));
        for (name, comps, meta) in todo {
            let fd = match self.walk(comps, false) {
                Ok(fd) => fd,
                // Replaced by a later entry: nothing left to apply to.
                Err(Walk::Missing | Walk::Symlink(_) | Walk::Sys(Errno::ENOTDIR)) => continue,
                Err(Walk::Sys(e)) => return Err(sys_error(name, e)),
            };
            fchmod(&fd, Mode::from_bits_truncate(meta.mode & DIR_MODE_MASK))
                .map_err(|e| sys_error(name, e))?;
            futimens(&fd, &meta.mtime, &meta.mtime).map_err(|e| sys_error(name, e))?;
        }
        Ok(())
    }

    /// Opens the parent of an entry and unlinks the non-directory that holds its name, so
    /// that the leaf can be created with an exclusive, non-following call.
    fn prepare_leaf<'c>(
        &mut self,
        name: &str,
        comps: &'c [CString],
    ) -> Extract<(OwnedFd, &'c CStr)> {
        let (leaf, parent_comps) = comps.split_last().expect("an entry below the root");
        let parent = self.open_parent(name, parent_comps)?;
        match fstatat(&parent, leaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(sys_error(name, e)),
            Ok(st) if file_kind(&st) == SFlag::S_IFDIR => {
                return Err(io_error(
                    name,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "cannot overwrite a directory with a non-directory",
                    ),
                ));
            }
            Ok(_) => {
                unlinkat(&parent, leaf.as_c_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| sys_error(name, e))?;
                self.created.remove(comps);
            }
        }
        Ok((parent, leaf.as_c_str()))
    }

    /// Opens (creating as needed) the directory that holds an entry.
    fn open_parent(&self, name: &str, parent_comps: &[CString]) -> Extract<OwnedFd> {
        self.walk(parent_comps, true).map_err(|e| match e {
            Walk::Symlink(i) => escape(
                name,
                format!("parent {:?} is a symlink", join(&parent_comps[..=i])),
            ),
            Walk::Missing => sys_error(name, Errno::ENOENT),
            Walk::Sys(e) => sys_error(name, e),
        })
    }

    /// Walks `comps` beneath the destination one component at a time, never following a
    /// symlink. With `create`, missing directories are made (0755 less the umask).
    fn walk(&self, comps: &[CString], create: bool) -> std::result::Result<OwnedFd, Walk> {
        let mut cur: Option<OwnedFd> = None;
        for (i, comp) in comps.iter().enumerate() {
            let dir = cur.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let next = match openat(dir, comp.as_c_str(), dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(dir, comp.as_c_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Walk::Sys(e)),
                    }
                    openat(dir, comp.as_c_str(), dir_flags(), Mode::empty()).map_err(|e| {
                        symlink_at(dir, comp).map_or(Walk::Sys(e), |()| Walk::Symlink(i))
                    })?
                }
                Err(Errno::ENOENT) => return Err(Walk::Missing),
                Err(e) => {
                    return Err(symlink_at(dir, comp).map_or(Walk::Sys(e), |()| Walk::Symlink(i)));
                }
            };
            cur = Some(next);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => self
                .root
                .try_clone()
                .map_err(|e| Walk::Sys(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))),
        }
    }
}

/// `Some(())` when `name` in `dir` is a symlink.
fn symlink_at(dir: BorrowedFd<'_>, name: &CStr) -> Option<()> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .filter(|st| file_kind(st) == SFlag::S_IFLNK)
        .map(drop)
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn read_meta<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Extract<Meta> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ExtractError::Corrupt(format!("entry {name:?} has a bad {what}: {e}"))
    };
    let header = entry.header();
    let mode = header.mode().map_err(|e| bad("mode", &e))? & 0o7777;
    let secs = header.mtime().map_err(|e| bad("mtime", &e))?;
    let secs = i64::try_from(secs).map_err(|e| bad("mtime", &e))?;
    Ok(Meta {
        mode,
        mtime: TimeSpec::new(secs, 0),
    })
}

fn to_cstrings(comps: &[&[u8]], name: &str) -> Extract<Vec<CString>> {
    comps.iter().map(|c| cstring(c.to_vec(), name)).collect()
}

fn cstring(bytes: Vec<u8>, name: &str) -> Extract<CString> {
    CString::new(bytes).map_err(|_| {
        io_error(
            name,
            io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"),
        )
    })
}

fn join(comps: &[CString]) -> String {
    let parts: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

fn corrupt(e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Corrupt(e.to_string())
}

fn escape(name: &str, reason: String) -> ExtractError {
    ExtractError::Escape {
        entry: name.to_owned(),
        reason,
    }
}

fn io_error(name: &str, source: io::Error) -> ExtractError {
    ExtractError::Io {
        entry: name.to_owned(),
        source,
    }
}

fn sys_error(name: &str, e: Errno) -> ExtractError {
    io_error(name, e.into())
}

fn missing_link_name(name: &str) -> ExtractError {
    ExtractError::Corrupt(format!("link entry {name:?} has no target"))
}

async fn to_container(
    client: &Client,
    args: &CpArgs,
    src: &str,
    container: &str,
    path: &str,
) -> Result<ExitCode> {
    let path = if path.is_empty() { "/" } else { path };
    if src == "-" {
        let mut tar = Vec::new();
        std::io::stdin()
            .read_to_end(&mut tar)
            .map_err(|e| fail(format!("reading stdin: {e}")))?;
        upload(client, args, container, path, tar).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let meta = if args.follow_link {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(|e| fail(format!("lstat {src}: {e}")))?;
    let (size, into_dir) = pack(src, &base_name(src), args.follow_link)?;
    // Into the directory `path` names; failing that, as `path` itself in its parent.
    let first = upload(client, args, container, path, into_dir).await;
    let done = match first {
        Ok(()) => Ok(()),
        Err(e)
            if !path.ends_with('/')
                && (e.message.contains("not a directory")
                    || e.message.contains("Could not find")) =>
        {
            if meta.is_dir() && e.message.contains("not a directory") {
                return Err(fail(format!(
                    "cannot overwrite non-directory \"{path}\" with directory \"{src}\""
                )));
            }
            let trimmed = path.trim_end_matches('/');
            let parent = match trimmed.rsplit_once('/') {
                Some(("", _)) | None => "/",
                Some((p, _)) => p,
            };
            let (_, renamed) = pack(src, &base_name(trimmed), args.follow_link)?;
            upload(client, args, container, parent, renamed).await
        }
        Err(e) => Err(e),
    };
    done?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {container}:{path}",
            human_size(size as f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A tar of the host path `src` under the name `name`; returns the bytes of file content and
/// the tar.
fn pack(src: &str, name: &str, follow: bool) -> Result<(u64, Vec<u8>)> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(follow);
    let bad = |e: std::io::Error| fail(format!("reading {src}: {e}"));
    let meta = if follow {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(bad)?;
    let size = if meta.is_dir() {
        b.append_dir_all(name, src).map_err(bad)?;
        dir_bytes(Path::new(src))
    } else {
        b.append_path_with_name(src, name).map_err(bad)?;
        meta.len()
    };
    Ok((size, b.into_inner().map_err(bad)?))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

async fn upload(
    client: &Client,
    args: &CpArgs,
    container: &str,
    path: &str,
    tar: Vec<u8>,
) -> Result<()> {
    if args.archive {
        // bollard's upload has no copyUIDGID: the engine's socket is asked directly.
        let socket = client.unix_socket().ok_or_else(|| {
            fail(format!(
                "cp -a needs a unix or ssh host, not {}",
                client.host
            ))
        })?;
        let uri = format!(
            "/containers/{}/archive?path={}&copyUIDGID=1",
            super::query_value(container),
            super::query_value(path)
        );
        let (status, doc) = berth_engine::api::client::request_bytes(
            &socket,
            "PUT",
            &uri,
            "application/x-tar",
            tar,
        )
        .await
        .map_err(|_| fail(super::no_engine(&client.host)))?;
        if status >= 300 {
            return Err(super::refused(&doc));
        }
        return Ok(());
    }
    client
        .docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: path.to_owned(),
                no_overwrite_dir_non_dir: String::new(),
            }),
            tar.into(),
        )
        .await
        .map_err(|e| client.error(e, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_as_the_docker_cli_does() {
        assert_eq!(split_arg("web:/etc/hosts"), (Some("web"), "/etc/hosts"));
        assert_eq!(split_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_arg("./x:y"), (None, "./x:y"));
        assert_eq!(split_arg("file.txt"), (None, "file.txt"));
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(crate::client::query_value("/tmp/a b&c"), "/tmp/a%20b%26c");
    }

    use std::collections::BTreeMap;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use tar::{Builder, Header};

    /// A tar built entry by entry; `raw` writes names verbatim, past the Builder's checks.
    struct Tar(Builder<Vec<u8>>);

    fn header(ty: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    impl Tar {
        fn new() -> Self {
            Tar(Builder::new(Vec::new()))
        }
        fn file_mode(mut self, path: &str, data: &[u8], mode: u32) -> Self {
            let mut h = header(EntryType::Regular, mode, data.len() as u64);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }
        fn file(self, path: &str, data: &[u8]) -> Self {
            self.file_mode(path, data, 0o644)
        }
        fn dir(mut self, path: &str, mode: u32) -> Self {
            let mut h = header(EntryType::Directory, mode, 0);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }
        fn link(mut self, ty: EntryType, path: &str, target: &str) -> Self {
            let mut h = header(ty, 0o777, 0);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        fn symlink(self, path: &str, target: &str) -> Self {
            self.link(EntryType::Symlink, path, target)
        }
        fn hardlink(self, path: &str, target: &str) -> Self {
            self.link(EntryType::Link, path, target)
        }
        fn raw(mut self, ty: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
            let mut h = header(ty, 0o644, data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// A destination directory beside a host file and directory that no copy may touch.
    struct Sandbox {
        tmp: tempfile::TempDir,
        dest: PathBuf,
        outside: PathBuf,
        secret: PathBuf,
    }

    /// What a tree holds: kind, content or link target, mode and link count, by path.
    type Tree = BTreeMap<PathBuf, (String, Vec<u8>, u32, u64)>;

    impl Sandbox {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("dest");
            let outside = tmp.path().join("outside");
            std::fs::create_dir(&dest).unwrap();
            std::fs::create_dir(&outside).unwrap();
            let secret = tmp.path().join("passwd");
            std::fs::write(&secret, b"root:x:0:0\n").unwrap();
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
            Sandbox {
                tmp,
                dest,
                outside,
                secret,
            }
        }

        fn base(&self) -> &Path {
            self.tmp.path()
        }

        /// Everything under the sandbox but the destination.
        fn outside_state(&self) -> Tree {
            fn walk(dir: &Path, skip: &Path, out: &mut Tree) {
                for e in std::fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    if p == skip {
                        continue;
                    }
                    let m = std::fs::symlink_metadata(&p).unwrap();
                    let (kind, data) = if m.is_symlink() {
                        let t = std::fs::read_link(&p).unwrap();
                        ("link", t.into_os_string().into_encoded_bytes())
                    } else if m.is_dir() {
                        walk(&p, skip, out);
                        ("dir", Vec::new())
                    } else {
                        ("file", std::fs::read(&p).unwrap())
                    };
                    out.insert(p, (kind.into(), data, m.mode(), m.nlink()));
                }
            }
            let mut out = Tree::new();
            walk(self.base(), &self.dest, &mut out);
            out
        }

        /// Extracts `tar`, checking that nothing outside the destination changed.
        fn extract(&self, tar: &[u8], rename: Option<&str>) -> Extract<Extracted> {
            let before = self.outside_state();
            let res = extract(tar, &self.dest, rename);
            assert_eq!(self.outside_state(), before, "the copy touched a host file");
            res
        }
    }

    fn assert_escape(res: Extract<Extracted>, entry: &str) {
        match res {
            Err(ExtractError::Escape { entry: e, .. }) => assert_eq!(e, entry),
            other => panic!("expected {entry:?} to be refused, got {other:?}"),
        }
    }

    fn is_symlink(p: &Path) -> bool {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink())
    }

    #[test]
    fn copies_land_under_the_new_name_as_docker_cp_lands_them() {
        let sb = Sandbox::new();
        let src = sb.base().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), b"data").unwrap();
        let (_, tar) = pack(src.to_str().unwrap(), "src", false).unwrap();
        let done = sb.extract(&tar, Some("renamed")).unwrap();
        assert_eq!(
            std::fs::read(sb.dest.join("renamed/sub/f")).unwrap(),
            b"data"
        );
        assert_eq!(done.bytes, 4);

        // Links as docker cp makes them: symlinks as symlinks (absolute ones too, never
        // followed), hard links to files of the copy (their target renamed with it).
        let tar = Tar::new()
            .dir("app/", 0o750)
            .file_mode("app/run", b"#!/bin/sh\n", 0o4755)
            .dir("app/ro/", 0o555)
            .file("app/ro/inside", b"x")
            .symlink("app/rel", "run")
            .symlink("app/up", "../app/run")
            .symlink("app/abs", sb.secret.to_str().unwrap())
            .hardlink("app/again", "app/run")
            .raw(EntryType::Fifo, b"app/pipe", b"", b"")
            .build();
        let done = sb.extract(&tar, Some("copy")).unwrap();
        assert_eq!(done.bytes, 11);
        let copy = sb.dest.join("copy");
        let meta = |p: &str| std::fs::symlink_metadata(copy.join(p)).unwrap();
        assert_eq!(meta("").mode() & 0o7777, 0o750);
        assert_eq!(meta("ro").mode() & 0o7777, 0o555);
        // setuid is not kept: the copy belongs to whoever runs the CLI.
        assert_eq!(meta("run").mode() & 0o7777, 0o755);
        assert_eq!(meta("run").mtime(), 1_700_000_000);
        assert_eq!(meta("run").nlink(), 2);
        assert_eq!(meta("again").ino(), meta("run").ino());
        assert_eq!(
            std::fs::read_link(copy.join("rel")).unwrap(),
            Path::new("run")
        );
        assert_eq!(std::fs::read_link(copy.join("abs")).unwrap(), sb.secret);
        assert!(meta("pipe").file_type().is_fifo());
        std::fs::set_permissions(copy.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();

        // Copying again replaces files (never writing through what held their name).
        let tar = Tar::new().file("copy/abs", b"new").build();
        sb.extract(&tar, None).unwrap();
        assert_eq!(std::fs::read(copy.join("abs")).unwrap(), b"new");
        assert_eq!(std::fs::read(&sb.secret).unwrap(), b"root:x:0:0\n");
    }

    #[test]
    fn hard_links_to_host_files_are_refused() {
        let sb = Sandbox::new();
        let secret = sb.secret.to_str().unwrap().to_owned();
        std::fs::write(sb.dest.join("mine"), b"user file").unwrap();
        let cases: Vec<(&str, Tar)> = vec![
            // Absolute: tar's own `unpack` would link the host's file.
            (
                "h",
                Tar::new().raw(EntryType::Link, b"h", secret.as_bytes(), b""),
            ),
            (
                "h",
                Tar::new().raw(EntryType::Link, b"h", b"../passwd", b""),
            ),
            (
                "h",
                Tar::new().raw(EntryType::Link, b"h", b"a/../../passwd", b""),
            ),
            // A file that was in the destination already, not one of this copy.
            ("h", Tar::new().hardlink("h", "mine")),
            ("h", Tar::new().hardlink("h", "missing")),
            // Through a symlinked directory that points beside the destination.
            (
                "h",
                Tar::new()
                    .symlink("up", sb.base().to_str().unwrap())
                    .hardlink("h", "up/passwd"),
            ),
            // A relative symlink that is fine where it is, but not hard-linked higher up.
            (
                "top",
                Tar::new()
                    .symlink("a/b/s", "../../x")
                    .hardlink("top", "a/b/s"),
            ),
        ];
        for (entry, tar) in cases {
            assert_escape(sb.extract(&tar.build(), None), entry);
            assert!(!is_symlink(&sb.dest.join(entry)) && !sb.dest.join(entry).exists());
            assert_eq!(std::fs::metadata(&sb.secret).unwrap().nlink(), 1);
        }
        assert_eq!(std::fs::metadata(sb.dest.join("mine")).unwrap().nlink(), 1);
    }

    #[test]
    fn writes_through_symlinked_parents_are_refused() {
        let sb = Sandbox::new();
        let out = sb.outside.to_str().unwrap().to_owned();
        let cases: Vec<(&str, Tar, Option<&str>)> = vec![
            (
                "a/passwd",
                Tar::new().symlink("a", &out).file("a/passwd", b"evil"),
                None,
            ),
            (
                "a/deep/f",
                Tar::new().symlink("a", &out).file("a/deep/f", b"e"),
                None,
            ),
            (
                "a/sub/",
                Tar::new().symlink("a", &out).dir("a/sub/", 0o755),
                None,
            ),
            (
                "a/l",
                Tar::new().symlink("a", &out).symlink("a/l", "/etc"),
                None,
            ),
            (
                "a/h",
                Tar::new()
                    .file("f", b"")
                    .symlink("a", &out)
                    .hardlink("a/h", "f"),
                None,
            ),
            // A dangling link is not "repaired" by creating its target.
            (
                "a/f",
                Tar::new()
                    .symlink("a", &format!("{out}/not/yet"))
                    .file("a/f", b"e"),
                None,
            ),
            // The renamed top entry is the symlink, then a file goes through it.
            (
                "x/f",
                Tar::new().symlink("x", &out).file("x/f", b"e"),
                Some("top"),
            ),
            // Relative symlinks that climb out are refused before anything goes through them.
            (
                "a",
                Tar::new().symlink("a", "../outside").file("a/f", b"e"),
                None,
            ),
            ("d/l", Tar::new().symlink("d/l", "../../outside"), None),
        ];
        for (entry, tar, rename) in cases {
            let sb = Sandbox::new();
            assert_escape(sb.extract(&tar.build(), rename), entry);
            assert_eq!(std::fs::read_dir(&sb.outside).unwrap().count(), 0);
        }
        // A symlink that was in the destination already is not followed either.
        std::os::unix::fs::symlink(&sb.outside, sb.dest.join("link")).unwrap();
        let tar = Tar::new().file("link/f", b"e").build();
        assert_escape(sb.extract(&tar, None), "link/f");
        assert_eq!(std::fs::read_dir(&sb.outside).unwrap().count(), 0);
    }

    #[test]
    fn dot_dot_and_absolute_names_are_refused() {
        let sb = Sandbox::new();
        let abs = sb.outside.join("abs");
        let names: Vec<Vec<u8>> = vec![
            b"../escape".to_vec(),
            b"x/../../escape".to_vec(),
            b"..".to_vec(),
            abs.as_os_str().as_encoded_bytes().to_vec(),
        ];
        for name in names {
            let shown = String::from_utf8(name.clone()).unwrap();
            for rename in [None, Some("renamed")] {
                for ty in [EntryType::Regular, EntryType::Directory, EntryType::Symlink] {
                    let link: &[u8] = if ty == EntryType::Symlink { b"t" } else { b"" };
                    let data: &[u8] = if ty == EntryType::Regular { b"x" } else { b"" };
                    let tar = Tar::new().raw(ty, &name, link, data).build();
                    assert_escape(sb.extract(&tar, rename), &shown);
                }
            }
        }
        assert!(!abs.exists() && !sb.base().join("escape").exists());
        assert_eq!(std::fs::read_dir(&sb.dest).unwrap().count(), 0);
        // A name that is not one file is refused as the new name.
        let tar = Tar::new().file("f", b"x").build();
        assert!(matches!(
            sb.extract(&tar, Some("..")),
            Err(ExtractError::Escape { .. })
        ));
    }

    #[test]
    fn existing_names_are_replaced_never_written_through() {
        let sb = Sandbox::new();
        // A hard link and a symlink to the host file, already in the destination.
        std::fs::hard_link(&sb.secret, sb.dest.join("hard")).unwrap();
        std::os::unix::fs::symlink(&sb.secret, sb.dest.join("soft")).unwrap();
        let tar = Tar::new()
            .file("hard", b"new")
            .file_mode("soft", b"new", 0o777)
            .build();
        let before = std::fs::read(&sb.secret).unwrap();
        extract(&tar, &sb.dest, None).unwrap();
        assert_eq!(std::fs::read(&sb.secret).unwrap(), before);
        assert_eq!(
            std::fs::metadata(&sb.secret).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read(sb.dest.join("soft")).unwrap(), b"new");
        assert!(!is_symlink(&sb.dest.join("soft")));
        // A symlink entry then a file of the same name: the link is replaced, not followed.
        let tar = Tar::new()
            .symlink("l", sb.secret.to_str().unwrap())
            .file("l", b"evil")
            .build();
        sb.extract(&tar, None).unwrap();
        assert_eq!(std::fs::read(sb.dest.join("l")).unwrap(), b"evil");
        // A symlink to a host directory then a directory entry of its name: the link is
        // replaced, the host directory's mode left alone (`sb.extract` checks it).
        let tar = Tar::new()
            .symlink("ld", sb.outside.to_str().unwrap())
            .dir("ld", 0o777)
            .build();
        sb.extract(&tar, None).unwrap();
        assert!(
            std::fs::symlink_metadata(sb.dest.join("ld"))
                .unwrap()
                .is_dir()
        );
        // A directory is not replaced by a file, nor a user's file by a directory.
        std::fs::create_dir(sb.dest.join("d")).unwrap();
        std::fs::write(sb.dest.join("d/keep"), b"k").unwrap();
        let tar = Tar::new().file("d", b"x").build();
        assert!(matches!(
            sb.extract(&tar, None),
            Err(ExtractError::Io { .. })
        ));
        let tar = Tar::new().dir("hard/", 0o755).build();
        assert!(matches!(
            sb.extract(&tar, None),
            Err(ExtractError::Io { .. })
        ));
        assert_eq!(std::fs::read(sb.dest.join("d/keep")).unwrap(), b"k");
    }

    #[test]
    fn device_nodes_are_skipped_and_bad_streams_are_errors() {
        let sb = Sandbox::new();
        let tar = Tar::new()
            .raw(EntryType::Char, b"null", b"", b"")
            .file("f", b"x")
            .build();
        let done = sb.extract(&tar, None).unwrap();
        assert_eq!(done.skipped, ["null"]);
        assert!(!sb.dest.join("null").exists());
        let mut truncated = Tar::new().file("big", &[7; 4096]).build();
        truncated.truncate(1024);
        assert!(sb.extract(&truncated, None).is_err());
        assert!(sb.extract(b"not a tar at all", None).is_err());
    }
}
