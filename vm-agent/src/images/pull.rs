//! Pulling an image: resolves the reference (registry mirrors first for Docker Hub), fetches
//! the platform's manifest and config, downloads the missing layers a few at a time through the
//! host's proxy, checks every blob against its digest and every unpacked layer against its diff
//! ID, unpacks each into its snapshot, then records the image. Progress goes out per layer in
//! the shape of Docker's pull stream. Nothing is recorded unless every step succeeded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, linux_amd64_resolver};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::reference::{self, DOCKER_HUB};
use super::store::{ImageRecord, ImageStore, LayerArchive, StoreError, keep_archive};

/// The guest-local forwarder to the host's HTTP proxy (see `service::proxy`).
pub const PROXY_URL: &str = "http://127.0.0.1:3128";
const PARALLEL_LAYERS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Reference(#[from] reference::BadReference),
    #[error("{0}")]
    Registry(String),
    #[error("manifest unknown: {0}")]
    NotFound(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("unpacking layer {layer}: {source}")]
    Unpack {
        layer: String,
        source: super::unpack::UnpackError,
    },
    #[error("image config: {0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// One progress message, shaped like a line of Docker's pull stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Short layer ID (12 hex), or empty for whole-image messages.
    pub id: String,
    pub status: String,
    pub current: u64,
    pub total: u64,
}

pub struct PullRequest {
    pub reference: String,
    pub auth: RegistryAuth,
    pub mirrors: Vec<String>,
    pub insecure: Vec<String>,
    /// `None` talks to registries directly (tests without the host proxy).
    pub proxy: Option<String>,
}

/// A name no other download or unpack in this process uses.
pub(crate) fn unique(prefix: &str, id: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{id}-{}-{n}", std::process::id())
}

pub(crate) fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

pub(crate) struct Events(pub mpsc::Sender<Progress>);

impl Events {
    pub async fn send(&self, id: &str, status: &str, current: u64, total: u64) {
        let _ = self
            .0
            .send(Progress {
                id: id.to_owned(),
                status: status.to_owned(),
                current,
                total,
            })
            .await;
    }
}

/// A registry client for `registry` that goes through `proxy`, speaking plain HTTP to the
/// insecure registries (and loopback ones).
pub(crate) fn client_for(registry: &str, insecure: &[String], proxy: Option<String>) -> Client {
    let mut insecure: Vec<String> = insecure.to_vec();
    if reference::is_insecure(registry, &insecure) {
        insecure.push(registry.to_owned());
    }
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure),
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        https_proxy: proxy.clone(),
        http_proxy: proxy,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        max_concurrent_download: PARALLEL_LAYERS,
        ..Default::default()
    })
}

/// Where to try `r` from: each mirror (for Docker Hub images), then the registry itself.
pub(crate) fn sources(r: &Reference, mirrors: &[String]) -> Vec<Reference> {
    let mut out = Vec::new();
    if r.registry() == DOCKER_HUB {
        for m in mirrors {
            let host = m
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if !host.is_empty() {
                let mut mirrored = r.clone();
                mirrored.set_mirror_registry(host.to_owned());
                out.push(mirrored);
            }
        }
    }
    out.push(r.clone());
    out
}

pub(crate) fn registry_error(
    e: oci_client::errors::OciDistributionError,
    r: &Reference,
) -> PullError {
    use oci_client::errors::OciDistributionError as E;
    let text = e.to_string();
    match e {
        E::ImageManifestNotFoundError(_) => PullError::NotFound(r.whole()),
        E::RegistryError { .. }
            if text.contains("MANIFEST_UNKNOWN") || text.contains("NAME_UNKNOWN") =>
        {
            PullError::NotFound(r.whole())
        }
        _ => PullError::Registry(format!("{}: {text}", r.resolve_registry())),
    }
}

/// What dockerd prints after "Pulling from": `library/busybox` for Docker Hub.
fn pulling_from(r: &Reference) -> String {
    if r.registry() == DOCKER_HUB {
        r.repository().to_owned()
    } else {
        reference::familiar_repository(r)
    }
}

/// Downloads one blob to `path`, hashing as it goes; errors on a digest mismatch.
async fn download(
    client: &Client,
    r: &Reference,
    desc: &OciDescriptor,
    path: &Path,
    events: &Events,
) -> Result<(), PullError> {
    use futures_util::StreamExt;
    let id = short(&desc.digest);
    let total = desc.size.max(0) as u64;
    let mut stream = client
        .pull_blob_stream(r, desc)
        .await
        .map_err(|e| registry_error(e, r))?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(super::store::io("creating a download file"))?;
    let mut hasher = Sha256::new();
    let mut current = 0u64;
    let mut last = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PullError::Registry(format!("downloading {id}: {e}")))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(super::store::io("writing a download"))?;
        current += chunk.len() as u64;
        if last.elapsed() > Duration::from_millis(100) {
            events.send(&id, "Downloading", current, total).await;
            last = Instant::now();
        }
    }
    file.sync_all()
        .await
        .map_err(super::store::io("syncing a download"))?;
    let actual = format!("sha256:{:x}", hasher.finalize());
    events.send(&id, "Verifying Checksum", current, total).await;
    if actual != desc.digest {
        return Err(PullError::Digest {
            what: format!("layer {}", desc.digest),
            expected: desc.digest.clone(),
            actual,
        });
    }
    events.send(&id, "Download complete", current, total).await;
    Ok(())
}

/// Reads through a decompressor while hashing what comes out (the layer's diff ID).
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub(crate) fn decompressor(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    drop(file);
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else {
        Box::new(file)
    })
}

/// Unpacks the downloaded layer at `blob` into the snapshot for `diff_id`, checking the
/// uncompressed content against `diff_id`, and keeps `blob` beside it as the layer's archive
/// (described by `archive`). Returns the unpacked size.
pub fn unpack_into_snapshot(
    store: &ImageStore,
    blob: &Path,
    diff_id: &str,
    archive: &LayerArchive,
) -> Result<u64, PullError> {
    let layer = short(diff_id);
    let work = store.tmp_dir().join(unique("unpack", &layer));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("fs")).map_err(super::store::io("creating an unpack dir"))?;
    let result = (|| {
        let reader = decompressor(blob).map_err(super::store::io("opening a layer"))?;
        let mut hashing = HashingReader {
            inner: reader,
            hasher: Sha256::new(),
        };
        let stats =
            super::unpack::unpack_layer(&mut hashing, &work.join("fs")).map_err(|source| {
                PullError::Unpack {
                    layer: diff_id.to_owned(),
                    source,
                }
            })?;
        // The tar may end before the stream does (padding): hash the rest too.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(super::store::io("reading a layer"))?;
        let actual = format!("sha256:{:x}", hashing.hasher.finalize());
        if actual != diff_id {
            return Err(PullError::Digest {
                what: format!("uncompressed layer {layer}"),
                expected: diff_id.to_owned(),
                actual,
            });
        }
        let dest = store.snapshot_dir(diff_id);
        if store.has_snapshot(diff_id) {
            // A concurrent pull of the same layer got there first (its tree is identical), or
            // the layer was stored before archives were kept: keep one if it has none.
            let _ = std::fs::remove_dir_all(&work);
            if store.layer_archive(diff_id).is_none() {
                keep_archive(&dest, blob, archive).map_err(super::store::io("keeping a layer"))?;
            }
        } else {
            keep_archive(&work, blob, archive).map_err(super::store::io("keeping a layer"))?;
            if let Err(e) = super::store::place_durably(&work, &dest) {
                let _ = std::fs::remove_dir_all(&work);
                if !store.has_snapshot(diff_id) {
                    return Err(super::store::io("placing a snapshot")(e).into());
                }
            }
        }
        Ok(stats.bytes)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// The parts of an image config a pull needs.
fn parse_config(data: &[u8]) -> Result<(Vec<String>, String), PullError> {
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| PullError::Config(e.to_string()))?;
    let diff_ids = v["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| PullError::Config("no rootfs.diff_ids".into()))?
        .iter()
        .map(|d| d.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| PullError::Config("rootfs.diff_ids must be strings".into()))?;
    if let Some(bad) = diff_ids.iter().find(|d| !super::store::is_digest(d)) {
        return Err(PullError::Config(format!(
            "diff ID {bad:?} is not a sha256 digest"
        )));
    }
    let created = v["created"].as_str().unwrap_or_default().to_owned();
    Ok((diff_ids, created))
}

async fn fetch_manifest(
    req: &PullRequest,
    r: &Reference,
) -> Result<(Client, Reference, OciImageManifest, String, Option<String>), PullError> {
    let mut last_err = None;
    for source in sources(r, &req.mirrors) {
        let client = client_for(source.resolve_registry(), &req.insecure, req.proxy.clone());
        match client
            .pull_image_manifest_and_list_digest(&source, &req.auth)
            .await
        {
            Ok((manifest, digest, list)) => return Ok((client, source, manifest, digest, list)),
            Err(e) => {
                tracing::info!(registry = source.resolve_registry(), "manifest: {e}");
                last_err = Some(registry_error(e, &source));
            }
        }
    }
    Err(last_err.expect("at least one source"))
}

/// Fetches the platform manifest's own bytes and keeps them as a blob, so a push of the image
/// sends the manifest it came with. `None` when that fails: a push then writes a new one.
async fn keep_manifest(
    client: &Client,
    source: &Reference,
    auth: &RegistryAuth,
    digest: &str,
    store: &ImageStore,
) -> Option<String> {
    use oci_client::manifest::{IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
    let at = source.clone_with_digest(digest.to_owned());
    let (bytes, _) = client
        .pull_manifest_raw(
            &at,
            auth,
            &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
        )
        .await
        .ok()?;
    let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
    (actual == digest && store.put_blob(digest, &bytes).is_ok()).then(|| digest.to_owned())
}

/// Pulls `req.reference` into `store`, sending progress on `events`.
pub async fn pull(
    store: Arc<ImageStore>,
    req: PullRequest,
    events: mpsc::Sender<Progress>,
) -> Result<ImageRecord, PullError> {
    let events = Events(events);
    let r = reference::parse(&req.reference)?;
    let tag_label = r.tag().unwrap_or("latest").to_owned();
    events
        .send(
            &tag_label,
            &format!("Pulling from {}", pulling_from(&r)),
            0,
            0,
        )
        .await;
    let (client, source, manifest, digest, list_digest) = fetch_manifest(&req, &r).await?;
    // Digests name files in the store: refuse a manifest with any other kind.
    let named =
        std::iter::once(&manifest.config.digest).chain(manifest.layers.iter().map(|l| &l.digest));
    if let Some(bad) = named.into_iter().find(|d| !super::store::is_digest(d)) {
        return Err(PullError::Config(format!(
            "the manifest names {bad:?}, which is not a sha256 digest"
        )));
    }

    // The config blob: small, verified, kept.
    let mut config = Vec::new();
    client
        .pull_blob(&source, &manifest.config, &mut config)
        .await
        .map_err(|e| registry_error(e, &source))?;
    let config_digest = format!("sha256:{:x}", Sha256::digest(&config));
    if config_digest != manifest.config.digest {
        return Err(PullError::Digest {
            what: "image config".into(),
            expected: manifest.config.digest.clone(),
            actual: config_digest,
        });
    }
    let (diff_ids, created) = parse_config(&config)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(PullError::Config(format!(
            "{} layers in the manifest but {} diff IDs in the config",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }

    let pairs: Vec<(OciDescriptor, String)> = manifest
        .layers
        .iter()
        .cloned()
        .zip(diff_ids.iter().cloned())
        .collect();
    let mut missing = Vec::new();
    for (desc, diff_id) in &pairs {
        if store.has_snapshot(diff_id) && store.layer_archive(diff_id).is_some() {
            events
                .send(&short(&desc.digest), "Already exists", 0, 0)
                .await;
        } else if !missing
            .iter()
            .any(|(_, d): &(OciDescriptor, String)| d == diff_id)
        {
            events
                .send(&short(&desc.digest), "Pulling fs layer", 0, 0)
                .await;
            missing.push((desc.clone(), diff_id.clone()));
        }
    }

    // Download and unpack the missing layers, a few at a time.
    let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL_LAYERS));
    let events = Arc::new(events);
    let mut tasks = tokio::task::JoinSet::new();
    for (desc, diff_id) in missing {
        let (client, source, store, events, semaphore) = (
            client.clone(),
            source.clone(),
            store.clone(),
            events.clone(),
            semaphore.clone(),
        );
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let id = short(&desc.digest);
            let blob: PathBuf = store.tmp_dir().join(unique("blob", &id));
            let result = async {
                download(&client, &source, &desc, &blob, &events).await?;
                events
                    .send(&id, "Extracting", 0, desc.size.max(0) as u64)
                    .await;
                let archive = LayerArchive {
                    media_type: desc.media_type.clone(),
                    digest: desc.digest.clone(),
                    size: desc.size.max(0) as u64,
                };
                let (store2, blob2, diff2) = (store.clone(), blob.clone(), diff_id.clone());
                tokio::task::spawn_blocking(move || {
                    unpack_into_snapshot(&store2, &blob2, &diff2, &archive)
                })
                .await
                .map_err(|e| PullError::Registry(format!("unpack task: {e}")))??;
                events.send(&id, "Pull complete", 0, 0).await;
                Ok::<(), PullError>(())
            }
            .await;
            let _ = tokio::fs::remove_file(&blob).await;
            result
        });
    }
    let mut first_err = None;
    while let Some(done) = tasks.join_next().await {
        let res = done
            .map_err(|e| PullError::Registry(format!("pull task: {e}")))
            .and_then(|r| r);
        if let Err(e) = res
            && first_err.is_none()
        {
            first_err = Some(e);
            tasks.abort_all();
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    let size = diff_ids
        .iter()
        .map(|d| dir_size(&store.snapshot_dir(d).join("fs")))
        .sum();
    store.put_blob(&manifest.config.digest, &config)?;
    let kept_manifest = keep_manifest(&client, &source, &req.auth, &digest, &store).await;
    let shown_digest = list_digest.unwrap_or(digest);
    let record = store.add(ImageRecord {
        id: manifest.config.digest.clone(),
        repo_tags: reference::familiar_tag(&r).into_iter().collect(),
        repo_digests: vec![reference::familiar_digest(&r, &shown_digest)],
        layers: diff_ids,
        size,
        created,
        added: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        manifest: kept_manifest,
        ..Default::default()
    })?;
    events
        .send("", &format!("Digest: {shown_digest}"), 0, 0)
        .await;
    Ok(record)
}

/// Apparent size of a directory tree (regular files), without following symlinks.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_for_docker_hub_only() {
        let r = reference::parse("busybox").unwrap();
        let s = sources(&r, &["http://127.0.0.1:5000/".into()]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].resolve_registry(), "127.0.0.1:5000");
        assert_eq!(s[0].repository(), "library/busybox");
        let r = reference::parse("127.0.0.1:6000/x:1").unwrap();
        assert_eq!(sources(&r, &["http://127.0.0.1:5000".into()]).len(), 1);
    }

    #[test]
    fn config_diff_ids() {
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let cfg = format!(
            r#"{{"created":"2024-01-01T00:00:00Z","rootfs":{{"type":"layers","diff_ids":["{a}","{b}"]}}}}"#
        );
        let (ids, created) = parse_config(cfg.as_bytes()).unwrap();
        assert_eq!(ids, vec![a, b]);
        assert_eq!(created, "2024-01-01T00:00:00Z");
        assert!(parse_config(b"{}").is_err());
        // A diff ID becomes a path: anything but a sha256 digest is refused.
        let evil = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:../../../run"]}}"#;
        assert!(parse_config(evil).is_err());
    }
}
