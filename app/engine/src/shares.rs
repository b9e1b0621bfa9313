//! Host directories shared with the VM over virtio-fs: which ones (the `shared-paths` setting,
//! made canonical, nested ones folded into their parent), how the guest learns them (one
//! `berth.share=<tag>:<path>` word each on the kernel command line; the guest mounts tag `<tag>`
//! at `/mnt/host<path>`), and the check that a container's bind mounts stay inside them.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The virtio-fs tag of share `i`.
pub fn tag(i: usize) -> String {
    format!("berth{i}")
}

/// The shares for `configured` paths: canonical, existing, each once, none inside another.
pub fn effective(configured: &[String]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = configured
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(|p| p.is_dir())
        .collect();
    paths.sort();
    paths.dedup();
    let all = paths.clone();
    paths.retain(|p| !all.iter().any(|o| o != p && p.starts_with(o)));
    paths
}

/// Percent-encodes the bytes a kernel command-line word cannot carry as they are.
fn encode(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"/._-+".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The kernel command-line words that tell the guest what each tag holds.
pub fn cmdline_words(shares: &[PathBuf]) -> Vec<String> {
    shares
        .iter()
        .enumerate()
        .map(|(i, p)| format!("berth.share={}:{}", tag(i), encode(p)))
        .collect()
}

fn not_shared(path: &str, shares: &[PathBuf]) -> String {
    let list: Vec<String> = shares.iter().map(|p| p.display().to_string()).collect();
    format!(
        "invalid mount config for type \"bind\": {path} is not shared with the Berth VM; add it (or a parent) to \"shared-paths\" in settings.json (shared now: {})",
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    )
}

/// The canonical form of host path `source` when it lies in a share. `create` makes a missing
/// directory first, as dockerd does for `-v` (and refuses for `--mount`).
fn resolve(source: &str, shares: &[PathBuf], create: bool) -> Result<String, String> {
    let path = Path::new(source);
    if !path.exists() {
        // Check the nearest existing parent before making anything.
        let parent = path
            .ancestors()
            .find(|a| a.exists())
            .and_then(|a| std::fs::canonicalize(a).ok())
            .unwrap_or_default();
        if !shares.iter().any(|s| parent.starts_with(s)) {
            return Err(not_shared(source, shares));
        }
        if !create {
            return Err(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {source}"
            ));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| format!("error while creating mount source path '{source}': {e}"))?;
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("{source}: {e}"))?;
    if !shares.iter().any(|s| real.starts_with(s)) {
        return Err(not_shared(source, shares));
    }
    real.into_os_string()
        .into_string()
        .map_err(|_| format!("{source}: the path is not UTF-8"))
}

/// Checks each host path a create body binds (`HostConfig.Binds` and bind `Mounts`) against the
/// shares and rewrites it to its canonical form, which is where the guest finds it.
pub fn check_binds(body: &mut Value, shares: &[PathBuf]) -> Result<(), String> {
    let Some(hc) = body.get_mut("HostConfig") else {
        return Ok(());
    };
    if let Some(binds) = hc.get_mut("Binds").and_then(Value::as_array_mut) {
        for b in binds.iter_mut() {
            let Some(spec) = b.as_str() else { continue };
            let mut parts: Vec<String> = spec.split(':').map(str::to_owned).collect();
            if parts.len() < 2 || !parts[0].starts_with('/') {
                continue;
            }
            parts[0] = resolve(&parts[0], shares, true)?;
            *b = Value::String(parts.join(":"));
        }
    }
    if let Some(mounts) = hc.get_mut("Mounts").and_then(Value::as_array_mut) {
        for m in mounts.iter_mut() {
            if m["Type"].as_str() != Some("bind") {
                continue;
            }
            let Some(source) = m["Source"].as_str().filter(|s| s.starts_with('/')) else {
                continue;
            };
            let real = resolve(source, shares, false)?;
            m["Source"] = Value::String(real);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_missing_paths_fold_away() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        let configured = vec![
            root.join("a").display().to_string(),
            root.display().to_string(),
            root.join("missing").display().to_string(),
            format!("{}/", root.display()),
        ];
        assert_eq!(effective(&configured), vec![root.clone()]);
        let words = cmdline_words(&[PathBuf::from("/home/me/My Code")]);
        assert_eq!(words, ["berth.share=berth0:/home/me/My%20Code"]);
    }

    #[test]
    fn binds_inside_shares_are_made_canonical_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let share = std::fs::canonicalize(dir.path()).unwrap().join("share");
        std::fs::create_dir(&share).unwrap();
        std::os::unix::fs::symlink(&share, dir.path().join("link")).unwrap();
        let shares = vec![share.clone()];
        let via_link = format!("{}/link/new/dir", dir.path().display());
        let mut body = json!({"HostConfig": {
            "Binds": [format!("{via_link}:/w:ro"), "named:/v"],
            "Mounts": [{"Type": "bind", "Source": format!("{}", share.display()), "Target": "/m"}],
        }});
        check_binds(&mut body, &shares).unwrap();
        assert_eq!(
            body["HostConfig"]["Binds"][0],
            format!("{}/new/dir:/w:ro", share.display())
        );
        assert!(
            share.join("new/dir").is_dir(),
            "-v makes a missing directory"
        );
        assert_eq!(body["HostConfig"]["Binds"][1], "named:/v");

        let outside = dir.path().join("outside");
        let mut body = json!({"HostConfig": {"Binds": [format!("{}:/x", outside.display())]}});
        let err = check_binds(&mut body, &shares).unwrap_err();
        assert!(err.contains("is not shared with the Berth VM"), "{err}");
        assert!(!outside.exists(), "nothing is made outside the shares");

        let missing = share.join("nope");
        let mut body = json!({"HostConfig": {"Mounts": [
            {"Type": "bind", "Source": missing.display().to_string(), "Target": "/m"}]}});
        let err = check_binds(&mut body, &shares).unwrap_err();
        assert!(err.contains("bind source path does not exist"), "{err}");
    }
}
