//! OCI layer unpacker: owns turning one image layer blob (a tar stream, optionally gzip or zstd
//! compressed) into the contents of one overlayfs snapshot directory on the guest's data disk.
//!
//! What it owns:
//! - compression detection (gzip, zstd, plain tar) from the first bytes of the blob;
//! - the path policy: entry paths are relative, `..` never appears, absolute paths are refused;
//! - creating regular files, directories, symlinks, hardlinks and FIFOs with their mode
//!   (setuid/setgid/sticky included), owner (when running as root) and nanosecond mtime;
//! - converting OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) to their overlayfs form (a 0/0
//!   character device, the `trusted.overlay.opaque=y` xattr).
//!
//! Safety model: the kernel never sees a path that reaches outside `dest`. Every operation is
//! done relative to a directory descriptor obtained by walking the entry's parent directories one
//! component at a time from `dest` with `O_DIRECTORY | O_NOFOLLOW`, so a symlink anywhere on the
//! way is detected and refused rather than followed. Leaves are created with `*at` calls that do
//! not follow symlinks either (`O_EXCL | O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without
//! `AT_SYMLINK_FOLLOW`). Entries are streamed through a fixed-size buffer.

use berth_agent_proto::tarpath::{climbs_out, parse_rel_path};
use std::cmp::Reverse;
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fmt::Display;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens,
    makedev, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat,
};
use tar::EntryType;

/// What one unpack did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries processed (extension headers such as PAX or GNU long names not counted).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Whiteouts created, opaque-directory markers included.
    pub whiteouts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would land outside the snapshot, or links out of it. `entry` is the path as written in the tar.
    #[error("layer entry {entry:?} escapes the snapshot: {reason}")]
    Escape { entry: String, reason: String },
    /// Character/block devices are not allowed in layers.
    #[error("layer entry {entry:?} is a device node, which layers may not contain")]
    Device { entry: String },
    #[error("layer entry {entry:?}: {source}")]
    Io {
        entry: String,
        source: std::io::Error,
    },
    /// More than the disk can take, or than the user's cap allows.
    #[error("layer is too large: {0}")]
    TooLarge(String),
    /// Not a readable (optionally gzip/zstd compressed) tar stream.
    #[error("layer is not a valid tar stream: {0}")]
    Corrupt(String),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const COPY_BUF_LEN: usize = 128 * 1024;

/// Unpacks one layer (plain tar, gzip or zstd, detected from the first bytes) into `dest`, which must be
/// an existing empty directory. Never writes outside `dest`. Converts OCI whiteouts to overlayfs form.
pub fn unpack_layer<R: std::io::Read>(
    reader: R,
    dest: &std::path::Path,
) -> Result<UnpackStats, UnpackError> {
    let root = open_dest(dest)?;
    let stream = crate::space::Capped::new(decompressor(reader)?, crate::space::limit_for(dest));
    let wire = stream.tripwire();
    unpack_stream(root, stream).map_err(|e| {
        if wire.tripped() {
            UnpackError::TooLarge(wire.message())
        } else {
            e
        }
    })
}

fn unpack_stream(root: OwnedFd, stream: impl Read) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(stream);
    let mut unpacker = Unpacker {
        root,
        chown: nix::unistd::geteuid().is_root(),
        stats: UnpackStats::default(),
        deferred: Vec::new(),
        buf: vec![0; COPY_BUF_LEN],
    };
    for entry in archive.entries().map_err(corrupt)? {
        unpacker.entry(entry.map_err(corrupt)?)?;
    }
    // Read to the end so that the compression trailer (gzip CRC, zstd checksum) is verified.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
    unpacker.finish_dirs()?;
    Ok(unpacker.stats)
}

fn open_dest(dest: &Path) -> Result<OwnedFd, UnpackError> {
    let entry = || dest.display().to_string();
    let root = open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(entry(), e.into()))?;
    let mut listing = std::fs::read_dir(dest).map_err(|e| io_error(entry(), e))?;
    if listing.next().is_some() {
        return Err(io_error(
            entry(),
            io::Error::other("the unpack destination must be an empty directory"),
        ));
    }
    Ok(root)
}

/// Sniffs the first bytes and wraps `reader` in the matching decompressor.
fn decompressor<'r, R: Read + 'r>(mut reader: R) -> Result<Box<dyn Read + 'r>, UnpackError> {
    let mut magic = [0u8; 4];
    let mut have = 0;
    while have < magic.len() {
        match reader.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(e)),
        }
    }
    let stream = io::Cursor::new(magic).take(have as u64).chain(reader);
    if magic[..have].starts_with(&GZIP_MAGIC) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(stream)))
    } else if magic[..have] == ZSTD_MAGIC {
        Ok(Box::new(
            zstd::stream::read::Decoder::new(stream).map_err(corrupt)?,
        ))
    } else {
        Ok(Box::new(stream))
    }
}

/// Metadata applied to everything but hardlinks and whiteouts.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: TimeSpec,
    mtime: TimeSpec,
}

/// A directory whose metadata is applied once everything inside it has been written.
struct DirMeta {
    entry: String,
    comps: Vec<CString>,
    meta: Meta,
}

/// Why a directory walk beneath `dest` stopped.
enum ResolveError {
    /// Component `n` of the walked path is a symlink.
    Symlink(usize),
    /// A component does not exist (and the walk was not asked to create it).
    Missing,
    /// Any other failure, `ENOTDIR` when a component is not a directory.
    Sys(Errno),
}

enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
}

struct Unpacker {
    root: OwnedFd,
    chown: bool,
    stats: UnpackStats,
    deferred: Vec<DirMeta>,
    buf: Vec<u8>,
}

impl Unpacker {
    fn entry<E: Read>(&mut self, mut entry: tar::Entry<'_, E>) -> Result<(), UnpackError> {
        self.stats.entries += 1;
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let etype = entry.header().entry_type();
        if etype == EntryType::XGlobalHeader {
            // A PAX global header carries no file; nothing in it matters for a snapshot.
            return Ok(());
        }
        let comps = parse_rel_path(&raw_path).map_err(|reason| escape(&name, reason))?;
        let comps = to_cstrings(&comps, &name)?;
        if comps
            .last()
            .is_some_and(|leaf| leaf.to_bytes().starts_with(WHITEOUT_PREFIX))
        {
            return self.whiteout(&name, &comps);
        }
        let kind = match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Pre-POSIX archives mark directories with a trailing slash only.
                if raw_path.ends_with(b"/") {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Char | EntryType::Block => return Err(UnpackError::Device { entry: name }),
            other => {
                return Err(UnpackError::Corrupt(format!(
                    "entry {name:?} has unsupported type {:?}",
                    other.as_byte() as char
                )));
            }
        };
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let meta = read_meta(&mut entry, &name)?;
        match kind {
            Kind::Dir => self.dir(&name, comps, meta),
            Kind::File => {
                let size = entry.size();
                self.file(&mut entry, size, &name, &comps, &meta)
            }
            Kind::Symlink => self.symlink(&name, &comps, link, &meta),
            Kind::Hardlink => self.hardlink(&name, &comps, link),
            Kind::Fifo => self.fifo(&name, &comps, &meta),
        }
    }

    fn file(
        &mut self,
        data: &mut impl Read,
        size: u64,
        name: &str,
        comps: &[CString],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let (parent, leaf) = self.prepare_leaf(name, comps)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&parent, leaf, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| sys_error(name, e))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Corrupt(format!("entry {name:?}: {e}"))),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| io_error(name.to_owned(), e))?;
            written += n as u64;
        }
        if written != size {
            return Err(UnpackError::Corrupt(format!(
                "entry {name:?} is truncated: {written} of {size} bytes"
            )));
        }
        self.stats.bytes += written;
        self.apply_fd_meta(file.as_fd(), meta, name)
    }

    fn dir(&mut self, name: &str, comps: Vec<CString>, meta: Meta) -> Result<(), UnpackError> {
        if let Some((leaf, parent_comps)) = comps.split_last() {
            let parent = self.open_parent(name, parent_comps)?;
            if !self.clear_leaf(&parent, leaf, &comps, true, name)? {
                mkdirat(&parent, leaf.as_c_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| sys_error(name, e))?;
            }
        }
        // Mode, owner and times land after the directory's contents (see `finish_dirs`), so that
        // a read-only directory can still be filled and its mtime is not disturbed by the filling.
        self.deferred.push(DirMeta {
            entry: name.to_owned(),
            comps,
            meta,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        name: &str,
        comps: &[CString],
        target: Option<Vec<u8>>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let target = target.ok_or_else(|| missing_link_name(name))?;
        // Absolute targets resolve inside the container's root at run time and are never followed
        // here. Relative ones are judged from the link's own directory.
        if !target.starts_with(b"/") && climbs_out(comps.len().saturating_sub(1), &target) {
            return Err(escape(
                name,
                format!(
                    "symlink target {:?} climbs above the snapshot root",
                    String::from_utf8_lossy(&target)
                ),
            ));
        }
        let target = cstring(target, name)?;
        let (parent, leaf) = self.prepare_leaf(name, comps)?;
        symlinkat(target.as_c_str(), &parent, leaf).map_err(|e| sys_error(name, e))?;
        if self.chown {
            fchownat(
                &parent,
                leaf,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| sys_error(name, e))?;
        }
        utimensat(
            &parent,
            leaf,
            &meta.atime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| sys_error(name, e))
    }

    fn hardlink(
        &mut self,
        name: &str,
        comps: &[CString],
        target: Option<Vec<u8>>,
    ) -> Result<(), UnpackError> {
        let target = target.ok_or_else(|| missing_link_name(name))?;
        let shown = String::from_utf8_lossy(&target).into_owned();
        let target_comps = parse_rel_path(&target)
            .map_err(|reason| escape(name, format!("hardlink target {shown:?}: {reason}")))?;
        let target_comps = to_cstrings(&target_comps, name)?;
        let Some((target_leaf, target_parent)) = target_comps.split_last() else {
            return Err(escape(name, "hardlink target is the snapshot root".into()));
        };
        let missing = || {
            escape(
                name,
                format!("hardlink target {shown:?} is not in this layer"),
            )
        };
        let target_dir = match self.resolve(target_parent, false) {
            Ok(fd) => fd,
            Err(ResolveError::Symlink(i)) => {
                return Err(escape(
                    name,
                    format!(
                        "hardlink target {shown:?} goes through symlink {:?}",
                        join(&target_parent[..=i])
                    ),
                ));
            }
            Err(ResolveError::Missing | ResolveError::Sys(Errno::ENOTDIR)) => {
                return Err(missing());
            }
            Err(ResolveError::Sys(e)) => return Err(sys_error(name, e)),
        };
        let st = match fstatat(
            &target_dir,
            target_leaf.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Err(missing()),
            Err(e) => return Err(sys_error(name, e)),
        };
        if file_kind(&st) == SFlag::S_IFLNK {
            // A hardlink to a symlink is the same symlink seen from another directory: its
            // relative target must stay inside from there too.
            let link_target =
                readlinkat(&target_dir, target_leaf.as_c_str()).map_err(|e| sys_error(name, e))?;
            let link_target = link_target.as_encoded_bytes();
            if !link_target.starts_with(b"/")
                && climbs_out(comps.len().saturating_sub(1), link_target)
            {
                return Err(escape(
                    name,
                    format!("hardlinked symlink {shown:?} would point above the snapshot root"),
                ));
            }
        }
        if target_comps == comps {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let (parent, leaf) = self.prepare_leaf(name, comps)?;
        linkat(
            &target_dir,
            target_leaf.as_c_str(),
            &parent,
            leaf,
            AtFlags::empty(),
        )
        .map_err(|e| sys_error(name, e))
    }

    fn fifo(&mut self, name: &str, comps: &[CString], meta: &Meta) -> Result<(), UnpackError> {
        let (parent, leaf) = self.prepare_leaf(name, comps)?;
        mkfifoat(&parent, leaf, Mode::from_bits_truncate(0o600)).map_err(|e| sys_error(name, e))?;
        if self.chown {
            fchownat(
                &parent,
                leaf,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| sys_error(name, e))?;
        }
        // Following is harmless: `leaf` is the FIFO just created in a directory only we write.
        fchmodat(
            &parent,
            leaf,
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| sys_error(name, e))?;
        utimensat(
            &parent,
            leaf,
            &meta.atime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| sys_error(name, e))
    }

    fn whiteout(&mut self, name: &str, comps: &[CString]) -> Result<(), UnpackError> {
        let Some((leaf, parent_comps)) = comps.split_last() else {
            return Ok(());
        };
        let leaf = leaf.to_bytes();
        if leaf == OPAQUE_MARKER {
            let dir = self.open_parent(name, parent_comps)?;
            set_opaque(dir.as_fd()).map_err(|e| match e {
                Errno::EPERM => io_error(
                    name.to_owned(),
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "marking an opaque directory needs the trusted.overlay.opaque xattr, \
                         which only root (CAP_SYS_ADMIN) may set",
                    ),
                ),
                e => sys_error(name, e),
            })?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if leaf.starts_with(WHITEOUT_META_PREFIX) {
            // Other `.wh..wh.` names are reserved for tooling metadata; they carry no file.
            return Ok(());
        }
        let hidden = &leaf[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(escape(
                name,
                "whiteout does not name an entry inside its directory".into(),
            ));
        }
        let hidden = cstring(hidden.to_vec(), name)?;
        let parent = self.open_parent(name, parent_comps)?;
        match mknodat(
            &parent,
            hidden.as_c_str(),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        ) {
            Ok(()) => {}
            // The OCI spec says a whiteout never hides an entry of its own layer: keep it.
            Err(Errno::EEXIST) => return Ok(()),
            Err(Errno::EPERM) => {
                return Err(io_error(
                    name.to_owned(),
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "creating an overlayfs whiteout (a 0/0 character device) needs root \
                         (CAP_MKNOD)",
                    ),
                ));
            }
            Err(e) => return Err(sys_error(name, e)),
        }
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// Applies deferred directory metadata, deepest first so that a directory made unsearchable
    /// does not block its children. The last entry for a path wins.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let deferred = std::mem::take(&mut self.deferred);
        let mut seen = HashSet::new();
        let mut todo: Vec<&DirMeta> = deferred
            .iter()
            .rev()
            .filter(|d| seen.insert(&d.comps))
            .collect();
        todo.sort_by_key(|d| Reverse(d.comps.len()));
        for d in todo {
            let fd = match self.resolve(&d.comps, false) {
                Ok(fd) => fd,
                // Replaced by a later entry of the layer: nothing left to apply to.
                Err(
                    ResolveError::Missing
                    | ResolveError::Symlink(_)
                    | ResolveError::Sys(Errno::ENOTDIR),
                ) => continue,
                Err(ResolveError::Sys(e)) => return Err(sys_error(&d.entry, e)),
            };
            self.apply_fd_meta(fd.as_fd(), &d.meta, &d.entry)?;
        }
        Ok(())
    }

    fn apply_fd_meta(
        &self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        // Owner first: chown clears setuid/setgid, which the chmod then restores.
        if self.chown {
            fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| sys_error(name, e))?;
        }
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(|e| sys_error(name, e))?;
        futimens(fd, &meta.atime, &meta.mtime).map_err(|e| sys_error(name, e))
    }

    /// Opens the parent of a non-root entry and clears whatever occupies its name, so that
    /// the caller can create the leaf with an exclusive, non-following call.
    fn prepare_leaf<'c>(
        &mut self,
        name: &str,
        comps: &'c [CString],
    ) -> Result<(OwnedFd, &'c CStr), UnpackError> {
        let Some((leaf, parent_comps)) = comps.split_last() else {
            return Err(io_error(
                name.to_owned(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only a directory entry may name the snapshot root",
                ),
            ));
        };
        let parent = self.open_parent(name, parent_comps)?;
        self.clear_leaf(&parent, leaf, comps, false, name)?;
        Ok((parent, leaf.as_c_str()))
    }

    /// Removes what an earlier entry of this layer left at `leaf`. A directory is kept when
    /// `keep_dir` (a directory entry merges into it); returns whether a directory remains.
    fn clear_leaf(
        &mut self,
        parent: &OwnedFd,
        leaf: &CStr,
        comps: &[CString],
        keep_dir: bool,
        name: &str,
    ) -> Result<bool, UnpackError> {
        let st = match fstatat(parent, leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(sys_error(name, e)),
        };
        if file_kind(&st) == SFlag::S_IFDIR {
            if keep_dir {
                return Ok(true);
            }
            remove_all_at(parent.as_fd(), leaf).map_err(|e| sys_error(name, e))?;
            self.deferred.retain(|d| !d.comps.starts_with(comps));
        } else {
            unlinkat(parent, leaf, UnlinkatFlags::NoRemoveDir).map_err(|e| sys_error(name, e))?;
        }
        Ok(false)
    }

    /// Opens (creating as needed) the directory holding an entry.
    fn open_parent(&self, name: &str, parent_comps: &[CString]) -> Result<OwnedFd, UnpackError> {
        self.resolve(parent_comps, true).map_err(|e| match e {
            ResolveError::Symlink(i) => escape(
                name,
                format!("parent {:?} is a symlink", join(&parent_comps[..=i])),
            ),
            ResolveError::Missing => sys_error(name, Errno::ENOENT),
            ResolveError::Sys(e) => sys_error(name, e),
        })
    }

    /// Walks `comps` beneath the snapshot root one component at a time, never following a
    /// symlink. With `create`, missing directories are made 0755 root:root.
    fn resolve(&self, comps: &[CString], create: bool) -> Result<OwnedFd, ResolveError> {
        let mut cur: Option<OwnedFd> = None;
        for (i, comp) in comps.iter().enumerate() {
            let dir = cur.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let next = match openat(dir, comp.as_c_str(), dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    self.mkdir_implicit(dir, comp).map_err(ResolveError::Sys)?
                }
                Err(Errno::ENOENT) => return Err(ResolveError::Missing),
                Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                    return Err(
                        match fstatat(dir, comp.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                            Ok(st) if file_kind(&st) == SFlag::S_IFLNK => ResolveError::Symlink(i),
                            _ => ResolveError::Sys(e),
                        },
                    );
                }
                Err(e) => return Err(ResolveError::Sys(e)),
            };
            cur = Some(next);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => self.root.try_clone().map_err(|e| {
                ResolveError::Sys(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            }),
        }
    }

    /// A directory the layer implies but never lists: 0755, root:root.
    fn mkdir_implicit(&self, dir: BorrowedFd<'_>, comp: &CStr) -> nix::Result<OwnedFd> {
        mkdirat(dir, comp, Mode::from_bits_truncate(0o755))?;
        let fd = openat(dir, comp, dir_flags(), Mode::empty())?;
        // mkdirat is subject to the umask; set the mode exactly.
        fchmod(&fd, Mode::from_bits_truncate(0o755))?;
        if self.chown {
            fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))?;
        }
        Ok(fd)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Deletes `name` (a directory) and everything below it, never following symlinks.
/// Removes `name` in `parent` and everything below it, without following links. Walks down
/// one directory at a time and back up through `..`, keeping only the names on the way: a
/// tree of any depth costs neither stack nor more than two descriptors.
fn remove_all_at(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
        other => return other,
    }
    let mut cur = openat(parent, name, dir_flags(), Mode::empty())?;
    let mut names: Vec<CString> = Vec::new();
    loop {
        let mut deeper = None;
        for child in Dir::from_fd(cur.try_clone().map_err(|_| Errno::EMFILE)?)?.iter() {
            let child = child?;
            let child_name = child.file_name();
            if child_name == c"." || child_name == c".." {
                continue;
            }
            match unlinkat(&cur, child_name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) => continue,
                Err(Errno::EISDIR) => {}
                Err(e) => return Err(e),
            }
            match unlinkat(&cur, child_name, UnlinkatFlags::RemoveDir) {
                Ok(()) => {}
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                    deeper = Some(child_name.to_owned());
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(child) = deeper {
            cur = openat(&cur, child.as_c_str(), dir_flags(), Mode::empty())?;
            names.push(child);
            continue;
        }
        // `cur` is empty: climb back and remove it.
        let Some(done) = names.pop() else { break };
        cur = openat(&cur, c"..", dir_flags(), Mode::empty())?;
        unlinkat(&cur, done.as_c_str(), UnlinkatFlags::RemoveDir)?;
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

fn set_opaque(dir: BorrowedFd<'_>) -> nix::Result<()> {
    let value = b"y";
    // SAFETY: `dir` is an open descriptor for the duration of the call, the name is a
    // NUL-terminated C string literal, and `value` points to `value.len()` readable bytes.
    let rc = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            OPAQUE_XATTR.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

fn to_cstrings(comps: &[&[u8]], name: &str) -> Result<Vec<CString>, UnpackError> {
    comps.iter().map(|c| cstring(c.to_vec(), name)).collect()
}

fn cstring(bytes: Vec<u8>, name: &str) -> Result<CString, UnpackError> {
    CString::new(bytes).map_err(|_| {
        io_error(
            name.to_owned(),
            io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"),
        )
    })
}

fn join(comps: &[CString]) -> String {
    let parts: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

fn read_meta<E: Read>(entry: &mut tar::Entry<'_, E>, name: &str) -> Result<Meta, UnpackError> {
    let bad = |what: &str, e: &dyn Display| {
        UnpackError::Corrupt(format!("entry {name:?} has a bad {what}: {e}"))
    };
    let header = entry.header();
    let mode = header.mode().map_err(|e| bad("mode", &e))? & 0o7777;
    let uid = header.uid().map_err(|e| bad("uid", &e))?;
    let uid = u32::try_from(uid).map_err(|e| bad("uid", &e))?;
    let gid = header.gid().map_err(|e| bad("gid", &e))?;
    let gid = u32::try_from(gid).map_err(|e| bad("gid", &e))?;
    let secs = header.mtime().map_err(|e| bad("mtime", &e))?;
    let secs = i64::try_from(secs).map_err(|e| bad("mtime", &e))?;
    let mut mtime = TimeSpec::new(secs, 0);
    let mut atime = None;
    // PAX records carry nanosecond (and pre-1970) times that the ustar header cannot.
    if let Some(records) = entry.pax_extensions().map_err(|e| bad("PAX header", &e))? {
        for record in records {
            let record = record.map_err(|e| bad("PAX header", &e))?;
            match record.key_bytes() {
                b"mtime" => mtime = parse_pax_time(record.value_bytes()).unwrap_or(mtime),
                b"atime" => atime = parse_pax_time(record.value_bytes()),
                _ => {}
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        atime: atime.unwrap_or(mtime),
        mtime,
    })
}

/// Parses a PAX time such as `1700000000.123456789` or `-1.5`.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut secs: i64 = whole.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    if negative {
        secs = -secs;
        if nanos > 0 {
            secs -= 1;
            nanos = 1_000_000_000 - nanos;
        }
    }
    Some(TimeSpec::new(secs, nanos))
}

fn corrupt(e: impl Display) -> UnpackError {
    UnpackError::Corrupt(e.to_string())
}

fn escape(name: &str, reason: String) -> UnpackError {
    UnpackError::Escape {
        entry: name.to_owned(),
        reason,
    }
}

fn io_error(entry: String, source: io::Error) -> UnpackError {
    UnpackError::Io { entry, source }
}

fn sys_error(name: &str, e: Errno) -> UnpackError {
    io_error(name.to_owned(), e.into())
}

fn missing_link_name(name: &str) -> UnpackError {
    UnpackError::Corrupt(format!("link entry {name:?} has no target"))
}

/// Unpacks arbitrary bytes into a fresh temporary directory and asserts that nothing escaped it:
/// the directory next to the destination stays empty, no entry lands beside it, every relative
/// symlink stays inside, and the only device nodes are 0/0 whiteouts. Returns what the unpack
/// returned. For fuzzers and tests.
#[cfg(any(test, fuzzing))]
pub fn fuzz_unpack(data: &[u8]) -> Result<UnpackStats, UnpackError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::sync::atomic::{AtomicU64, Ordering};

    fn check_tree(dir: &Path, depth: usize) {
        for child in std::fs::read_dir(dir).expect("read unpacked dir") {
            let path = child.expect("read unpacked dir").path();
            let md = std::fs::symlink_metadata(&path).expect("stat unpacked entry");
            let ft = md.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&path).expect("read unpacked symlink");
                let target = target.as_os_str().as_encoded_bytes();
                assert!(
                    target.starts_with(b"/") || !climbs_out(depth, target),
                    "{path:?} points out of the snapshot"
                );
            } else if ft.is_dir() {
                check_tree(&path, depth + 1);
            }
            assert!(!ft.is_block_device(), "{path:?} is a block device");
            if ft.is_char_device() {
                assert_eq!(md.rdev(), 0, "{path:?} is a real character device");
            }
        }
    }

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir().join(format!(
        "berth-unpack-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&base);
    let dest = base.join("dest");
    let outside = base.join("outside");
    std::fs::create_dir_all(&dest).expect("create fuzz dest");
    std::fs::create_dir_all(&outside).expect("create fuzz sibling");
    let result = unpack_layer(data, &dest);
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .expect("read fuzz base")
        .map(|e| e.expect("read fuzz base").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "outside"],
        "entry escaped; unpack gave {result:?}"
    );
    assert!(
        std::fs::read_dir(&outside)
            .expect("read sibling")
            .next()
            .is_none(),
        "sibling written; unpack gave {result:?}"
    );
    check_tree(&dest, 0);
    std::fs::remove_dir_all(&base).expect("clean fuzz dir");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::PathBuf;
    use tar::{Builder, Header};

    const T0: u64 = 1_600_000_000;

    struct Sandbox {
        tmp: tempfile::TempDir,
        dest: PathBuf,
        outside: PathBuf,
    }

    impl Sandbox {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("dest");
            let outside = tmp.path().join("outside");
            fs::create_dir(&dest).unwrap();
            fs::create_dir(&outside).unwrap();
            Sandbox { tmp, dest, outside }
        }

        fn unpack(&self, layer: &[u8]) -> Result<UnpackStats, UnpackError> {
            unpack_layer(layer, &self.dest)
        }

        fn base(&self) -> &Path {
            self.tmp.path()
        }

        /// Nothing was created outside `dest`: the sibling is empty and the base holds only the
        /// two directories (plus whatever the test put there itself).
        fn assert_contained(&self, extra: &[&str]) {
            assert!(fs::read_dir(&self.outside).unwrap().next().is_none());
            let mut names: Vec<String> = fs::read_dir(self.base())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            let mut want: Vec<String> = ["dest", "outside"]
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
            want.sort();
            assert_eq!(names, want);
        }
    }

    fn header(ty: EntryType, mode: u32, owner: (u64, u64), mtime: u64, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    }

    struct Layer(Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(Builder::new(Vec::new()))
        }

        fn file_full(
            mut self,
            path: &str,
            data: &[u8],
            mode: u32,
            owner: (u64, u64),
            mtime: u64,
        ) -> Self {
            let mut h = header(EntryType::Regular, mode, owner, mtime, data.len() as u64);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }

        fn file(self, path: &str, data: &[u8]) -> Self {
            self.file_full(path, data, 0o644, (0, 0), T0)
        }

        fn dir_full(mut self, path: &str, mode: u32, owner: (u64, u64), mtime: u64) -> Self {
            let mut h = header(EntryType::Directory, mode, owner, mtime, 0);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        fn dir(self, path: &str) -> Self {
            self.dir_full(path, 0o755, (0, 0), T0)
        }

        fn link(
            mut self,
            ty: EntryType,
            path: &str,
            target: &str,
            owner: (u64, u64),
            mtime: u64,
        ) -> Self {
            let mut h = header(ty, 0o777, owner, mtime, 0);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }

        fn symlink(self, path: &str, target: &str) -> Self {
            self.link(EntryType::Symlink, path, target, (0, 0), T0)
        }

        fn hardlink(self, path: &str, target: &str) -> Self {
            self.link(EntryType::Link, path, target, (0, 0), T0)
        }

        fn special(mut self, ty: EntryType, path: &str, mode: u32) -> Self {
            let mut h = header(ty, mode, (0, 0), T0, 0);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        /// An entry whose name and link name bytes are written verbatim, bypassing the
        /// Builder's path checks (which refuse `..` and absolute paths).
        fn raw(mut self, ty: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
            let mut h = header(ty, 0o644, (0, 0), T0, data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        /// A GNU long-name header carrying `name` verbatim for the next entry.
        fn gnu_long_name(mut self, name: &[u8]) -> Self {
            let mut data = name.to_vec();
            data.push(0);
            let mut h = header(EntryType::GNULongName, 0o644, (0, 0), 0, data.len() as u64);
            h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            h.set_cksum();
            self.0.append(&h, &data[..]).unwrap();
            self
        }

        /// A PAX extended header with the given records for the next entry.
        fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let body = key.len() + value.len() + 3; // space, '=', newline
                let mut len = body + body.to_string().len();
                if len.to_string().len() != body.to_string().len() {
                    len += 1;
                }
                data.extend_from_slice(format!("{len} {key}=").as_bytes());
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            let mut h = header(EntryType::XHeader, 0o644, (0, 0), 0, data.len() as u64);
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_cksum();
            self.0.append(&h, &data[..]).unwrap();
            self
        }

        fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn owner_of(p: &Path) -> (u32, u32) {
        let md = fs::symlink_metadata(p).unwrap();
        (md.uid(), md.gid())
    }

    fn mtime_of(p: &Path) -> (i64, i64) {
        let md = fs::symlink_metadata(p).unwrap();
        (md.mtime(), md.mtime_nsec())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn assert_escape(result: Result<UnpackStats, UnpackError>, entry: &str) {
        match result {
            Err(UnpackError::Escape { entry: got, .. }) => assert_eq!(got, entry),
            other => panic!("expected an escape for {entry:?}, got {other:?}"),
        }
    }

    fn xattr(p: &Path, name: &CStr) -> Option<Vec<u8>> {
        let path = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: both strings are NUL-terminated and live across the call; `buf` is writable
        // for `buf.len()` bytes.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        usize::try_from(n).ok().map(|n| buf[..n].to_vec())
    }

    /// A small deterministic PRNG so the fuzz test needs no extra crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn files_dirs_links_and_metadata_round_trip() {
        let sb = Sandbox::new();
        let layer = Layer::new()
            .dir_full("./", 0o751, (0, 0), T0 + 1)
            .dir_full("etc/", 0o750, (10, 20), T0 + 2)
            .file_full(
                "etc/passwd",
                b"root:x:0:0::/root:/bin/sh\n",
                0o640,
                (0, 42),
                T0 + 3,
            )
            .file_full("usr/bin/su", b"\x7fELF", 0o4755, (0, 0), T0 + 4)
            .file_full("usr/bin/wall", b"wall", 0o2755, (0, 5), T0 + 5)
            .dir_full("tmp/", 0o1777, (0, 0), T0 + 6)
            .link(
                EntryType::Symlink,
                "etc/localtime",
                "/usr/share/zoneinfo/UTC",
                (7, 8),
                T0 + 7,
            )
            .symlink("etc/su", "../usr/bin/su")
            .hardlink("usr/bin/su2", "usr/bin/su")
            .special(EntryType::Fifo, "run/initctl", 0o620)
            // Contents first, then the directory entry: its metadata must still win.
            .file("late/inner", b"x")
            .dir_full("late/", 0o700, (33, 44), T0 + 9)
            .file("./empty", b"")
            .build();
        let stats = sb.unpack(&layer).unwrap();
        assert_eq!(
            stats,
            UnpackStats {
                entries: 13,
                bytes: 26 + 4 + 4 + 1,
                whiteouts: 0
            }
        );

        let d = &sb.dest;
        assert_eq!(mode_of(d), 0o751);
        assert_eq!(mtime_of(d), (T0 as i64 + 1, 0));
        assert_eq!(mode_of(&d.join("etc")), 0o750);
        assert_eq!(owner_of(&d.join("etc")), (10, 20));
        // The directory's mtime survives the files written into it afterwards.
        assert_eq!(mtime_of(&d.join("etc")).0, T0 as i64 + 2);
        assert_eq!(
            fs::read(d.join("etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(mode_of(&d.join("etc/passwd")), 0o640);
        assert_eq!(owner_of(&d.join("etc/passwd")), (0, 42));
        assert_eq!(mtime_of(&d.join("etc/passwd")).0, T0 as i64 + 3);
        assert_eq!(mode_of(&d.join("usr/bin/su")), 0o4755);
        assert_eq!(mode_of(&d.join("usr/bin/wall")), 0o2755);
        assert_eq!(owner_of(&d.join("usr/bin/wall")), (0, 5));
        assert_eq!(mode_of(&d.join("tmp")), 0o1777);
        // Implicit parents are 0755 root:root.
        for implicit in ["usr", "usr/bin", "run"] {
            assert_eq!(mode_of(&d.join(implicit)), 0o755, "{implicit}");
            assert_eq!(owner_of(&d.join(implicit)), (0, 0), "{implicit}");
        }
        let localtime = d.join("etc/localtime");
        assert!(
            fs::symlink_metadata(&localtime)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_link(&localtime).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        assert_eq!(owner_of(&localtime), (7, 8));
        assert_eq!(mtime_of(&localtime).0, T0 as i64 + 7);
        assert_eq!(
            fs::read_link(d.join("etc/su")).unwrap(),
            Path::new("../usr/bin/su")
        );
        let su = fs::metadata(d.join("usr/bin/su")).unwrap();
        let su2 = fs::metadata(d.join("usr/bin/su2")).unwrap();
        assert_eq!(su.ino(), su2.ino());
        assert_eq!(su.nlink(), 2);
        let fifo = fs::symlink_metadata(d.join("run/initctl")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o620);
        assert_eq!(mode_of(&d.join("late")), 0o700);
        assert_eq!(owner_of(&d.join("late")), (33, 44));
        assert_eq!(mtime_of(&d.join("late")).0, T0 as i64 + 9);
        assert_eq!(fs::read(d.join("late/inner")).unwrap(), b"x");
        assert_eq!(fs::read(d.join("empty")).unwrap(), b"");
        sb.assert_contained(&[]);
    }

    #[test]
    fn pax_times_and_long_names() {
        let sb = Sandbox::new();
        let long_dir = format!("{}/{}", "d".repeat(90), "e".repeat(90));
        let long_file = format!("{long_dir}/{}", "f".repeat(120));
        let long_link = format!("{long_dir}/{}", "g".repeat(120));
        let layer = Layer::new()
            .pax(&[
                ("mtime", b"1700000000.123456789"),
                ("atime", b"1700000001.5"),
            ])
            .file(&long_file, b"long")
            .hardlink(&format!("{long_dir}/hard"), &long_file)
            .symlink(
                &long_link,
                &format!("../{}/{}", "e".repeat(90), "f".repeat(120)),
            )
            .pax(&[
                ("path", b"pax/renamed"),
                ("uid", b"3000000"),
                ("mtime", b"-1.25"),
            ])
            .file("short-name-in-header", b"p")
            .build();
        let stats = sb.unpack(&layer).unwrap();
        assert_eq!(stats.entries, 4);
        let f = sb.dest.join(&long_file);
        // Look at atime before reading the file bumps it.
        let md = fs::metadata(&f).unwrap();
        assert_eq!((md.atime(), md.atime_nsec()), (1_700_000_001, 500_000_000));
        assert_eq!(mtime_of(&f), (1_700_000_000, 123_456_789));
        assert_eq!(fs::read(&f).unwrap(), b"long");
        assert_eq!(
            fs::metadata(sb.dest.join(&long_dir).join("hard"))
                .unwrap()
                .ino(),
            md.ino()
        );
        assert_eq!(fs::read(sb.dest.join(&long_link)).unwrap(), b"long");
        let renamed = sb.dest.join("pax/renamed");
        assert_eq!(fs::read(&renamed).unwrap(), b"p");
        assert_eq!(owner_of(&renamed).0, 3_000_000);
        assert_eq!(mtime_of(&renamed), (-2, 750_000_000));
        assert!(!sb.dest.join("short-name-in-header").exists());
    }

    #[test]
    fn gzip_and_zstd_layers() {
        let layer = Layer::new()
            .dir("app/")
            .file("app/data.bin", &[7u8; 300_000])
            .symlink("app/link", "data.bin")
            .build();
        for (kind, blob) in [
            ("gzip", gzip(&layer)),
            ("zstd", zstd(&layer)),
            ("plain", layer.clone()),
        ] {
            let sb = Sandbox::new();
            let stats = sb
                .unpack(&blob[..])
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(
                stats,
                UnpackStats {
                    entries: 3,
                    bytes: 300_000,
                    whiteouts: 0
                },
                "{kind}"
            );
            assert_eq!(
                fs::read(sb.dest.join("app/link")).unwrap(),
                vec![7u8; 300_000],
                "{kind}"
            );
        }
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_links() {
        let sb = Sandbox::new();
        let outside_file = sb.outside.join("victim");
        let layer = Layer::new()
            .file("f", b"one")
            .file("f", b"two")
            .dir("d/")
            .file("d/x", b"x")
            .file("d", b"now a file")
            .symlink("s", outside_file.to_str().unwrap())
            .file("s", b"replaces the link")
            .file("t", b"file")
            .dir_full("t/", 0o711, (0, 0), T0)
            .build();
        sb.unpack(&layer).unwrap();
        assert_eq!(fs::read(sb.dest.join("f")).unwrap(), b"two");
        assert_eq!(fs::read(sb.dest.join("d")).unwrap(), b"now a file");
        let s = fs::symlink_metadata(sb.dest.join("s")).unwrap();
        assert!(s.file_type().is_file());
        assert_eq!(fs::read(sb.dest.join("s")).unwrap(), b"replaces the link");
        assert!(fs::symlink_metadata(sb.dest.join("t")).unwrap().is_dir());
        assert_eq!(mode_of(&sb.dest.join("t")), 0o711);
        assert!(!outside_file.exists());
        sb.assert_contained(&[]);
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused() {
        for name in ["../x", "a/../../x", "./../x", "a/.."] {
            let sb = Sandbox::new();
            let layer = Layer::new()
                .raw(EntryType::Regular, name.as_bytes(), b"", b"evil")
                .build();
            assert_escape(sb.unpack(&layer), name);
            assert!(!sb.base().join("x").exists());
            sb.assert_contained(&[]);
        }
        let sb = Sandbox::new();
        let abs = format!("{}/abs", sb.outside.display());
        let layer = Layer::new()
            .raw(EntryType::Regular, abs.as_bytes(), b"", b"evil")
            .build();
        assert_escape(sb.unpack(&layer), &abs);
        sb.assert_contained(&[]);
        // The same through the long-name channels that the tar crate resolves.
        let sb = Sandbox::new();
        let long = format!("{}/../../../x", "a/".repeat(60));
        let layer = Layer::new()
            .gnu_long_name(long.as_bytes())
            .raw(EntryType::Regular, b"placeholder", b"", b"evil")
            .build();
        assert_escape(sb.unpack(&layer), &long);
        let layer = Layer::new()
            .pax(&[("path", b"../x")])
            .raw(EntryType::Regular, b"placeholder", b"", b"evil")
            .build();
        assert_escape(sb.unpack(&layer), "../x");
        assert!(!sb.base().join("x").exists());
        sb.assert_contained(&[]);
    }

    #[test]
    fn writes_through_a_symlinked_parent_are_refused() {
        // Built per sandbox so the symlink points at that sandbox's sibling directory.
        type Build = fn(&str) -> Layer;
        let cases: [(&str, Build); 9] = [
            ("a/file", |o| {
                Layer::new().symlink("a", o).file("a/file", b"evil")
            }),
            ("a/sub/", |o| Layer::new().symlink("a", o).dir("a/sub/")),
            ("a/deep/file", |o| {
                Layer::new().symlink("a", o).file("a/deep/file", b"e")
            }),
            ("r/a/file", |o| {
                Layer::new()
                    .dir("r/")
                    .symlink("r/a", o)
                    .file("r/a/file", b"e")
            }),
            ("a/.wh.x", |o| {
                Layer::new().symlink("a", o).file("a/.wh.x", b"")
            }),
            ("a/.wh..wh..opq", |o| {
                Layer::new().symlink("a", o).file("a/.wh..wh..opq", b"")
            }),
            ("a/l", |o| {
                Layer::new().symlink("a", o).symlink("a/l", "/etc")
            }),
            ("a/h", |o| {
                Layer::new()
                    .file("f", b"")
                    .symlink("a", o)
                    .hardlink("a/h", "f")
            }),
            // A dangling link must not be "repaired" by creating its target.
            ("a/file", |o| {
                Layer::new()
                    .symlink("a", &format!("{o}/not/yet"))
                    .file("a/file", b"e")
            }),
        ];
        for (entry, build) in cases {
            let sb = Sandbox::new();
            let layer = build(sb.outside.to_str().unwrap()).build();
            assert_escape(sb.unpack(&layer), entry);
            sb.assert_contained(&[]);
            assert!(xattr(&sb.outside, OPAQUE_XATTR).is_none());
        }
    }

    #[test]
    fn relative_symlinks_may_not_climb_out() {
        for (entry, target) in [
            ("a/b", "../../outside"),
            ("l", ".."),
            ("a/b/c", "x/../../../../etc"),
        ] {
            let sb = Sandbox::new();
            let layer = Layer::new().symlink(entry, target).build();
            assert_escape(sb.unpack(&layer), entry);
            sb.assert_contained(&[]);
        }
        // Climbing that stays inside, and absolute targets, are fine.
        let sb = Sandbox::new();
        let layer = Layer::new()
            .symlink("a/b/c", "../../x")
            .symlink("a/up", "..")
            .symlink("abs", "/etc/passwd")
            .build();
        sb.unpack(&layer).unwrap();
        assert_eq!(
            fs::read_link(sb.dest.join("a/up")).unwrap(),
            Path::new("..")
        );
        assert_eq!(
            fs::read_link(sb.dest.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn bad_hardlinks_are_refused() {
        let probe = Sandbox::new();
        let secret_abs = probe.base().join("secret");
        drop(probe);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("h", b"../secret".to_vec()),
            ("h", b"a/../../secret".to_vec()),
            ("h", b"missing".to_vec()),
            ("h", b".".to_vec()),
            ("h", secret_abs.as_os_str().as_encoded_bytes().to_vec()),
        ];
        for (entry, target) in cases {
            let sb = Sandbox::new();
            let secret = sb.base().join("secret");
            fs::write(&secret, b"secret").unwrap();
            let target = String::from_utf8(target)
                .unwrap()
                .replace(secret_abs.to_str().unwrap(), secret.to_str().unwrap());
            let layer = Layer::new()
                .raw(EntryType::Link, entry.as_bytes(), target.as_bytes(), b"")
                .build();
            assert_escape(sb.unpack(&layer), entry);
            assert!(!sb.dest.join("h").exists());
            assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
            sb.assert_contained(&["secret"]);
        }
        // A relative symlink that is fine where it is, but not once hardlinked higher up.
        let sb = Sandbox::new();
        let layer = Layer::new()
            .symlink("a/b/s", "../../x")
            .hardlink("a/b/ok", "a/b/s")
            .hardlink("top", "a/b/s")
            .build();
        assert_escape(sb.unpack(&layer), "top");
        assert!(
            fs::symlink_metadata(sb.dest.join("a/b/ok"))
                .unwrap()
                .is_symlink()
        );
        assert!(fs::symlink_metadata(sb.dest.join("top")).is_err());
        // Through a symlinked directory that points at the secret's directory.
        let sb = Sandbox::new();
        let secret = sb.base().join("secret");
        fs::write(&secret, b"secret").unwrap();
        let layer = Layer::new()
            .symlink("up", sb.base().to_str().unwrap())
            .raw(EntryType::Link, b"h", b"up/secret", b"")
            .build();
        assert_escape(sb.unpack(&layer), "h");
        assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
        sb.assert_contained(&["secret"]);
    }

    #[test]
    fn device_nodes_are_refused() {
        for ty in [EntryType::Char, EntryType::Block] {
            let sb = Sandbox::new();
            let layer = Layer::new().special(ty, "dev/null", 0o666).build();
            match sb.unpack(&layer) {
                Err(UnpackError::Device { entry }) => assert_eq!(entry, "dev/null"),
                other => panic!("expected a device error, got {other:?}"),
            }
            assert!(fs::symlink_metadata(sb.dest.join("dev/null")).is_err());
        }
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        let sb = Sandbox::new();
        let layer = Layer::new()
            .dir("etc/")
            .file("etc/.wh.passwd", b"")
            .file(".wh.gone-dir", b"")
            .file("var/lib/.wh..wh..opq", b"")
            .file("keep", b"mine")
            .file(".wh.keep", b"")
            .file("x/.wh..wh.plnk", b"")
            .build();
        let stats = sb.unpack(&layer).unwrap();
        assert_eq!(stats.whiteouts, 3);
        assert_eq!(stats.entries, 7);
        for wh in ["etc/passwd", "gone-dir"] {
            let md = fs::symlink_metadata(sb.dest.join(wh)).unwrap();
            assert!(md.file_type().is_char_device(), "{wh}");
            assert_eq!(md.rdev(), 0, "{wh}");
            assert!(!sb.dest.join(format!(".wh.{wh}")).exists());
        }
        assert!(!sb.dest.join("etc/.wh.passwd").exists());
        let var_lib = sb.dest.join("var/lib");
        assert!(var_lib.is_dir());
        assert_eq!(xattr(&var_lib, OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
        assert!(!var_lib.join(".wh..wh..opq").exists());
        assert_eq!(fs::read(sb.dest.join("keep")).unwrap(), b"mine");
        // Other `.wh..wh.` names are tooling metadata and leave nothing behind.
        assert!(!sb.dest.join("x").exists());

        for bad in ["a/.wh..", "a/.wh...", ".wh."] {
            let sb = Sandbox::new();
            let layer = Layer::new()
                .raw(EntryType::Regular, bad.as_bytes(), b"", b"")
                .build();
            assert_escape(sb.unpack(&layer), bad);
            sb.assert_contained(&[]);
        }
        let sb = Sandbox::new();
        let layer = Layer::new()
            .raw(EntryType::Regular, b"../.wh.outside", b"", b"")
            .build();
        assert_escape(sb.unpack(&layer), "../.wh.outside");
        sb.assert_contained(&[]);
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let layer = Layer::new()
            .file("a", &[1u8; 5000])
            .file("b", b"bee")
            .build();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let garbage: Vec<u8> = (0..2000).map(|_| rng.next() as u8).collect();
        let gz = gzip(&layer);
        let zs = zstd(&layer);
        let mut bad_gzip = GZIP_MAGIC.to_vec();
        bad_gzip.extend_from_slice(&garbage);
        let mut bad_zstd = ZSTD_MAGIC.to_vec();
        bad_zstd.extend_from_slice(&garbage);
        let mut bad_crc = gz.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0xff;
        let inputs: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", garbage.clone()),
            ("short garbage", b"abc".to_vec()),
            ("gzip magic then garbage", bad_gzip),
            ("zstd magic then garbage", bad_zstd),
            ("truncated gzip", gz[..gz.len() / 2].to_vec()),
            ("gzip without trailer", gz[..gz.len() - 4].to_vec()),
            ("gzip with bad crc", bad_crc),
            ("truncated zstd", zs[..zs.len() / 2].to_vec()),
            ("tar cut inside a file", layer[..512 + 100].to_vec()),
            ("tar cut inside a header", layer[..300].to_vec()),
        ];
        for (what, blob) in inputs {
            let sb = Sandbox::new();
            match sb.unpack(&blob[..]) {
                Err(UnpackError::Corrupt(_) | UnpackError::Io { .. }) => {}
                other => panic!("{what}: expected Corrupt or Io, got {other:?}"),
            }
            sb.assert_contained(&[]);
        }
        // An empty blob is an empty layer.
        let sb = Sandbox::new();
        assert_eq!(sb.unpack(&b""[..]).unwrap(), UnpackStats::default());
    }

    #[test]
    fn destination_must_be_an_empty_directory() {
        let sb = Sandbox::new();
        fs::write(sb.dest.join("old"), b"").unwrap();
        let layer = Layer::new().file("a", b"a").build();
        assert!(matches!(sb.unpack(&layer), Err(UnpackError::Io { .. })));
        assert!(matches!(
            unpack_layer(&layer[..], &sb.dest.join("old")),
            Err(UnpackError::Io { .. })
        ));
        assert!(matches!(
            unpack_layer(&layer[..], &sb.dest.join("missing")),
            Err(UnpackError::Io { .. })
        ));
    }

    #[test]
    fn path_and_time_helpers() {
        assert_eq!(
            parse_rel_path(b"./a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(parse_rel_path(b"./").unwrap().is_empty());
        assert!(parse_rel_path(b"/a").is_err());
        assert!(parse_rel_path(b"a/../b").is_err());
        assert!(!climbs_out(1, b"../x"));
        assert!(climbs_out(1, b"../../x"));
        assert!(!climbs_out(0, b"a/../b"));
        assert!(climbs_out(0, b"a/../../b"));
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(TimeSpec::new(12, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(TimeSpec::new(1, 123_456_789))
        );
        assert_eq!(
            parse_pax_time(b"-0.5"),
            Some(TimeSpec::new(-1, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b""), None);
        assert_eq!(parse_pax_time(b"1.2.3"), None);
    }

    /// Offsets of every header block in a well-formed tar (extension headers included).
    fn header_offsets(tar: &[u8]) -> Vec<usize> {
        let mut offsets = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
            offsets.push(at);
            let size_field = std::str::from_utf8(&tar[at + 124..at + 136]).unwrap();
            let size =
                u64::from_str_radix(size_field.trim_matches(['\0', ' ']), 8).unwrap() as usize;
            at += 512 + size.div_ceil(512) * 512;
        }
        offsets
    }

    fn fix_checksum(block: &mut [u8]) {
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn fuzz_mutated_layers_never_escape() {
        let out = "/tmp/berth-unpack-fuzz-sentinel";
        let seeds = [
            Layer::new()
                .dir_full("./", 0o755, (0, 0), T0)
                .dir("etc/")
                .file("etc/passwd", b"root")
                .symlink("etc/l", "../etc/passwd")
                .symlink("abs", out)
                .hardlink("etc/h", "etc/passwd")
                .special(EntryType::Fifo, "fifo", 0o600)
                .file("etc/.wh.shadow", b"")
                .file("var/.wh..wh..opq", b"")
                .pax(&[("mtime", b"1.5"), ("path", b"pax/p")])
                .file("x", b"pax")
                .file(&"long/".repeat(40), b"long")
                .build(),
            // One hostile entry per seed, after a benign one, so each is reached unmutated.
            Layer::new()
                .file("ok", b"ok")
                .symlink("a", out)
                .file("a/file", b"evil")
                .build(),
            Layer::new()
                .file("ok", b"ok")
                .raw(EntryType::Regular, b"../x", b"", b"evil")
                .build(),
            Layer::new()
                .file("ok", b"ok")
                .raw(EntryType::Link, b"h", b"../x", b"")
                .build(),
            Layer::new()
                .file("ok", b"ok")
                .raw(EntryType::Symlink, b"b/c", b"../../x", b"")
                .build(),
            Layer::new()
                .file("ok", b"ok")
                .raw(EntryType::Regular, out.as_bytes(), b"", b"e")
                .build(),
        ];
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let interesting = b"./\0x0567Lx2K5S1..";
        let mut outcomes = [0u32; 5];
        for round in 0..360usize {
            // Half the rounds mutate the benign seed, so that mutations reach deep into it.
            let seed = if round % 2 == 0 {
                &seeds[0]
            } else {
                &seeds[1 + (round / 2) % (seeds.len() - 1)]
            };
            let mut blob = seed.clone();
            let offsets = header_offsets(&blob);
            for _ in 0..1 + rng.below(4) {
                let hdr = offsets[rng.below(offsets.len())];
                // Aim at the name, linkname and typeflag fields most of the time.
                let field = match rng.below(4) {
                    0 => rng.below(100),
                    1 => 157 + rng.below(100),
                    2 => 156,
                    _ => rng.below(blob.len() - hdr),
                };
                let byte = if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    rng.next() as u8
                };
                blob[hdr + field] = byte;
            }
            if rng.below(4) != 0 {
                for hdr in offsets {
                    fix_checksum(&mut blob[hdr..hdr + 512]);
                }
            }
            if rng.below(8) == 0 {
                blob.truncate(rng.below(blob.len()));
            }
            let result = match rng.below(6) {
                0 => fuzz_unpack(&gzip(&blob)),
                1 => fuzz_unpack(&zstd(&blob)),
                _ => fuzz_unpack(&blob),
            };
            assert!(
                fs::symlink_metadata(out).is_err(),
                "round {round} wrote {out}"
            );
            let slot = match result {
                Ok(_) => 0,
                Err(UnpackError::Escape { .. }) => 1,
                Err(UnpackError::Device { .. }) => 2,
                Err(UnpackError::Io { .. }) => 3,
                Err(UnpackError::Corrupt(_) | UnpackError::TooLarge(_)) => 4,
            };
            outcomes[slot] += 1;
        }
        // The mutations must reach the unpacker's logic, not just the tar parser's checks.
        let [ok, escape, device, io, corrupt] = outcomes;
        eprintln!(
            "fuzz outcomes: ok {ok}, escape {escape}, device {device}, io {io}, corrupt {corrupt}"
        );
        assert!(ok >= 30 && escape >= 30 && corrupt >= 30, "{outcomes:?}");
    }

    #[test]
    fn a_very_deep_tree_is_removed_without_recursion() {
        let dir = tempfile::tempdir().unwrap();
        let top = std::fs::File::open(dir.path()).unwrap();
        let mut fd = OwnedFd::from(top.try_clone().unwrap());
        mkdirat(&fd, c"deep", Mode::from_bits_truncate(0o755)).unwrap();
        fd = openat(&fd, c"deep", dir_flags(), Mode::empty()).unwrap();
        // Far deeper than a thread's stack would survive with one frame per level.
        for _ in 0..20_000 {
            mkdirat(&fd, c"d", Mode::from_bits_truncate(0o755)).unwrap();
            std::fs::write(format!("/proc/self/fd/{}/f", fd.as_raw_fd()), b"x").unwrap();
            fd = openat(&fd, c"d", dir_flags(), Mode::empty()).unwrap();
        }
        drop(fd);
        remove_all_at(top.as_fd(), c"deep").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
