//! File work inside a step's root: paths resolved as the container would see them (symlinks
//! kept inside the root), and archive detection for ADD.

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
