//! Tree copies inside the VM that keep what a layer or a volume must keep: owners (or a given
//! owner), modes with their setuid bits, symlinks as links, device nodes (overlay whiteouts
//! among them). Copying into a directory merges with what is there; a file replaces one.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Copies one entry (file, link, device node, or directory tree) to `to`, owned by `owner` or
/// by its own owner when `None`.
pub fn copy_entry(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(from)?;
    let (uid, gid) = owner.unwrap_or((md.uid(), md.gid()));
    let ft = md.file_type();
    if ft.is_dir() {
        if !to.is_dir() {
            std::fs::create_dir(to)?;
        }
    } else {
        if std::fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(to)?;
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        } else if ft.is_file() {
            std::fs::copy(from, to)?;
        } else {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(md.mode());
            let perm = nix::sys::stat::Mode::from_bits_truncate(md.mode());
            nix::sys::stat::mknod(to, kind, perm, md.rdev())?;
        }
    }
    // The owner first: chown clears setuid and setgid bits, which the mode then restores.
    std::os::unix::fs::lchown(to, Some(uid), Some(gid))?;
    if !ft.is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    if ft.is_dir() {
        copy_into(from, to, owner)?;
    }
    Ok(())
}

/// Copies the contents of directory `from` into directory `to`.
pub fn copy_into(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        copy_entry(&e.path(), &to.join(e.file_name()), owner)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        copy_entry(&src, &dst, None).unwrap();
        assert_eq!(std::fs::read(dst.join("sub/file")).unwrap(), b"x");
        assert_eq!(
            std::fs::read(dst.join("sub/kept")).unwrap(),
            b"k",
            "a merge"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
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
        copy_entry(
            &src.join("sub/file"),
            &dst.join("owned"),
            Some((1000, 1000)),
        )
        .unwrap();
        assert_eq!(std::fs::metadata(dst.join("owned")).unwrap().uid(), 1000);
    }
}
