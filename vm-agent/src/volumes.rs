//! Named volumes on the data disk, as dockerd's `local` driver keeps them: each volume is a
//! directory `volumes/<name>/` holding `_data` (what containers see) and `volume.json` (its
//! driver options, labels and creation time). A volume with driver options (`type`, `device`,
//! `o`, as `mount(8)` takes them: a tmpfs, or a bind of another guest path) is mounted on its
//! `_data` when a container first needs it and unmounted when the volume is removed.
//!
//! This module owns the volumes themselves; which containers use them is the containers'
//! business (`containers::volumes`), and callers pass that in where a verb depends on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::images::store::write_atomic;

/// The label dockerd puts on volumes made for a container's anonymous mounts.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The driver options dockerd's local driver accepts.
const VALID_OPTS: &[&str] = &["type", "device", "o", "size"];

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

type Result<T> = std::result::Result<T, VolumeError>;

fn failed(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> VolumeError {
    let what = what.to_string();
    move |e| VolumeError::Failed(format!("{what}: {e}"))
}

/// What `volume.json` keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VolumeMeta {
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl VolumeMeta {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// dockerd's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Checks driver options as dockerd's local driver does: only `type`, `device`, `o` (and
/// `size`, which needs a quota-capable filesystem and is refused here); `type` and `device`
/// come together.
pub fn check_options(opts: &BTreeMap<String, String>) -> Result<()> {
    if let Some(bad) = opts.keys().find(|k| !VALID_OPTS.contains(&k.as_str())) {
        return Err(VolumeError::Invalid(format!("invalid option: {bad:?}")));
    }
    if opts.contains_key("size") {
        return Err(VolumeError::Invalid(
            "quota size requested but no quota support".into(),
        ));
    }
    let has = |k: &str| opts.get(k).is_some_and(|v| !v.is_empty());
    if has("o") && !has("type") && !has("device") {
        return Err(VolumeError::Invalid(
            "missing required option: \"type\" and \"device\"".into(),
        ));
    }
    if has("type") != has("device") {
        let missing = if has("type") { "device" } else { "type" };
        return Err(VolumeError::Invalid(format!(
            "missing required option: {missing:?}"
        )));
    }
    Ok(())
}

/// Splits an `o=` option list into mount flags and the filesystem's own data string.
fn mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "bind" => flags |= F::MS_BIND,
            "rbind" => flags |= F::MS_BIND | F::MS_REC,
            "ro" => flags |= F::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= F::MS_NOSUID,
            "nodev" => flags |= F::MS_NODEV,
            "noexec" => flags |= F::MS_NOEXEC,
            "noatime" => flags |= F::MS_NOATIME,
            "sync" => flags |= F::MS_SYNCHRONOUS,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

static VOLUMES: std::sync::OnceLock<VolumeStore> = std::sync::OnceLock::new();

/// The agent's volume store, once [`init`] has opened it.
pub fn get() -> Option<&'static VolumeStore> {
    VOLUMES.get()
}

/// Opens the volume store on the data disk for the agent's lifetime.
pub fn init(data_root: &Path) -> Result<&'static VolumeStore> {
    if let Some(v) = VOLUMES.get() {
        return Ok(v);
    }
    let store = VolumeStore::open(data_root)?;
    Ok(VOLUMES.get_or_init(|| store))
}

pub struct VolumeStore {
    root: PathBuf,
    /// Serializes create and remove, so two containers asking for one new volume get one.
    lock: std::sync::Mutex<()>,
}

impl VolumeStore {
    pub fn open(data_root: &Path) -> Result<Self> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root).map_err(failed("creating the volume store"))?;
        Ok(VolumeStore {
            root,
            lock: Default::default(),
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where containers see the volume's files.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("volume.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn get(&self, name: &str) -> Result<VolumeMeta> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let data = std::fs::read(self.dir(name).join("volume.json"))
            .map_err(|_| VolumeError::NotFound(name.to_owned()))?;
        serde_json::from_slice(&data)
            .map_err(|e| VolumeError::Failed(format!("volume {name}: {e}")))
    }

    /// Creates volume `name` (a random name when empty), or returns the one of that name, as
    /// dockerd does. Nothing is written for a refused request.
    pub fn create(
        &self,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeMeta> {
        if !matches!(driver, "" | "local") {
            return Err(VolumeError::Invalid(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let name = if name.is_empty() {
            crate::containers::random_hex(32)
        } else {
            name.to_owned()
        };
        if !valid_name(&name) {
            return Err(VolumeError::Invalid(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        check_options(&options)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(existing) = self.get(&name) {
            return Ok(existing);
        }
        let meta = VolumeMeta {
            name: name.clone(),
            created_at: crate::clock::now(),
            labels,
            options,
        };
        let dir = self.dir(&name);
        std::fs::create_dir_all(dir.join("_data")).map_err(failed("creating the volume"))?;
        let data = serde_json::to_vec_pretty(&meta).expect("volume meta serializes");
        write_atomic(&dir.join("volume.json"), &data).map_err(failed("writing the volume"))?;
        crate::events::emit(
            "volume",
            "create",
            &name,
            BTreeMap::from([("driver".to_owned(), "local".to_owned())]),
        );
        Ok(meta)
    }

    fn is_mounted(&self, name: &str) -> bool {
        let target = self.mountpoint(name);
        let target = target.to_string_lossy();
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&*target))
    }

    /// Makes the volume ready for a container: mounts its device when it has driver options.
    pub fn prepare(&self, name: &str) -> Result<PathBuf> {
        let meta = self.get(name)?;
        let data = self.mountpoint(name);
        let (Some(kind), Some(device)) = (meta.options.get("type"), meta.options.get("device"))
        else {
            return Ok(data);
        };
        if self.is_mounted(name) {
            return Ok(data);
        }
        let (flags, opts) = mount_flags(meta.options.get("o").map_or("", String::as_str));
        let fstype = (kind != "none").then_some(kind.as_str());
        nix::mount::mount(
            Some(device.as_str()),
            &data,
            fstype,
            flags,
            (!opts.is_empty()).then_some(opts.as_str()),
        )
        .map_err(|e| {
            VolumeError::Failed(format!(
                "error while mounting volume '{}': failed to mount local volume: mount {device}:{}, flags: {flags:?}, data: {opts}: {e}",
                name,
                data.display()
            ))
        })?;
        Ok(data)
    }

    /// Removes a volume; `users` are the containers that reference it (a volume in use is
    /// kept, as dockerd keeps it, even with force).
    pub fn remove(&self, name: &str, users: &[String]) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.get(name)?;
        if !users.is_empty() {
            return Err(VolumeError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        if self.is_mounted(name) {
            nix::mount::umount2(&self.mountpoint(name), nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| VolumeError::Failed(format!("unmounting volume {name}: {e}")))?;
        }
        // The record goes first: a crash part way leaves a directory no listing shows.
        let dir = self.dir(name);
        std::fs::remove_file(dir.join("volume.json")).map_err(failed("removing the volume"))?;
        std::fs::remove_dir_all(&dir).map_err(failed("removing the volume's data"))?;
        crate::events::emit(
            "volume",
            "destroy",
            name,
            BTreeMap::from([("driver".to_owned(), "local".to_owned())]),
        );
        Ok(())
    }

    /// The bytes the volume's files take, as `du` counts them (each inode once).
    pub fn size(&self, name: &str) -> i64 {
        let mut seen = std::collections::HashSet::new();
        disk_usage(&self.mountpoint(name), &mut seen) as i64
    }

    /// dockerd's volume document; `ref_count` adds `UsageData` (size only when `with_size`).
    pub fn json(
        &self,
        meta: &VolumeMeta,
        ref_count: Option<usize>,
        with_size: bool,
    ) -> serde_json::Value {
        let mut v = serde_json::json!({
            "CreatedAt": meta.created_at,
            "Driver": "local",
            "Labels": meta.labels,
            "Mountpoint": self.mountpoint(&meta.name),
            "Name": meta.name,
            "Options": meta.options,
            "Scope": "local",
        });
        if let Some(n) = ref_count {
            let size = if with_size { self.size(&meta.name) } else { -1 };
            v["UsageData"] = serde_json::json!({ "RefCount": n, "Size": size });
        }
        v
    }
}

fn disk_usage(path: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = 0;
    if seen.insert((md.dev(), md.ino())) {
        total += md.blocks() * 512;
    }
    if md.is_dir()
        && let Ok(rd) = std::fs::read_dir(path)
    {
        for e in rd.flatten() {
            total += disk_usage(&e.path(), seen);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_options_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        for bad in ["a", "-x", "has space", "../up", "a/b"] {
            let e = store
                .create(bad, "local", Default::default(), Default::default())
                .unwrap_err();
            assert!(matches!(e, VolumeError::Invalid(_)), "{bad}: {e}");
        }
        let e = store
            .create("v1", "local", Default::default(), opts(&[("bogus", "1")]))
            .unwrap_err();
        assert_eq!(e.to_string(), "invalid option: \"bogus\"");
        let e = store
            .create(
                "v1",
                "local",
                Default::default(),
                opts(&[("type", "tmpfs")]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"device\""), "{e}");
        let e = store
            .create("v1", "nfs-plugin", Default::default(), Default::default())
            .unwrap_err();
        assert!(
            e.to_string().contains("plugin \"nfs-plugin\" not found"),
            "{e}"
        );
        assert!(store.names().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("volumes"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn create_is_idempotent_and_remove_refuses_volumes_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        let labels = opts(&[("team", "web")]);
        let v = store
            .create("data", "", labels.clone(), Default::default())
            .unwrap();
        assert_eq!(v.labels, labels);
        std::fs::write(store.mountpoint("data").join("f"), b"kept").unwrap();
        let again = store
            .create("data", "local", Default::default(), Default::default())
            .unwrap();
        assert_eq!(again, v, "a second create returns the volume as it is");
        assert_eq!(
            std::fs::read(store.mountpoint("data").join("f")).unwrap(),
            b"kept"
        );
        let random = store
            .create("", "local", Default::default(), Default::default())
            .unwrap();
        assert_eq!(random.name.len(), 64);
        assert_eq!(store.names().len(), 2);

        let e = store.remove("data", &["abc123".into()]).unwrap_err();
        assert_eq!(e.to_string(), "remove data: volume is in use - [abc123]");
        assert!(store.mountpoint("data").join("f").exists());
        store.remove("data", &[]).unwrap();
        assert!(matches!(store.get("data"), Err(VolumeError::NotFound(_))));
        assert!(!dir.path().join("volumes/data").exists());
        assert!(matches!(
            store.remove("data", &[]),
            Err(VolumeError::NotFound(_))
        ));
    }

    #[test]
    fn json_has_dockerds_fields_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        let meta = store
            .create("web", "local", Default::default(), Default::default())
            .unwrap();
        std::fs::write(store.mountpoint("web").join("f"), vec![7u8; 10_000]).unwrap();
        let v = store.json(&meta, Some(2), true);
        assert_eq!(v["Driver"], "local");
        assert_eq!(v["Scope"], "local");
        assert_eq!(v["Name"], "web");
        assert!(
            v["Mountpoint"]
                .as_str()
                .unwrap()
                .ends_with("volumes/web/_data")
        );
        assert_eq!(v["UsageData"]["RefCount"], 2);
        assert!(v["UsageData"]["Size"].as_i64().unwrap() >= 10_000);
        assert!(store.json(&meta, None, false).get("UsageData").is_none());
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        use nix::mount::MsFlags as F;
        let (flags, data) = mount_flags("size=64m,uid=1000,ro,nosuid");
        assert_eq!(flags, F::MS_RDONLY | F::MS_NOSUID);
        assert_eq!(data, "size=64m,uid=1000");
        let (flags, data) = mount_flags("bind");
        assert_eq!((flags, data.as_str()), (F::MS_BIND, ""));
    }
}
