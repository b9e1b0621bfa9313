//! The host side of virtio-blk: a raw file under an exclusive flock, positional I/O,
//! fdatasync, and hole punching for discard and write-zeroes.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::request::VIRTIO_BLK_ID_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("opening the disk {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the disk {0} is locked by another VM or program")]
    Locked(PathBuf),
    #[error("locking the disk {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A raw disk image.
#[derive(Debug)]
pub struct DiskFile {
    file: File,
    size: u64,
    read_only: bool,
    id: [u8; VIRTIO_BLK_ID_BYTES],
}

impl DiskFile {
    /// Opens `path` and takes an exclusive lock on it; fails at once if someone holds one.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let open_err = |source| BlockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        // SAFETY: `file` is an open descriptor; flock does not touch memory.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                BlockError::Locked(path.to_path_buf())
            } else {
                BlockError::Lock {
                    path: path.to_path_buf(),
                    source: e,
                }
            });
        }
        let meta = file.metadata().map_err(open_err)?;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
        let text = format!("berth-{:x}", meta.ino());
        let n = text.len().min(id.len());
        id[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(DiskFile {
            file,
            size: meta.len(),
            read_only,
            id,
        })
    }

    /// Size in bytes (fixed at open).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The serial the guest reads with GET_ID.
    pub fn id(&self) -> &[u8; VIRTIO_BLK_ID_BYTES] {
        &self.id
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Makes written data durable (flush).
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates `len` bytes at `offset`; they read back as zeros. Where the filesystem
    /// cannot punch holes, writes zeros instead when `must_zero` (write-zeroes), else does
    /// nothing (discard is only a hint).
    pub fn punch_hole(&self, offset: u64, len: u64, must_zero: bool) -> std::io::Result<()> {
        // SAFETY: `file` is an open descriptor; fallocate does not touch memory.
        let ret = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
        if !must_zero {
            return Ok(());
        }
        let zeros = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Bytes actually allocated on the host (for tests and stats).
    pub fn allocated_bytes(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.blocks() * 512)
    }
}
