//! File work inside a step's root: paths resolved as the container would see them (symlinks
//! kept inside the root), merging copies with owners and modes, and archive detection for ADD.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `path` inside the root `root`, symlinks followed as the container would see them; `None`
/// past 40 links.
pub(super) fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => {}
            ".." => {
                if out != root {
                    out.pop();
                }
            }
            _ => {
                let next = out.join(&c);
                match std::fs::read_link(&next) {
                    Ok(target) => {
                        links += 1;
                        if links > 40 {
                            return None;
                        }
                        let t = target.to_string_lossy().into_owned();
                        if t.starts_with('/') {
                            out = root.to_path_buf();
                        }
                        todo.extend(
                            t.split('/')
                                .filter(|c| !c.is_empty())
                                .rev()
                                .map(str::to_owned),
                        );
                    }
                    _ => out = next,
                }
            }
        }
    }
    Some(out)
}

pub(super) fn is_archive(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    head[..n].starts_with(&[0x1f, 0x8b])
        || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &head[257..262] == b"ustar")
}

/// Copies one entry (file, link, or directory tree) to `to`, replacing a file there.
pub(super) fn copy_entry(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(from)?;
    let (uid, gid) = owner.unwrap_or((md.uid(), md.gid()));
    if md.is_dir() {
        if !to.is_dir() {
            std::fs::create_dir(to)?;
        }
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        std::os::unix::fs::lchown(to, Some(uid), Some(gid))?;
        return copy_into(from, to, owner);
    }
    if std::fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(to)?;
    }
    if md.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else {
        std::fs::copy(from, to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    std::os::unix::fs::lchown(to, Some(uid), Some(gid))
}

/// Copies the contents of directory `from` into directory `to`, merging with what is there.
pub(super) fn copy_into(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
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
    fn paths_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("usr/up")).unwrap();
        assert_eq!(resolve_in(root, "/lib/x").unwrap(), root.join("usr/lib/x"));
        assert_eq!(resolve_in(root, "/usr/up/etc").unwrap(), root.join("etc"));
        assert_eq!(resolve_in(root, "../../etc").unwrap(), root.join("etc"));
    }
}
