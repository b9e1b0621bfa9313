//! The guest's per-boot secrets, delivered where only the guest's init reads them: an
//! uncompressed cpio archive holding `/berth-seed` (entropy) and `/berth-key` (the agent key,
//! see `berth_agent_proto::auth`), appended to a per-boot copy of the initramfs (Linux unpacks
//! concatenated archives), 0600 in the runtime directory. Not the kernel command line: that
//! shows on the host's process list and in every container's `/proc/cmdline`.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_agent_proto::auth::Key;

use super::VmError;
use crate::paths::Paths;

/// The file in the guest's root that holds the seed (init credits it and removes it).
pub const GUEST_PATH: &str = "berth-seed";
/// The file in the guest's root that holds the agent key (init reads it and removes it).
pub const KEY_PATH: &str = "berth-key";

/// Writes `<run>/initramfs-boot`: the image's initramfs, then an archive holding `seed` and
/// `key`. Returns its path, for the backend's initrd.
pub fn boot_initramfs(
    paths: &Paths,
    initramfs: &Path,
    seed: &[u8],
    key: &Key,
) -> Result<PathBuf, VmError> {
    let out = paths.run_dir.join("initramfs-boot");
    let mut image = std::fs::read(initramfs)
        .map_err(VmError::io(format!("reading {}", initramfs.display())))?;
    // The kernel looks for the next archive's header on a 4-byte boundary (zeros between are
    // skipped).
    image.resize(image.len().next_multiple_of(512), 0);
    image.extend_from_slice(&cpio(&[
        (GUEST_PATH, 0o100400, seed),
        (KEY_PATH, 0o100400, key.as_bytes()),
    ]));
    let _ = std::fs::remove_file(&out);
    let mut f = crate::paths::private_file_options()
        .write(true)
        .create_new(true)
        .open(&out)
        .map_err(VmError::io(format!("creating {}", out.display())))?;
    f.write_all(&image)
        .map_err(VmError::io(format!("writing {}", out.display())))?;
    Ok(out)
}

/// An uncompressed `newc` cpio archive of `(name, mode, data)` files, with its trailer.
fn cpio(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::new();
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(&mut out, i as u32 + 1, name, *mode, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// 32 bytes from the host's getrandom.
pub fn fresh() -> Result<[u8; 32], VmError> {
    let mut seed = [0u8; 32];
    let mut filled = 0;
    while filled < seed.len() {
        // SAFETY: getrandom writes at most `len - filled` bytes into the rest of the buffer.
        let n =
            unsafe { libc::getrandom(seed[filled..].as_mut_ptr().cast(), seed.len() - filled, 0) };
        if n <= 0 {
            return Err(VmError::io("reading the host's random source")(
                std::io::Error::last_os_error(),
            ));
        }
        filled += n as usize;
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_rides_in_an_archive_cpio_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(&paths.run_dir).unwrap();
        let initramfs = dir.path().join("initramfs");
        std::fs::write(&initramfs, b"compressed-image").unwrap();
        let seed = fresh().unwrap();
        let key = Key::generate().unwrap();
        let out = boot_initramfs(&paths, &initramfs, &seed, &key).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"compressed-image"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // GNU cpio reads the appended archive back.
        let archive = &bytes[512..];
        let extract = dir.path().join("x");
        std::fs::create_dir(&extract).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-id", "--quiet"])
            .current_dir(&extract)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (scripts/setup.sh installs it)");
        child.stdin.take().unwrap().write_all(archive).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(extract.join(GUEST_PATH)).unwrap(), seed);
        assert_eq!(
            std::fs::read(extract.join(KEY_PATH)).unwrap(),
            key.as_bytes()
        );
        assert_ne!(fresh().unwrap(), seed);
    }
}
