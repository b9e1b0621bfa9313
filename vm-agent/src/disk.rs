//! The data disk: decides whether the block device holds Berth's filesystem, is blank (format it)
//! or holds something else (refuse: never format over data), and mounts it. Owns `/dev/vda` and
//! its mount point; nothing else.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the data disk is mounted inside the guest.
pub const MOUNT_POINT: &str = "/var/lib/berth";
/// The data disk's device node (the first virtio-blk device).
pub const DEVICE: &str = "/dev/vda";
const LABEL: &str = "berth-data";

/// How many bytes at the start of the device decide what it holds.
const HEADER_LEN: usize = 64 * 1024;
const EXT_MAGIC_OFFSET: usize = 1024 + 56;

#[derive(Debug, PartialEq, Eq)]
pub enum DiskState {
    /// An ext2/3/4 superblock is present.
    Ext4,
    /// All zeroes: a new sparse file.
    Blank,
    /// Something else: leave it alone.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("data disk {DEVICE} did not appear within {0:?}")]
    Missing(Duration),
    #[error("reading {DEVICE}: {0}")]
    Read(std::io::Error),
    #[error("{DEVICE} holds data that is not a Berth filesystem; refusing to format it")]
    Foreign,
    #[error("mke2fs failed: {0}")]
    Format(String),
    #[error("mounting {DEVICE} on {MOUNT_POINT}: {0}")]
    Mount(nix::Error),
}

pub fn classify(header: &[u8]) -> DiskState {
    if header.len() > EXT_MAGIC_OFFSET + 1
        && header[EXT_MAGIC_OFFSET] == 0x53
        && header[EXT_MAGIC_OFFSET + 1] == 0xEF
    {
        return DiskState::Ext4;
    }
    if header.iter().all(|b| *b == 0) {
        DiskState::Blank
    } else {
        DiskState::Unknown
    }
}

fn wait_for_device(timeout: Duration) -> Result<(), DiskError> {
    let start = Instant::now();
    while !Path::new(DEVICE).exists() {
        if start.elapsed() > timeout {
            return Err(DiskError::Missing(timeout));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Formats the disk on first boot (blank), then mounts it. Returns true when it formatted.
pub fn prepare_and_mount() -> Result<bool, DiskError> {
    wait_for_device(Duration::from_secs(10))?;
    let mut header = vec![0u8; HEADER_LEN];
    File::open(DEVICE)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(DiskError::Read)?;
    let formatted = match classify(&header) {
        DiskState::Ext4 => false,
        DiskState::Unknown => return Err(DiskError::Foreign),
        DiskState::Blank => {
            let out = Command::new("/sbin/mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", LABEL, "-m", "0"])
                .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,discard"])
                .arg(DEVICE)
                .output()
                .map_err(|e| DiskError::Format(e.to_string()))?;
            if !out.status.success() {
                return Err(DiskError::Format(
                    String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                ));
            }
            true
        }
    };
    std::fs::create_dir_all(MOUNT_POINT).map_err(DiskError::Read)?;
    nix::mount::mount(
        Some(DEVICE),
        MOUNT_POINT,
        Some("ext4"),
        nix::mount::MsFlags::MS_NOATIME,
        Some("discard,errors=remount-ro"),
    )
    .map_err(DiskError::Mount)?;
    Ok(formatted)
}

/// Syncs and unmounts the data disk; used on power-off.
pub fn unmount() -> Result<(), nix::Error> {
    nix::unistd::sync();
    nix::mount::umount2(MOUNT_POINT, nix::mount::MntFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_disk_is_formatted_foreign_is_refused() {
        let mut header = vec![0u8; HEADER_LEN];
        assert_eq!(classify(&header), DiskState::Blank);
        header[5000] = 7;
        assert_eq!(classify(&header), DiskState::Unknown);
        header[EXT_MAGIC_OFFSET] = 0x53;
        header[EXT_MAGIC_OFFSET + 1] = 0xEF;
        assert_eq!(classify(&header), DiskState::Ext4);
    }
}
