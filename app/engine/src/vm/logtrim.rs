//! Keeps the VM's logs (the serial console, the VMM's and helpers' output) bounded while a VM
//! runs: they are truncated at each boot, and in between, once a log holds more than
//! [`LIMIT`] bytes on disk, everything but its last [`KEEP`] bytes is punched out. The writers
//! keep their offsets (the file becomes sparse), so nothing has to reopen it; readers take
//! the tail ([`tail_bytes`]).

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes on disk past which a log is trimmed.
pub const LIMIT: u64 = 16 << 20;
/// Bytes kept at the end of a trimmed log.
pub const KEEP: u64 = 4 << 20;

/// Trims `path` when it holds more than `limit` bytes on disk, keeping its last `keep`.
/// Returns the bytes freed.
pub fn trim(path: &Path, limit: u64, keep: u64) -> std::io::Result<u64> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let meta = file.metadata()?;
    let on_disk = meta.blocks() * 512;
    if on_disk <= limit {
        return Ok(0);
    }
    let end = meta.len().saturating_sub(keep) / 4096 * 4096;
    if end == 0 {
        return Ok(0);
    }
    // SAFETY: fallocate on an open descriptor, with a range inside the file.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            end as libc::off_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(on_disk.saturating_sub(file.metadata()?.blocks() * 512))
}

/// The last `max` bytes of `path` (empty when it cannot be read), without the zeros a trim
/// left before them.
pub fn tail_bytes(path: &Path, max: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut out = Vec::new();
    let _ = file.take(max).read_to_end(&mut out);
    let start = out.iter().position(|b| *b != 0).unwrap_or(out.len());
    out.drain(..start);
    out
}

/// Trims the VM's logs every 30 s until the task is dropped.
pub fn spawn(logs: Vec<std::path::PathBuf>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            every.tick().await;
            for log in &logs {
                match trim(log, LIMIT, KEEP) {
                    Ok(0) => {}
                    Ok(freed) => tracing::debug!(log = %log.display(), freed, "trimmed a VM log"),
                    Err(e) => tracing::debug!(log = %log.display(), "trimming a VM log: {e}"),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_log_past_its_limit_keeps_its_tail_while_its_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let line = b"[    1.000000] a line of the guest's console\n";
        for _ in 0..(2 << 20) / line.len() {
            writer.write_all(line).unwrap();
        }
        writer.write_all(b"the last line\n").unwrap();
        assert_eq!(
            trim(&path, 4 << 20, 64 << 10).unwrap(),
            0,
            "under the limit"
        );
        let freed = trim(&path, 1 << 20, 64 << 10).unwrap();
        assert!(freed > 1 << 20, "freed {freed}");
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            meta.blocks() * 512 <= 256 << 10,
            "{} on disk",
            meta.blocks() * 512
        );
        // The writer goes on where it was; the tail reads back whole.
        writer.write_all(b"after the trim\n").unwrap();
        let tail = tail_bytes(&path, 1 << 20);
        let text = String::from_utf8(tail).unwrap();
        assert!(
            text.ends_with("the last line\nafter the trim\n"),
            "{text:?}"
        );
        assert!(!text.starts_with('\0'));
    }
}
