//! `docker diff`: what a container changed in its image, read from its overlay upper directory
//! against the image's layers. Owns nothing; reads only.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// dockerd's change kinds.
pub const MODIFIED: u8 = 0;
pub const ADDED: u8 = 1;
pub const DELETED: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub path: String,
    pub kind: u8,
}

/// What Berth itself puts in every container (dockerd keeps these in its init layer, which
/// `docker diff` does not show): mount points and the files bound over the image's.
const OWN: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/.dockerenv",
    "/sbin/berth-init",
];

fn own(path: &str) -> bool {
    OWN.iter().any(|o| {
        path == *o
            || path
                .strip_prefix(o)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The changes in `upper` over `lowers` (the image's layer trees, any order), sorted by path
/// as dockerd sorts them. A whiteout is a deletion; a path a layer has is a modification, any
/// other an addition; a directory the image has shows only when something under it changed.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<Vec<Change>> {
    if !upper.exists() {
        // Created and never started: nothing changed yet.
        return Ok(Vec::new());
    }
    let in_image = |rel: &str| {
        lowers
            .iter()
            .any(|l| std::fs::symlink_metadata(l.join(rel.trim_start_matches('/'))).is_ok())
    };
    // (path, kind, is a directory the image also has)
    let mut found: Vec<(String, u8, bool)> = Vec::new();
    // An explicit stack: a deep tree must not exhaust the agent's stack.
    let mut stack = vec![(upper.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if own(&path) {
                continue;
            }
            let kind = entry.file_type()?;
            let meta = entry.metadata()?;
            if kind.is_char_device() && meta.rdev() == 0 {
                found.push((path, DELETED, false));
                continue;
            }
            let existed = in_image(&path);
            if kind.is_dir() {
                stack.push((entry.path(), path.clone()));
            }
            found.push((
                path,
                if existed { MODIFIED } else { ADDED },
                existed && kind.is_dir(),
            ));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    // The image's directories that hold a change somewhere below.
    let mut holding = std::collections::HashSet::new();
    for (path, _, only_a_parent) in &found {
        if !only_a_parent {
            let mut at = path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if parent.is_empty() || !holding.insert(parent.to_owned()) {
                    break;
                }
                at = parent;
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|(path, _, only_a_parent)| !only_a_parent || holding.contains(path))
        .map(|(path, kind, _)| Change { path, kind })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_as_dockerd_reports_them() {
        let image = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        for d in ["etc", "usr/bin", "var/empty"] {
            std::fs::create_dir_all(image.path().join(d)).unwrap();
        }
        std::fs::write(image.path().join("etc/passwd"), "root").unwrap();
        std::fs::write(image.path().join("etc/group"), "root").unwrap();
        // The container changed /etc/passwd, made /new/f, touched only what Berth binds in
        // /etc, and copied up /usr and /usr/bin without changing anything under them.
        for d in ["etc", "new", "usr/bin", "dev/pts", "proc"] {
            std::fs::create_dir_all(upper.path().join(d)).unwrap();
        }
        std::fs::write(upper.path().join("etc/passwd"), "root,app").unwrap();
        std::fs::write(upper.path().join("etc/hosts"), "").unwrap();
        std::fs::write(upper.path().join("new/f"), "x").unwrap();
        // Sorts between /etc and /etc/...: the parent rule must not lose /etc for it.
        std::fs::write(upper.path().join("etc-x"), "").unwrap();
        let whiteout = nix::sys::stat::mknod(
            &upper.path().join("etc/group"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .is_ok();
        let got = changes(upper.path(), &[image.path().to_path_buf()]).unwrap();
        let got: Vec<(&str, u8)> = got.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        let mut want = vec![("/etc", MODIFIED), ("/etc-x", ADDED)];
        if whiteout {
            want.push(("/etc/group", DELETED));
        }
        want.extend([
            ("/etc/passwd", MODIFIED),
            ("/new", ADDED),
            ("/new/f", ADDED),
        ]);
        assert_eq!(got, want);
        let nothing = tempfile::tempdir().unwrap();
        let lowers = [image.path().to_path_buf()];
        assert!(changes(nothing.path(), &lowers).unwrap().is_empty());
        assert!(
            changes(&nothing.path().join("never"), &lowers)
                .unwrap()
                .is_empty()
        );
    }
}
