//! File work inside a step's root: paths resolved as the container would see them (symlinks
//! kept inside the root), archive detection for ADD, and ADD's downloads.

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

/// The file name ADD gives a download: the URL path's last segment.
pub(super) fn download_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.split_once("://").map_or(path, |(_, rest)| rest);
    let (_, path) = after_host.split_once('/')?;
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_owned)
}

/// Downloads `url` for ADD through the host's proxy into `dir` (which must exist), named as
/// [`download_name`] says; mode 0600, as the classic builder leaves a download.
pub(super) fn download(
    rt: &tokio::runtime::Handle,
    url: &str,
    dir: &Path,
) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = download_name(url)
        .ok_or_else(|| format!("ADD failed: cannot determine a file name from {url}"))?;
    let path = dir.join(name);
    let failed = |e: &dyn std::fmt::Display| format!("ADD failed: GET {url}: {e}");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(crate::images::pull::PROXY_URL).map_err(|e| failed(&e))?)
            .connect_timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| failed(&e))?;
        let mut resp = client.get(url).send().await.map_err(|e| failed(&e))?;
        if !resp.status().is_success() {
            return Err(failed(&resp.status()));
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| failed(&e))?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| failed(&e))? {
            file.write_all(&chunk).map_err(|e| failed(&e))?;
        }
        Ok(path.clone())
    })
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

    #[test]
    fn downloads_are_named_by_the_urls_last_segment() {
        assert_eq!(
            download_name("http://h:5000/v2/a/blobs/sha256:ab?x=1").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(download_name("https://example.com/").as_deref(), None);
        assert_eq!(download_name("https://example.com").as_deref(), None);
        assert_eq!(
            download_name("https://example.com/dl/tool.tar.gz").as_deref(),
            Some("tool.tar.gz")
        );
    }
}
