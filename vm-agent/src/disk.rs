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

/// The part of the data disk kept for the agent's own records: ext4's reserved blocks. Only a
/// process with CAP_SYS_RESOURCE (the agent; Docker's default capabilities leave containers
/// without it) or the user [`RESERVE_UID`] may write there, so when images or containers have
/// filled the disk the agent can still record what it does. At most 5% of a small disk.
pub const RESERVE_BYTES: u64 = 512 << 20;
/// The one user ID that may use the reserve without CAP_SYS_RESOURCE (ext4's `resuid`, which
/// is 0 by default: every container's root). Far from any ID images use.
pub const RESERVE_UID: u32 = 0x7fff_fffe;

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
    #[error("setting the agent's reserve on {DEVICE}: {0}")]
    Reserve(String),
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
    // The reserve, also on disks formatted before it existed (`-m 0`).
    let mut header = vec![0u8; HEADER_LEN];
    File::open(DEVICE)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(DiskError::Read)?;
    if let Some(blocks) = reserve_blocks(&header) {
        let out = Command::new("/sbin/tune2fs")
            .args(["-r", &blocks.to_string(), DEVICE])
            .output()
            .map_err(|e| DiskError::Reserve(e.to_string()))?;
        if !out.status.success() {
            return Err(DiskError::Reserve(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
    }
    std::fs::create_dir_all(MOUNT_POINT).map_err(DiskError::Read)?;
    let options = format!("discard,errors=remount-ro,resuid={RESERVE_UID}");
    nix::mount::mount(
        Some(DEVICE),
        MOUNT_POINT,
        Some("ext4"),
        nix::mount::MsFlags::MS_NOATIME,
        Some(options.as_str()),
    )
    .map_err(DiskError::Mount)?;
    Ok(formatted)
}

/// The reserved block count the disk should have, from its superblock; `None` when it has it.
fn reserve_blocks(header: &[u8]) -> Option<u64> {
    let sb = header.get(1024..1024 + 0x160)?;
    let le32 = |off: usize| u32::from_le_bytes(sb[off..off + 4].try_into().unwrap()) as u64;
    let block_size = 1024u64 << le32(24).min(16);
    let incompat_64bit = le32(0x60) & 0x80 != 0;
    let hi = |off: usize| if incompat_64bit { le32(off) << 32 } else { 0 };
    let total = le32(4) | hi(0x150);
    let reserved = le32(8) | hi(0x154);
    let want = (RESERVE_BYTES / block_size).min(total / 20);
    (reserved != want).then_some(want)
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

    /// The reserve is read from a real superblock, set by tune2fs, and then left alone.
    #[test]
    fn the_reserve_is_computed_from_the_superblock_and_set_once() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let header = |img: &Path| {
            let mut h = vec![0u8; HEADER_LEN];
            File::open(img).unwrap().read_exact(&mut h).unwrap();
            h
        };
        for (size_mib, want) in [(256u64, 256 * 256 / 20), (20 * 1024, RESERVE_BYTES / 4096)] {
            File::create(&img).unwrap().set_len(size_mib << 20).unwrap();
            let ok = Command::new("/sbin/mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"])
                .arg(&img)
                .status()
                .unwrap();
            assert!(ok.success());
            assert_eq!(reserve_blocks(&header(&img)), Some(want), "{size_mib} MiB");
            let ok = Command::new("/sbin/tune2fs")
                .args(["-r", &want.to_string()])
                .arg(&img)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(ok.success());
            assert_eq!(reserve_blocks(&header(&img)), None);
        }
    }
}
