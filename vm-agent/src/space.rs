//! Room on the data disk: how much an unpack may write, and the reader that stops it there.
//! A layer, an imported archive or a build context can decompress to far more than it weighs
//! (a megabyte of zstd can be tens of gigabytes of zeros), so every decompression the agent
//! runs is capped: at what the filesystem has free outside the agent's reserve (see
//! [`crate::disk::RESERVE_BYTES`]), and at the `max-layer-mib` setting when the user set one
//! (`berth.max_layer_mib=` on the kernel command line). Past the cap the read fails with
//! `StorageFull` and the caller removes what it wrote.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kernel command line key of the user's cap, in MiB.
pub const MAX_LAYER_KEY: &str = "berth.max_layer_mib";

/// Bytes the filesystem holding `dir` has free for unprivileged writers: ext4's reserve is
/// not counted.
pub fn room(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// The user's cap on one decompression, in bytes.
pub fn configured() -> Option<u64> {
    static CAP: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        parse_cap(&cmdline)
    })
}

fn parse_cap(cmdline: &str) -> Option<u64> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(MAX_LAYER_KEY)?.strip_prefix('='))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|mib| *mib > 0)
        .map(|mib| mib.saturating_mul(1 << 20))
}

/// How much one decompression into `dir` may write.
pub fn limit_for(dir: &Path) -> u64 {
    let room = room(dir).unwrap_or(u64::MAX);
    configured().map_or(room, |cap| cap.min(room))
}

/// A reader that fails with `StorageFull` once more than `limit` bytes came through.
pub struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
    tripped: Arc<AtomicBool>,
}

impl<R> Capped<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            left: limit,
            limit,
            tripped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Tells, after the reader is gone, whether it stopped a read at the cap.
    pub fn tripwire(&self) -> Tripwire {
        Tripwire {
            tripped: self.tripped.clone(),
            limit: self.limit,
        }
    }
}

/// Whether a [`Capped`] reader hit its cap.
#[derive(Clone)]
pub struct Tripwire {
    tripped: Arc<AtomicBool>,
    limit: u64,
}

impl Tripwire {
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed)
    }

    /// The error a caller reports for it.
    pub fn message(&self) -> String {
        too_large(self.limit)
    }
}

fn too_large(limit: u64) -> String {
    format!(
        "it decompresses to more than {} MiB, the most the data disk can take now{}",
        limit >> 20,
        if configured().is_some() {
            " (or the max-layer-mib setting allows)"
        } else {
            ""
        }
    )
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // Anything more, even one byte, is over the cap.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.tripped.store(true, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                too_large(self.limit),
            ));
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_cap_and_fails_past_it() {
        let mut ok = Capped::new(&[7u8; 100][..], 100);
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        assert!(!ok.tripwire().tripped());
        let mut over = Capped::new(&[7u8; 101][..], 100);
        let wire = over.tripwire();
        let err = over.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
        assert!(wire.tripped());
    }

    #[test]
    fn the_users_cap_comes_from_the_command_line() {
        assert_eq!(
            parse_cap("console=ttyS0 berth.max_layer_mib=64 quiet"),
            Some(64 << 20)
        );
        assert_eq!(parse_cap("berth.max_layer_mib=0"), None);
        assert_eq!(parse_cap("berth.max_layer_mib=x"), None);
        assert_eq!(parse_cap("console=ttyS0"), None);
        assert!(room(Path::new("/")).unwrap() > 0);
    }
}
