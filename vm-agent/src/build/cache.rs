//! The build cache's upkeep, and the other cache: `cachefrom` images, whose history a build
//! takes over step by step as dockerd's classic builder does ([`from_sources`]). The steps
//! remembered in `<data>/build-cache/<key>.json` (each
//! names the layers of the image so far) as `docker system df` lists them, and `docker builder
//! prune`, which forgets them and deletes the layers only they kept (a stage's layers that
//! reached no image). Builds hold [`BUILDS`] for reading while they run; a prune takes it for
//! writing, so it never deletes a layer a build is about to use.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde_json::{Value, json};

use crate::images::store::ImageStore;

/// Held shared by each running build, exclusively by a prune.
pub static BUILDS: RwLock<()> = RwLock::new(());

/// One remembered step.
struct Entry {
    key: String,
    path: PathBuf,
    /// The step's own layer: the top one.
    top: Option<String>,
    modified: std::time::SystemTime,
}

fn entries(data_root: &Path) -> Vec<Entry> {
    let Ok(dir) = std::fs::read_dir(data_root.join("build-cache")) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = dir
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let key = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .to_owned();
            let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            let top = v["layers"]
                .as_array()
                .and_then(|l| l.last())
                .and_then(Value::as_str)
                .map(str::to_owned);
            let modified = e.metadata().ok()?.modified().ok()?;
            Some(Entry {
                key,
                path,
                top,
                modified,
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Every layer some image uses.
fn image_layers(store: &ImageStore) -> std::collections::HashSet<String> {
    store.list().into_iter().flat_map(|i| i.layers).collect()
}

/// Bytes of a layer's snapshot: its tree and its archive.
fn layer_bytes(store: &ImageStore, layer: &str) -> u64 {
    let snap = store.snapshot_dir(layer);
    crate::images::pull::dir_size(&snap.join("fs"))
        + std::fs::metadata(snap.join("archive")).map_or(0, |m| m.len())
}

/// The cache as Docker's `BuildCache` records; a step's size is its own layer's when no image
/// shares it.
pub fn list(store: &ImageStore, data_root: &Path) -> Vec<Value> {
    let used = image_layers(store);
    entries(data_root)
        .into_iter()
        .map(|e| {
            let shared = e.top.as_ref().is_some_and(|l| used.contains(l));
            let size = match &e.top {
                Some(l) if !shared && store.has_snapshot(l) => layer_bytes(store, l),
                _ => 0,
            };
            json!({
                "ID": e.key.chars().take(25).collect::<String>(),
                "Type": "regular",
                "Description": "classic builder step",
                "InUse": false,
                "Shared": shared,
                "Size": size,
                "CreatedAt": crate::clock::format(e.modified),
                "LastUsedAt": crate::clock::format(e.modified),
                "UsageCount": 1,
            })
        })
        .collect()
}

/// Forgets every remembered step and deletes the layers no image uses that only the cache
/// kept. Returns the forgotten keys and the bytes freed.
pub fn prune(store: &ImageStore, data_root: &Path) -> (Vec<String>, u64) {
    let _exclusive = BUILDS.write().unwrap_or_else(|e| e.into_inner());
    let mut deleted = Vec::new();
    let mut layers: Vec<String> = Vec::new();
    for e in entries(data_root) {
        let v: Value = std::fs::read(&e.path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        for l in v["layers"].as_array().into_iter().flatten() {
            if let Some(l) = l.as_str()
                && !layers.iter().any(|x| x == l)
            {
                layers.push(l.to_owned());
            }
        }
        if std::fs::remove_file(&e.path).is_ok() {
            deleted.push(e.key.chars().take(25).collect());
        }
    }
    let mut freed = 0;
    let used = image_layers(store);
    for l in layers {
        if store.has_snapshot(&l) && !used.contains(&l) {
            let bytes = layer_bytes(store, &l);
            if store.remove_unused_snapshot(&l) {
                freed += bytes;
            }
        }
    }
    (deleted, freed)
}

/// A `cachefrom` image: its history and layers.
pub struct Source {
    history: Vec<Value>,
    layers: Vec<String>,
}

/// The `cachefrom` images that are here; one that is not is skipped with a warning in the
/// build's output (dockerd logs it and goes on).
pub fn sources(store: &ImageStore, names: &[String], out: &dyn Fn(Value)) -> Vec<Source> {
    names
        .iter()
        .filter_map(|name| {
            let found = store.resolve(name).ok().and_then(|img| {
                let doc: Value = serde_json::from_slice(&store.blob(&img.id).ok()?).ok()?;
                Some(Source {
                    history: doc["history"].as_array().cloned().unwrap_or_default(),
                    layers: img.layers,
                })
            });
            if found.is_none() {
                out(json!({
                    "stream": format!("Could not look up {name} for cache resolution, skipping\n")
                }));
            }
            found
        })
        .collect()
}

/// The step after an image with `history` and `layers` that a source recorded as
/// `created_by`: the history through that step and the layers under it. As dockerd matches
/// (`isValidParent`, `isValidConfig`): the source starts with exactly this history and these
/// layers, and its next entry was made by the same instruction.
pub fn from_sources(
    sources: &[Source],
    history: &[Value],
    layers: &[String],
    created_by: &str,
) -> Option<(Vec<Value>, Vec<String>)> {
    sources.iter().find_map(|src| {
        let next = src.history.get(history.len())?;
        if !src.history.starts_with(history)
            || !src.layers.starts_with(layers)
            || next["created_by"].as_str() != Some(created_by)
        {
            return None;
        }
        let mut layers = layers.to_vec();
        if !next["empty_layer"].as_bool().unwrap_or(false) {
            layers.push(src.layers.get(layers.len())?.clone());
        }
        Some((src.history[..=history.len()].to_vec(), layers))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::store::ImageRecord;

    #[test]
    fn a_cachefrom_image_continues_a_build_only_where_its_history_matches() {
        let h =
            |by: &str, empty: bool| json!({"created": "t", "created_by": by, "empty_layer": empty});
        let src = Source {
            history: vec![h("base", false), h("ENV", true), h("RUN a", false)],
            layers: vec!["l0".into(), "l1".into()],
        };
        let base = ([h("base", false)], ["l0".to_owned()]);
        let sources = [src];
        let (hist, layers) = from_sources(&sources, &base.0, &base.1, "ENV").unwrap();
        assert_eq!((hist.len(), layers.len()), (2, 1));
        let (hist, layers) = from_sources(&sources, &hist, &layers, "RUN a").unwrap();
        assert_eq!(hist.len(), 3);
        assert_eq!(layers, ["l0", "l1"]);
        // Another instruction, another base, or the end of the source: no hit.
        assert!(from_sources(&sources, &base.0, &base.1, "ENV B").is_none());
        assert!(from_sources(&sources, &[h("other", false)], &base.1, "ENV").is_none());
        assert!(from_sources(&sources, &hist, &layers, "RUN b").is_none());
    }

    #[test]
    fn prune_keeps_layers_images_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        for l in ["sha256:base", "sha256:stage"] {
            let fs = store.snapshot_dir(l).join("fs");
            std::fs::create_dir_all(&fs).unwrap();
            std::fs::write(fs.join("f"), b"12345").unwrap();
        }
        store
            .add(ImageRecord {
                id: "sha256:img".into(),
                layers: vec!["sha256:base".into()],
                ..Default::default()
            })
            .unwrap();
        let cache = dir.path().join("build-cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("k1.json"), br#"{"layers":["sha256:base"]}"#).unwrap();
        std::fs::write(
            cache.join("k2.json"),
            br#"{"layers":["sha256:base","sha256:stage"]}"#,
        )
        .unwrap();
        let listed = list(&store, dir.path());
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["Shared"], true);
        assert_eq!(listed[1]["Size"], 5);
        let (gone, freed) = prune(&store, dir.path());
        assert_eq!(gone, ["k1", "k2"]);
        assert_eq!(freed, 5);
        assert!(store.has_snapshot("sha256:base"));
        assert!(!store.has_snapshot("sha256:stage"));
        assert!(list(&store, dir.path()).is_empty());
    }
}
