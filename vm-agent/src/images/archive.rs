//! Image archives. `docker save` writes images as one tar that is both a docker-archive
//! (`manifest.json`) and an OCI image layout (`index.json`, `blobs/sha256/`), as dockerd 25+
//! does. `docker load` reads either form, plain or compressed, legacy symlinked layers
//! included. `docker import` makes a one-layer image from a root filesystem tar. Archive paths
//! are checked before anything is read from them (one that leads outside the archive refuses
//! the whole load), layers unpack through the safe unpacker, and every layer is checked
//! against its diff ID before any image is recorded; a failed load leaves no layer behind.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::pull::{HashingReader, decompressor, unique, unpack_into_snapshot};
use super::push::{archives, oci_manifest};
use super::reference;
use super::store::{ImageRecord, ImageStore, LayerArchive, TAR_LAYER};

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<(), String> {
    let mut h = file_header(data.len() as u64, 0o644);
    b.append_data(&mut h, path, data)
        .map_err(|e| format!("writing {path}: {e}"))
}

/// The uncompressed tar of a layer: its archive when that is a tar, else a decompressed
/// copy in the store's scratch directory (checked against the diff ID). Returns the path and
/// whether it is a scratch copy.
fn layer_tar(
    store: &ImageStore,
    diff_id: &str,
    archive: &LayerArchive,
    path: &Path,
) -> Result<(PathBuf, bool), String> {
    if archive.media_type == TAR_LAYER
        || archive.media_type == "application/vnd.docker.image.rootfs.diff.tar"
    {
        return Ok((path.to_owned(), false));
    }
    let tmp = store.tmp_dir().join(unique("save", hex(diff_id)));
    let result = (|| {
        let mut reader = HashingReader {
            inner: decompressor(path).map_err(|e| e.to_string())?,
            hasher: Sha256::new(),
        };
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).map_err(|e| format!("decompressing a layer: {e}"))?,
        );
        std::io::copy(&mut reader, &mut out).map_err(|e| format!("decompressing a layer: {e}"))?;
        out.flush().map_err(|e| e.to_string())?;
        let actual = format!("sha256:{:x}", reader.hasher.finalize());
        if actual != diff_id {
            return Err(format!(
                "layer {diff_id} is damaged on disk: its archive unpacks to {actual}"
            ));
        }
        Ok((tmp.clone(), true))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// One image to save, the names it goes under, and its layers' archives (bottom first).
pub struct Saved {
    img: ImageRecord,
    tags: Vec<String>,
    layers: Vec<(LayerArchive, PathBuf)>,
}

/// Why images cannot be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    NotFound(#[from] super::store::StoreError),
    #[error("{0}")]
    NoArchive(#[from] super::pull::PullError),
}

/// Resolves `names` (tags, IDs, digests) to the images to save, before anything is written:
/// an error when one is missing or has a layer without an archive.
pub fn to_save(store: &ImageStore, names: &[String]) -> Result<Vec<Saved>, SaveError> {
    let mut out: Vec<Saved> = Vec::new();
    for name in names {
        let img = store.resolve(name)?;
        let layers = archives(store, &img, name)?;
        let tag = reference::parse(name)
            .ok()
            .and_then(|r| reference::familiar_tag(&r))
            .filter(|t| img.repo_tags.contains(t));
        match out.iter_mut().find(|s| s.img.id == img.id) {
            Some(s) => s.tags.extend(tag.filter(|t| !s.tags.contains(t))),
            None => out.push(Saved {
                img,
                tags: tag.into_iter().collect(),
                layers,
            }),
        }
    }
    Ok(out)
}

/// Writes the images [`to_save`] chose as one tar to `out`.
pub fn save<W: Write>(store: &ImageStore, saved: &[Saved], out: W) -> Result<(), String> {
    let mut b = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, dir, std::io::empty())
            .map_err(|e| format!("writing {dir}: {e}"))?;
    }
    let mut written: HashMap<String, u64> = HashMap::new();
    let mut manifest_json = Vec::new();
    let mut index = Vec::new();
    for s in saved {
        let mut layers = Vec::new();
        for (d, (archive, path)) in s.img.layers.iter().zip(&s.layers) {
            let size = match written.get(d) {
                Some(size) => *size,
                None => {
                    let (tar_path, scratch) = layer_tar(store, d, archive, path)?;
                    let result = (|| {
                        let f = std::fs::File::open(&tar_path).map_err(|e| e.to_string())?;
                        let size = f.metadata().map_err(|e| e.to_string())?.len();
                        let mut h = file_header(size, 0o644);
                        b.append_data(&mut h, format!("blobs/sha256/{}", hex(d)), f)
                            .map_err(|e| format!("writing layer {d}: {e}"))?;
                        Ok::<u64, String>(size)
                    })();
                    if scratch {
                        let _ = std::fs::remove_file(&tar_path);
                    }
                    result?
                }
            };
            written.insert(d.clone(), size);
            layers.push(LayerArchive {
                media_type: TAR_LAYER.into(),
                digest: d.clone(),
                size,
            });
        }
        let config = store.blob(&s.img.id).map_err(|e| e.to_string())?;
        if !written.contains_key(&s.img.id) {
            append_bytes(&mut b, &format!("blobs/sha256/{}", hex(&s.img.id)), &config)?;
            written.insert(s.img.id.clone(), config.len() as u64);
        }
        let manifest = oci_manifest(&s.img.id, config.len(), &layers);
        let manifest_digest = format!("sha256:{:x}", Sha256::digest(&manifest));
        if !written.contains_key(&manifest_digest) {
            append_bytes(
                &mut b,
                &format!("blobs/sha256/{}", hex(&manifest_digest)),
                &manifest,
            )?;
            written.insert(manifest_digest.clone(), manifest.len() as u64);
        }
        let descriptor = json!({
            "mediaType": super::push::OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
        });
        if s.tags.is_empty() {
            index.push(descriptor.clone());
        }
        for t in &s.tags {
            let mut d = descriptor.clone();
            let full = reference::parse(t).map(|r| r.whole()).unwrap_or(t.clone());
            let short_tag = t.rsplit_once(':').map_or("latest", |(_, t)| t);
            d["annotations"] = json!({
                "io.containerd.image.name": full,
                "org.opencontainers.image.ref.name": short_tag,
            });
            index.push(d);
        }
        manifest_json.push(json!({
            "Config": format!("blobs/sha256/{}", hex(&s.img.id)),
            "RepoTags": s.tags,
            "Layers": s.img.layers.iter().map(|d| format!("blobs/sha256/{}", hex(d))).collect::<Vec<_>>(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    });
    append_bytes(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )?;
    append_bytes(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest_json).expect("json"),
    )?;
    append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| format!("writing the archive: {e}"))
}

/// `path` inside an archive, made plain (`a/./b` is `a/b`); an error when it leads outside.
fn archive_path(path: &Path) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir if !parts.is_empty() => {
                parts.pop();
            }
            _ => {
                return Err(format!(
                    "invalid archive: {} leads outside the archive",
                    path.display()
                ));
            }
        }
    }
    Ok(parts.join("/"))
}

/// An archive's members, extracted by name into a scratch directory.
struct Members {
    dir: PathBuf,
    files: HashMap<String, PathBuf>,
    links: HashMap<String, String>,
}

impl Members {
    fn extract(src: &Path, dir: PathBuf) -> Result<Members, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("preparing the load: {e}"))?;
        let mut m = Members {
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let reader = crate::space::Capped::new(
            decompressor(src).map_err(|e| format!("reading the archive: {e}"))?,
            crate::space::limit_for(&m.dir),
        );
        let wire = reader.tripwire();
        let mut tar = tar::Archive::new(reader);
        let bad = |e: std::io::Error| match wire.tripped() {
            true => format!("the archive is too large: {}", wire.message()),
            false => format!("invalid archive: {e}"),
        };
        for (n, entry) in tar.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let name = archive_path(&entry.path().map_err(bad)?)?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let file = m.dir.join(format!("m{n}"));
                    let mut out = std::fs::File::create(&file).map_err(|e| e.to_string())?;
                    std::io::copy(&mut entry, &mut out).map_err(bad)?;
                    m.files.insert(name, file);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(bad)?
                        .ok_or("invalid archive: a link without a target")?;
                    let full = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    m.links.insert(name, archive_path(&full)?);
                }
                _ => {}
            }
        }
        Ok(m)
    }

    fn path(&self, name: &str) -> Result<&Path, String> {
        let mut name = archive_path(Path::new(name))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&name) {
                return Ok(f);
            }
            match self.links.get(&name) {
                Some(next) => name = next.clone(),
                None => break,
            }
        }
        Err(format!("invalid archive: {name} is missing"))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.path(name)?).map_err(|e| e.to_string())
    }

    fn json(&self, name: &str) -> Result<Value, String> {
        serde_json::from_slice(&self.read(name)?).map_err(|e| format!("invalid {name}: {e}"))
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One image found in an archive.
struct Found {
    config: Vec<u8>,
    layers: Vec<String>,
    tags: Vec<String>,
}

fn blob_name(digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    format!("blobs/{alg}/{hex}")
}

/// The images of an OCI layout: each manifest in `index.json`, through nested indexes (the
/// linux/amd64 entry, or those without a platform).
fn oci_images(m: &Members) -> Result<Vec<Found>, String> {
    fn walk(m: &Members, desc: &Value, out: &mut Vec<Found>, depth: u32) -> Result<(), String> {
        let digest = desc["digest"]
            .as_str()
            .ok_or("invalid index.json: a digest is missing")?;
        let doc = m.json(&blob_name(digest))?;
        let annotations = &desc["annotations"];
        if let Some(list) = doc["manifests"].as_array() {
            if depth > 4 {
                return Err("invalid archive: indexes nest too deep".into());
            }
            for d in list {
                let p = &d["platform"];
                if p.is_null() || (p["os"] == "linux" && p["architecture"] == "amd64") {
                    walk(m, d, out, depth + 1)?;
                }
            }
            return Ok(());
        }
        let config = doc["config"]["digest"]
            .as_str()
            .ok_or("invalid manifest: no config")?;
        let layers = doc["layers"]
            .as_array()
            .ok_or("invalid manifest: no layers")?
            .iter()
            .map(|l| l["digest"].as_str().map(blob_name))
            .collect::<Option<Vec<_>>>()
            .ok_or("invalid manifest: a layer without a digest")?;
        let name = annotations["io.containerd.image.name"].as_str().or(
            annotations["org.opencontainers.image.ref.name"]
                .as_str()
                .filter(|n| n.contains(':') || n.contains('/')),
        );
        out.push(Found {
            config: m.read(&blob_name(config))?,
            layers,
            tags: name.into_iter().map(str::to_owned).collect(),
        });
        Ok(())
    }
    let index = m.json("index.json")?;
    let mut out = Vec::new();
    for d in index["manifests"].as_array().into_iter().flatten() {
        walk(m, d, &mut out, 0)?;
    }
    Ok(out)
}

/// The images of a docker-archive's `manifest.json`.
fn docker_images(m: &Members) -> Result<Vec<Found>, String> {
    let list = m.json("manifest.json")?;
    let mut out = Vec::new();
    for item in list.as_array().ok_or("invalid manifest.json: not a list")? {
        let config = item["Config"]
            .as_str()
            .ok_or("invalid manifest.json: no Config")?;
        out.push(Found {
            config: m.read(config)?,
            layers: item["Layers"]
                .as_array()
                .ok_or("invalid manifest.json: no Layers")?
                .iter()
                .map(|l| l.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("invalid manifest.json: Layers must be paths")?,
            tags: item["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        });
    }
    Ok(out)
}

/// The media type of a layer file, from its first bytes.
fn layer_media_type(path: &Path) -> String {
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        "application/vnd.oci.image.layer.v1.tar+gzip".into()
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        "application/vnd.oci.image.layer.v1.tar+zstd".into()
    } else {
        TAR_LAYER.into()
    }
}

fn file_digest(path: &Path) -> Result<(String, u64), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
    Ok((format!("sha256:{:x}", h.finalize()), size))
}

/// Places the layer file `path` as the snapshot of `diff_id` (checked against it) unless the
/// store has it; true when this call made it.
fn place_layer(store: &ImageStore, path: &Path, diff_id: &str) -> Result<bool, String> {
    if store.has_snapshot(diff_id) && store.layer_archive(diff_id).is_some() {
        return Ok(false);
    }
    let had = store.has_snapshot(diff_id);
    let (digest, size) = file_digest(path)?;
    let archive = LayerArchive {
        media_type: layer_media_type(path),
        digest,
        size,
    };
    unpack_into_snapshot(store, path, diff_id, &archive).map_err(|e| e.to_string())?;
    Ok(!had)
}

/// The familiar form of each tag that parses as one.
fn familiar_tags(tags: &[String]) -> Result<Vec<String>, String> {
    tags.iter()
        .map(|t| {
            reference::parse(t)
                .ok()
                .and_then(|r| reference::familiar_tag(&r))
                .ok_or_else(|| format!("invalid archive: {t:?} is not an image name"))
        })
        .collect()
}

/// Loads the images in the tar at `src`; returns the lines dockerd prints for them
/// (`Loaded image: busybox:latest`, or `Loaded image ID: sha256:...` for one without a name).
pub fn load(store: &ImageStore, src: &Path) -> Result<Vec<String>, String> {
    let members = Members::extract(src, store.tmp_dir().join(unique("load", "archive")))?;
    let found = if members.files.contains_key("manifest.json") {
        docker_images(&members)?
    } else if members.files.contains_key("index.json") {
        oci_images(&members)?
    } else {
        return Err(
            "invalid archive: neither manifest.json nor index.json is in it (docker save or OCI layout)"
                .into(),
        );
    };
    if found.is_empty() {
        return Err("invalid archive: it holds no image".into());
    }
    // Check every image's shape before unpacking anything.
    let mut plans = Vec::new();
    for f in &found {
        let doc: Value =
            serde_json::from_slice(&f.config).map_err(|e| format!("invalid image config: {e}"))?;
        let diff_ids: Vec<String> = doc["rootfs"]["diff_ids"]
            .as_array()
            .ok_or("invalid image config: no rootfs.diff_ids")?
            .iter()
            .map(|d| d.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("invalid image config: diff IDs must be strings")?;
        if let Some(bad) = diff_ids.iter().find(|d| !super::store::is_digest(d)) {
            return Err(format!(
                "invalid image config: diff ID {bad:?} is not a sha256 digest"
            ));
        }
        if diff_ids.len() != f.layers.len() {
            return Err(format!(
                "invalid archive: {} layers for {} diff IDs",
                f.layers.len(),
                diff_ids.len()
            ));
        }
        let paths = f
            .layers
            .iter()
            .map(|l| members.path(l).map(Path::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        plans.push((diff_ids, paths, familiar_tags(&f.tags)?));
    }
    let mut made: Vec<String> = Vec::new();
    let mut placed = || -> Result<(), String> {
        for (diff_ids, paths, _) in &plans {
            for (d, p) in diff_ids.iter().zip(paths) {
                if place_layer(store, p, d)? {
                    made.push(d.clone());
                }
            }
        }
        Ok(())
    };
    if let Err(e) = placed() {
        for d in &made {
            store.remove_unused_snapshot(d);
        }
        return Err(e);
    }
    let mut lines = Vec::new();
    for (f, (_, _, tags)) in found.iter().zip(plans) {
        let rec = store
            .add_config(&f.config, tags.clone())
            .map_err(|e| e.to_string())?;
        crate::events::emit(
            "image",
            "load",
            &rec.id,
            BTreeMap::from([("name".to_owned(), rec.id.clone())]),
        );
        if tags.is_empty() {
            lines.push(format!("Loaded image ID: {}", rec.id));
        }
        lines.extend(tags.iter().map(|t| format!("Loaded image: {t}")));
    }
    Ok(lines)
}

/// `docker import`'s parameters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ImportParams {
    pub repo: String,
    pub tag: String,
    pub message: String,
    pub changes: Vec<String>,
}

/// Makes a one-layer image of the root filesystem tar at `src` (plain or compressed);
/// returns its ID.
pub fn import(store: &ImageStore, src: &Path, p: &ImportParams) -> Result<String, String> {
    let changes = crate::build::commit::parse_changes(&p.changes)?;
    let tag = if p.repo.is_empty() {
        None
    } else {
        let name = match p.tag.as_str() {
            "" => p.repo.clone(),
            t => format!("{}:{t}", p.repo),
        };
        let r = reference::parse(&name).map_err(|e| e.to_string())?;
        Some(reference::familiar_tag(&r).ok_or("invalid reference format")?)
    };
    let mut reader = HashingReader {
        inner: decompressor(src).map_err(|e| format!("reading the archive: {e}"))?,
        hasher: Sha256::new(),
    };
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| format!("reading the archive: {e}"))?;
    let diff_id = format!("sha256:{:x}", reader.hasher.finalize());
    let made = place_layer(store, src, &diff_id)?;
    let now = crate::clock::now();
    let comment = if p.message.is_empty() {
        "Imported from -".to_owned()
    } else {
        p.message.clone()
    };
    let doc = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": now,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": now, "comment": comment }],
    });
    let result = crate::build::commit::changed_config(doc, &changes).and_then(|doc| {
        let config = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
        store
            .add_config(&config, tag.into_iter().collect())
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(rec) => {
            crate::events::emit(
                "image",
                "import",
                &rec.id,
                BTreeMap::from([("name".to_owned(), rec.id.clone())]),
            );
            Ok(rec.id)
        }
        Err(e) => {
            if made {
                store.remove_unused_snapshot(&diff_id);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_stay_inside() {
        assert_eq!(archive_path(Path::new("./a/./b")).unwrap(), "a/b");
        assert_eq!(archive_path(Path::new("a/../b")).unwrap(), "b");
        assert!(archive_path(Path::new("../x")).is_err());
        assert!(archive_path(Path::new("/etc/passwd")).is_err());
        assert!(archive_path(Path::new("a/../../x")).is_err());
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = file_header(data.len() as u64, 0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn save_then_load_round_trips_and_bad_archives_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let layer = tar_of(&[("etc/hello", b"hi\n")]);
        let src = dir.path().join("rootfs.tar");
        std::fs::write(&src, &layer).unwrap();
        let params = ImportParams {
            repo: "app".into(),
            tag: "1".into(),
            changes: vec!["CMD [\"cat\", \"/etc/hello\"]".into()],
            ..Default::default()
        };
        let id = import(&store, &src, &params).unwrap();
        let img = store.resolve("app:1").unwrap();
        assert_eq!(img.id, id);
        let config: Value = serde_json::from_slice(&store.blob(&id).unwrap()).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["cat", "/etc/hello"]));

        let mut saved = Vec::new();
        let chosen = to_save(&store, &["app:1".into()]).unwrap();
        save(&store, &chosen, &mut saved).unwrap();
        assert!(matches!(
            to_save(&store, &["nope:1".into()]),
            Err(SaveError::NotFound(_))
        ));
        let out = dir.path().join("saved.tar");
        std::fs::write(&out, &saved).unwrap();

        let other = tempfile::tempdir().unwrap();
        let store2 = ImageStore::open(other.path()).unwrap();
        assert_eq!(load(&store2, &out).unwrap(), vec!["Loaded image: app:1"]);
        let loaded = store2.resolve("app:1").unwrap();
        assert_eq!(loaded.id, id);
        let snap = store2.snapshot_dir(&loaded.layers[0]).join("fs/etc/hello");
        assert_eq!(std::fs::read(snap).unwrap(), b"hi\n");

        // An archive with a member outside it is refused whole.
        let evil = dir.path().join("evil.tar");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = file_header(1, 0o644);
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
        let err = load(&store2, &evil).unwrap_err();
        assert!(err.contains("leads outside"), "{err}");
        assert!(!other.path().join("images/escape").exists());

        // A layer that does not match its diff ID leaves no snapshot behind.
        let wrong = format!("sha256:{}", "0".repeat(64));
        let config = json!({"rootfs": {"type": "layers", "diff_ids": [&wrong]}});
        let lying = tar_of(&[
            (
                "manifest.json",
                br#"[{"Config":"c.json","RepoTags":["liar:1"],"Layers":["l.tar"]}]"#,
            ),
            ("c.json", serde_json::to_vec(&config).unwrap().as_slice()),
            ("l.tar", layer.as_slice()),
        ]);
        let lie = dir.path().join("lie.tar");
        std::fs::write(&lie, lying).unwrap();
        let err = load(&store2, &lie).unwrap_err();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(store2.resolve("liar:1").is_err());
        assert!(!store2.has_snapshot(&wrong));
    }
}
