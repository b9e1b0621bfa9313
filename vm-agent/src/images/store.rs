//! The image store on the data disk: content-addressed blobs (manifests, configs), one snapshot
//! directory per layer diff ID (shared by every image that has the layer) holding the unpacked
//! tree and the layer's archive as it came (the registry's compressed blob, or the tar the
//! builder wrote), so push and save send the very bytes the digests name; and an index of
//! images with their tags, written crash-safely (temporary file, fsync, rename, fsync of the
//! directory). Owns `<root>/images/`; knows nothing of registries or containers.

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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// The digest of the registry manifest it was pulled with (kept as a blob), so a push
    /// of the unchanged image sends the same manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The image it was made from locally (`docker commit`'s container's image), as dockerd
    /// shows `Parent`; empty for pulled, loaded and built images.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
}

/// A layer's archive as a registry names it: the blob beside the layer's snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerArchive {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The media type of an uncompressed layer tar.
pub const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Moves the archive file `blob` into the snapshot directory `snap` (before or after the
/// snapshot is placed) with its description.
pub fn keep_archive(snap: &Path, blob: &Path, archive: &LayerArchive) -> std::io::Result<()> {
    let json = serde_json::to_vec(archive).expect("archive serializes");
    std::fs::rename(blob, snap.join("archive"))?;
    write_atomic(&snap.join("archive.json"), &json)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, ImageRecord>,
}

pub struct ImageStore {
    root: PathBuf,
    index: Mutex<Index>,
}

/// Makes everything written so far under `dir`'s file system durable (syncfs). Called before a
/// snapshot is renamed into place: the rename is what makes a layer exist, so after a crash at
/// any moment a snapshot is either whole or absent (an unfinished one is in `tmp`, which
/// [`ImageStore::open`] clears).
pub fn sync_fs(dir: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(dir)?;
    nix::unistd::syncfs(&f)?;
    Ok(())
}

/// Renames the finished snapshot tree `from` to `to` durably: its contents first, then the
/// rename, then the directory that now names it.
pub fn place_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    let parent = to.parent().unwrap_or(Path::new("/"));
    sync_fs(parent)?;
    std::fs::rename(from, to)?;
    std::fs::File::open(parent)?.sync_all()
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

/// Whether `s` is a digest the store keeps: `sha256:` and 64 lowercase hex digits. Every
/// digest that comes from outside (a config's diff IDs, a manifest's layers, an archive) is
/// checked with this before it is used.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The file name for `digest` in the store: its hex for a well-formed digest; for anything
/// else (which callers refuse before it gets here), a name made of the digest's own hash, so
/// that no input ever names a path outside the store or another layer's entry.
fn hex_of(digest: &str) -> std::borrow::Cow<'_, str> {
    if is_digest(digest) {
        std::borrow::Cow::Borrowed(&digest[7..])
    } else {
        use sha2::Digest;
        std::borrow::Cow::Owned(format!(
            "invalid-{:x}",
            sha2::Sha256::digest(digest.as_bytes())
        ))
    }
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
        self.root.join("blobs").join(hex_of(digest).as_ref())
    }

    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.blob_path(digest), data).map_err(io(format!("writing blob {digest}")))
    }

    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.blob_path(digest)).map_err(io(format!("reading blob {digest}")))
    }

    /// The unpacked directory of the layer with `diff_id` (it may not exist yet).
    pub fn snapshot_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("snapshots").join(hex_of(diff_id).as_ref())
    }

    pub fn has_snapshot(&self, diff_id: &str) -> bool {
        self.snapshot_dir(diff_id).join("fs").is_dir()
    }

    /// The archive kept for the layer `diff_id` and its path; `None` for a layer stored
    /// before archives were kept (pulling the image again adds it).
    pub fn layer_archive(&self, diff_id: &str) -> Option<(LayerArchive, PathBuf)> {
        let snap = self.snapshot_dir(diff_id);
        let json = std::fs::read(snap.join("archive.json")).ok()?;
        let archive: LayerArchive = serde_json::from_slice(&json).ok()?;
        let path = snap.join("archive");
        path.is_file().then_some((archive, path))
    }

    /// Records an image made here (built, committed, loaded or imported) from its config
    /// document: writes the config blob, sums the layers' sizes and adds the record.
    pub fn add_config(
        &self,
        config: &[u8],
        repo_tags: Vec<String>,
    ) -> Result<ImageRecord, StoreError> {
        use sha2::Digest;
        let doc: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
        let layers: Vec<String> = doc["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let id = format!("sha256:{:x}", sha2::Sha256::digest(config));
        self.put_blob(&id, config)?;
        let size = layers
            .iter()
            .map(|d| super::pull::dir_size(&self.snapshot_dir(d).join("fs")))
            .sum();
        self.add(ImageRecord {
            id,
            repo_tags,
            layers,
            size,
            created: doc["created"].as_str().unwrap_or_default().to_owned(),
            added: crate::clock::unix_now(),
            ..Default::default()
        })
    }

    /// Adds `digest_ref` (`repo@sha256:...`) to the image `id`'s repo digests, replacing an
    /// older one of the same repository.
    pub fn add_repo_digest(&self, id: &str, digest_ref: &str) -> Result<(), StoreError> {
        let mut index = self.index.lock().unwrap();
        let repo = digest_ref.split('@').next().unwrap_or_default().to_owned();
        if let Some(img) = index.images.get_mut(id) {
            img.repo_digests
                .retain(|d| d.split('@').next() != Some(repo.as_str()));
            img.repo_digests.push(digest_ref.to_owned());
        }
        self.save(&index)
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
            if record.manifest.is_none() {
                record.manifest = old.manifest.clone();
            }
            if record.parent.is_empty() {
                record.parent = old.parent.clone();
            }
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
                .filter(|r| {
                    r.id.strip_prefix("sha256:")
                        .unwrap_or(&r.id)
                        .starts_with(hexish)
                })
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
    /// Records `parent` as image `id`'s parent.
    pub fn set_parent(&self, id: &str, parent: &str) -> Result<(), StoreError> {
        let mut index = self.index.lock().unwrap();
        let img = index
            .images
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        img.parent = parent.to_owned();
        self.save(&index)
    }

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

    /// Deletes the snapshot of `diff_id` unless an image uses it (a failed load's layers,
    /// a pruned build cache's); true when it went.
    pub fn remove_unused_snapshot(&self, diff_id: &str) -> bool {
        let index = self.index.lock().unwrap();
        !index
            .images
            .values()
            .any(|i| i.layers.iter().any(|l| l == diff_id))
            && std::fs::remove_dir_all(self.snapshot_dir(diff_id)).is_ok()
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
        if let Some(m) = &img.manifest
            && !index
                .images
                .values()
                .any(|o| o.manifest.as_ref() == Some(m))
        {
            let _ = std::fs::remove_file(self.blob_path(m));
        }
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
            manifest: None,
            parent: String::new(),
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

    #[test]
    fn digests_are_parsed_strictly_and_never_name_a_path_outside() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(is_digest(&good));
        for bad in [
            "sha256:../../etc",
            "sha256:AB",
            &format!("sha256:{}", "AB".repeat(32)),
            &format!("sha512:{}", "ab".repeat(32)),
            &format!("sha256:{}/x", "ab".repeat(32)),
            "../../../x",
            "",
        ] {
            assert!(!is_digest(bad), "{bad}");
            let name = hex_of(bad);
            assert!(
                name.starts_with("invalid-") && !name.contains('/'),
                "{bad}: {name}"
            );
        }
        assert_eq!(hex_of(&good), "ab".repeat(32));
    }
}
