//! The image store on the data disk: content-addressed blobs (manifests, configs), one unpacked
//! snapshot directory per layer diff ID (shared by every image that has the layer), and an
//! index of images with their tags, written crash-safely (temporary file, fsync, rename, fsync
//! of the directory). Owns `<root>/images/`; knows nothing of registries or containers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("corrupt image index {path}: {source}")]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// One image: its config digest is its ID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Layer diff IDs, bottom first.
    pub layers: Vec<String>,
    /// Unpacked size in bytes.
    pub size: u64,
    /// When the image was built (from its config), RFC 3339.
    pub created: String,
    /// Unix seconds when this store got it.
    pub added: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, ImageRecord>,
}

pub struct ImageStore {
    root: PathBuf,
    index: Mutex<Index>,
}

/// Writes `data` to `path` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let root = root.join("images");
        for sub in ["blobs", "snapshots", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).map_err(io(format!("creating {sub}")))?;
        }
        // Half-written downloads and unpacks from a crash are garbage.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        let path = root.join("index.json");
        let index = match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|source| StoreError::Index {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(io("reading the image index")(e)),
        };
        Ok(ImageStore {
            root,
            index: Mutex::new(index),
        })
    }

    fn save(&self, index: &Index) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(index).expect("index serializes");
        write_atomic(&self.root.join("index.json"), &data).map_err(io("writing the image index"))
    }

    /// A scratch directory for downloads and unpacks; emptied at every open.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs").join(hex_of(digest))
    }

    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.blob_path(digest), data).map_err(io(format!("writing blob {digest}")))
    }

    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.blob_path(digest)).map_err(io(format!("reading blob {digest}")))
    }

    /// The unpacked directory of the layer with `diff_id` (it may not exist yet).
    pub fn snapshot_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("snapshots").join(hex_of(diff_id))
    }

    pub fn has_snapshot(&self, diff_id: &str) -> bool {
        self.snapshot_dir(diff_id).join("fs").is_dir()
    }

    /// Records `record`, moving its tags away from any image that had them.
    pub fn add(&self, mut record: ImageRecord) -> Result<ImageRecord, StoreError> {
        let mut index = self.index.lock().unwrap();
        if let Some(old) = index.images.get(&record.id) {
            for t in &old.repo_tags {
                if !record.repo_tags.contains(t) {
                    record.repo_tags.push(t.clone());
                }
            }
            for d in &old.repo_digests {
                if !record.repo_digests.contains(d) {
                    record.repo_digests.push(d.clone());
                }
            }
            record.added = old.added;
        }
        for other in index.images.values_mut() {
            if other.id != record.id {
                other.repo_tags.retain(|t| !record.repo_tags.contains(t));
            }
        }
        index.images.insert(record.id.clone(), record.clone());
        self.save(&index)?;
        Ok(record)
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let index = self.index.lock().unwrap();
        let mut all: Vec<ImageRecord> = index.images.values().cloned().collect();
        all.sort_by(|a, b| b.added.cmp(&a.added).then(a.id.cmp(&b.id)));
        all
    }

    /// Finds an image by ID (`sha256:...`, full hex or a unique prefix of at least 4), by
    /// tag (`busybox` means `busybox:latest`), or by digest reference.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let index = self.index.lock().unwrap();
        let hexish = name.strip_prefix("sha256:").unwrap_or(name);
        if hexish.len() >= 4 && hexish.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&ImageRecord> = index
                .images
                .values()
                .filter(|r| hex_of(&r.id).starts_with(hexish))
                .collect();
            if matches.len() == 1 {
                return Ok(matches[0].clone());
            }
        }
        if let Ok(r) = super::reference::parse(name) {
            let tag = super::reference::familiar_tag(&r);
            let digest = r.digest().map(|d| super::reference::familiar_digest(&r, d));
            let found = index.images.values().find(|img| {
                digest.as_ref().map_or_else(
                    || tag.as_ref().is_some_and(|t| img.repo_tags.contains(t)),
                    |d| img.repo_digests.contains(d),
                )
            });
            if let Some(img) = found {
                return Ok(img.clone());
            }
        }
        Err(StoreError::NotFound(name.to_owned()))
    }

    /// Adds `tag` (already familiar form) to the image `name` resolves to.
    pub fn tag(&self, name: &str, tag: &str) -> Result<(), StoreError> {
        let id = self.resolve(name)?.id;
        let mut index = self.index.lock().unwrap();
        for img in index.images.values_mut() {
            img.repo_tags.retain(|t| t != tag);
        }
        if let Some(img) = index.images.get_mut(&id) {
            img.repo_tags.push(tag.to_owned());
        }
        self.save(&index)
    }

    /// Removes one tag; returns true when it was the image's last name (the caller may then
    /// delete the image).
    pub fn untag(&self, id: &str, tag: &str) -> Result<bool, StoreError> {
        let mut index = self.index.lock().unwrap();
        let img = index
            .images
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        img.repo_tags.retain(|t| t != tag);
        let last = img.repo_tags.is_empty();
        self.save(&index)?;
        Ok(last)
    }

    /// Deletes the image record and every snapshot and blob no other image uses. Returns the
    /// deleted layer diff IDs.
    pub fn delete(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut index = self.index.lock().unwrap();
        let img = index
            .images
            .remove(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        self.save(&index)?;
        let mut deleted = Vec::new();
        for layer in &img.layers {
            let used = index.images.values().any(|o| o.layers.contains(layer));
            if !used {
                let _ = std::fs::remove_dir_all(self.snapshot_dir(layer));
                deleted.push(layer.clone());
            }
        }
        let _ = std::fs::remove_file(self.blob_path(&img.id));
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tags: &[&str], layers: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            layers: layers.iter().map(|s| s.to_string()).collect(),
            size: 1,
            created: String::new(),
            added: 0,
        }
    }

    #[test]
    fn tags_move_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        store
            .add(record(
                "sha256:aaaa1111",
                &["busybox:latest"],
                &["sha256:l1"],
            ))
            .unwrap();
        store
            .add(record(
                "sha256:bbbb2222",
                &["busybox:latest"],
                &["sha256:l1", "sha256:l2"],
            ))
            .unwrap();
        assert!(store.resolve("busybox").unwrap().id.ends_with("bbbb2222"));
        assert!(store.resolve("aaaa").unwrap().repo_tags.is_empty());
        drop(store);
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.list().len(), 2);
        assert!(store.resolve("docker.io/library/busybox:latest").is_ok());
        assert!(matches!(
            store.resolve("nope"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn delete_keeps_shared_layers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        for l in ["sha256:l1", "sha256:l2"] {
            std::fs::create_dir_all(store.snapshot_dir(l).join("fs")).unwrap();
        }
        store
            .add(record("sha256:a1", &["a:1"], &["sha256:l1"]))
            .unwrap();
        store
            .add(record("sha256:b2", &["b:1"], &["sha256:l1", "sha256:l2"]))
            .unwrap();
        let deleted = store.delete("sha256:b2").unwrap();
        assert_eq!(deleted, vec!["sha256:l2".to_string()]);
        assert!(store.has_snapshot("sha256:l1"));
        assert!(!store.has_snapshot("sha256:l2"));
    }
}
