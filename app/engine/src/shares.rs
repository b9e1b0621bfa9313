//! Host directories shared with the VM over virtio-fs: which ones (the `shared-paths` setting,
//! made canonical, nested ones folded into their parent), how the guest learns them (one
//! `berth.share=<tag>:<path>` word each on the kernel command line; the guest mounts tag `<tag>`
//! at `/mnt/host<path>`), what is never reachable through one ([`hidden`]: Berth's own state
//! and the docker CLI's configuration), and the check that a container's bind mounts stay
//! inside them.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};

use crate::paths::Paths;

use serde_json::Value;

/// The virtio-fs tag of share `i`.
pub fn tag(i: usize) -> String {
    format!("berth{i}")
}

/// The host directories no share may expose, canonical: the Berth home and runtime directory
/// (settings, sockets, the data disk) and the docker CLI's configuration directory
/// (`$DOCKER_CONFIG`, else `~/.docker`; made, 0700, when missing, so that the guest cannot
/// make it: a `config.json` there chooses programs the docker CLI runs on the host).
pub fn hidden(paths: &Paths) -> Vec<PathBuf> {
    let docker_config = std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
    if let Some(dir) = &docker_config
        && !dir.exists()
        && dir.parent().is_some_and(Path::is_dir)
    {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    }
    let mut out: Vec<PathBuf> = [
        Some(paths.home.clone()),
        Some(paths.run_dir.clone()),
        docker_config,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect();
    out.sort();
    out.dedup();
    out
}

/// The shares for `configured` paths: canonical, existing, each once, none inside another, and
/// none inside a `hidden` path (such a share is left out, with a warning).
pub fn effective(configured: &[String], hidden: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = configured
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(|p| p.is_dir())
        .filter(|p| {
            let inside = hidden.iter().any(|h| p.starts_with(h));
            if inside {
                tracing::warn!(
                    "not sharing {}: it holds Berth's own state or the docker CLI's configuration",
                    p.display()
                );
            }
            !inside
        })
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

fn hidden_error(source: &str) -> String {
    format!(
        "invalid mount config for type \"bind\": {source} holds Berth's own state or the docker CLI's configuration, which are never shared with containers"
    )
}

/// `path` made lexical: `.` and `..` components folded, as dockerd cleans a bind source.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Makes directories `rest` below the existing directory `base` (canonical, in a share), each
/// one opened without following links, so that a link the guest plants meanwhile cannot
/// steer the creation out of the share.
fn create_below(base: &Path, rest: &Path) -> std::io::Result<()> {
    let mut dir: OwnedFd = open(
        base,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for c in rest.components() {
        let Component::Normal(name) = c else { continue };
        match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = openat(
            dir.as_fd(),
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(())
}

/// The canonical form of host path `source` when it lies in a share and outside every `hidden`
/// path. `create` makes a missing directory, as dockerd does for `-v` (and refuses for
/// `--mount`), only once the path is known to lie in a share.
fn resolve(
    source: &str,
    shares: &[PathBuf],
    hidden: &[PathBuf],
    create: bool,
) -> Result<String, String> {
    let path = clean(Path::new(source));
    let allowed = |real: &Path| -> Result<(), String> {
        if hidden.iter().any(|h| real.starts_with(h)) {
            return Err(hidden_error(source));
        }
        if !shares.iter().any(|s| real.starts_with(s)) {
            return Err(not_shared(source, shares));
        }
        Ok(())
    };
    let real = match std::fs::canonicalize(&path) {
        Ok(real) => real,
        Err(_) => {
            // Check the nearest existing parent before making anything.
            let (base, real_base) = path
                .ancestors()
                .find_map(|a| std::fs::canonicalize(a).ok().map(|r| (a.to_path_buf(), r)))
                .unwrap_or_default();
            allowed(&real_base)?;
            if !create {
                return Err(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                ));
            }
            let rest = path.strip_prefix(&base).unwrap_or(Path::new(""));
            create_below(&real_base, rest)
                .map_err(|e| format!("error while creating mount source path '{source}': {e}"))?;
            real_base.join(rest)
        }
    };
    allowed(&real)?;
    real.into_os_string()
        .into_string()
        .map_err(|_| format!("{source}: the path is not UTF-8"))
}

/// Checks each host path a create body binds (`HostConfig.Binds` and bind `Mounts`) against the
/// shares and rewrites it to its canonical form, which is where the guest finds it.
pub fn check_binds(body: &mut Value, shares: &[PathBuf], hidden: &[PathBuf]) -> Result<(), String> {
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
            parts[0] = resolve(&parts[0], shares, hidden, true)?;
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
            let real = resolve(source, shares, hidden, false)?;
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
        assert_eq!(effective(&configured, &[]), vec![root.clone()]);
        assert!(effective(&configured, std::slice::from_ref(&root)).is_empty());
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
        check_binds(&mut body, &shares, &[]).unwrap();
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
        let err = check_binds(&mut body, &shares, &[]).unwrap_err();
        assert!(err.contains("is not shared with the Berth VM"), "{err}");
        assert!(!outside.exists(), "nothing is made outside the shares");

        let missing = share.join("nope");
        let mut body = json!({"HostConfig": {"Mounts": [
            {"Type": "bind", "Source": missing.display().to_string(), "Target": "/m"}]}});
        let err = check_binds(&mut body, &shares, &[]).unwrap_err();
        assert!(err.contains("bind source path does not exist"), "{err}");
    }

    /// `-v share/new/../../../outside/x` must make nothing outside the shares.
    #[test]
    fn climbing_out_makes_nothing_and_hidden_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let share = base.join("share");
        let state = share.join(".local/berth");
        std::fs::create_dir_all(&state).unwrap();
        let shares = vec![share.clone()];
        let hidden = vec![state.clone()];
        let climb = format!("{}/new/../../srv/x", share.display());
        let mut body = json!({"HostConfig": {"Binds": [format!("{climb}:/x")]}});
        let err = check_binds(&mut body, &shares, &hidden).unwrap_err();
        assert!(err.contains("is not shared with the Berth VM"), "{err}");
        assert!(!base.join("srv").exists(), "nothing made outside the share");
        assert!(
            !share.join("new").exists(),
            "nothing made on the way either"
        );
        for source in [
            state.display().to_string(),
            format!("{}/sub/new", state.display()),
            format!("{}/x/../.local/berth", share.display()),
        ] {
            let mut body = json!({"HostConfig": {"Binds": [format!("{source}:/x")]}});
            let err = check_binds(&mut body, &shares, &hidden).unwrap_err();
            assert!(err.contains("Berth's own state"), "{source}: {err}");
        }
        assert!(!state.join("sub").exists());
        // A link planted in the share cannot steer a new directory out of it.
        std::os::unix::fs::symlink(&base, share.join("planted")).unwrap();
        let mut body =
            json!({"HostConfig": {"Binds": [format!("{}/planted/y:/x", share.display())]}});
        assert!(check_binds(&mut body, &shares, &hidden).is_err());
        assert!(!base.join("y").exists());
        // The share itself may be bound; the hidden state inside it is covered in the VM.
        let mut body = json!({"HostConfig": {"Binds": [format!("{}:/x", share.display())]}});
        check_binds(&mut body, &shares, &hidden).unwrap();
    }
}
