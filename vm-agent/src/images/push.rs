//! Pushing: sends a local image's layer archives, config and manifest to its registry through
//! the host's proxy, skipping blobs the registry already has. An image pulled and pushed
//! unchanged goes with the manifest it came with, so its digest stays; one built, committed or
//! loaded here gets an OCI manifest naming its archives. Progress goes out in the shape of
//! dockerd's push stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::pull::{Events, Progress, PullError, client_for, registry_error, short};
use super::reference;
use super::store::{ImageRecord, ImageStore, LayerArchive, TAR_LAYER};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub struct PushRequest {
    /// The repository (`127.0.0.1:5000/app`).
    pub name: String,
    /// One tag, or empty for every tag of the repository.
    pub tag: String,
    pub auth: RegistryAuth,
    pub insecure: Vec<String>,
    pub proxy: Option<String>,
}

/// What one tag's push made: the familiar tag, the manifest digest and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    pub tag: String,
    pub digest: String,
    pub size: usize,
}

/// The OCI media type of a layer archive whose Docker media type is `media_type`.
fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => TAR_LAYER,
        other => other,
    }
}

/// An OCI image manifest for a config and its layers' archives.
pub fn oci_manifest(config_digest: &str, config_size: usize, layers: &[LayerArchive]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|a| {
            json!({
                "mediaType": oci_layer_type(&a.media_type),
                "digest": a.digest,
                "size": a.size,
            })
        })
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size },
        "layers": layers,
    });
    serde_json::to_vec(&doc).expect("a manifest serializes")
}

/// The archives of every layer of `img`, bottom first; an error names a layer without one.
pub fn archives(
    store: &ImageStore,
    img: &ImageRecord,
    name: &str,
) -> Result<Vec<(LayerArchive, std::path::PathBuf)>, PullError> {
    img.layers
        .iter()
        .map(|d| {
            store.layer_archive(d).ok_or_else(|| {
                PullError::Registry(format!(
                    "layer {} of {name} was stored before Berth kept layer archives: pull or build the image again",
                    short(d)
                ))
            })
        })
        .collect()
}

/// The manifest to push for `img`: the one it was pulled with when its layers are the ones
/// kept here, else a new OCI manifest. Returns the bytes and their media type.
fn manifest_for(
    store: &ImageStore,
    img: &ImageRecord,
    config: &[u8],
    layers: &[LayerArchive],
) -> (Vec<u8>, String) {
    if let Some(kept) = img.manifest.as_ref().and_then(|m| store.blob(m).ok()) {
        let doc: Value = serde_json::from_slice(&kept).unwrap_or_default();
        let digests: Vec<&str> = doc["layers"]
            .as_array()
            .map(|l| l.iter().filter_map(|d| d["digest"].as_str()).collect())
            .unwrap_or_default();
        let ours: Vec<&str> = layers.iter().map(|a| a.digest.as_str()).collect();
        if digests == ours && doc["config"]["digest"].as_str() == Some(img.id.as_str()) {
            let media = doc["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_owned();
            return (kept, media);
        }
    }
    (
        oci_manifest(&img.id, config.len(), layers),
        OCI_MANIFEST.to_owned(),
    )
}

/// A blob file as a stream of chunks, reporting how far it got on `events`.
fn file_stream(
    path: std::path::PathBuf,
    id: String,
    total: u64,
    events: mpsc::Sender<Progress>,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    struct St {
        file: Option<tokio::fs::File>,
        path: std::path::PathBuf,
        sent: u64,
        last: Instant,
    }
    let start = St {
        file: None,
        path,
        sent: 0,
        last: Instant::now(),
    };
    futures_util::stream::try_unfold(start, move |mut st| {
        let (id, events) = (id.clone(), events.clone());
        async move {
            if st.file.is_none() {
                st.file = Some(tokio::fs::File::open(&st.path).await?);
            }
            let mut buf = vec![0u8; 1 << 20];
            let n = st.file.as_mut().expect("opened").read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            st.sent += n as u64;
            if st.last.elapsed() > Duration::from_millis(100) || st.sent == total {
                st.last = Instant::now();
                let _ = events.try_send(Progress {
                    id,
                    status: "Pushing".into(),
                    current: st.sent,
                    total,
                });
            }
            Ok(Some((bytes::Bytes::from(buf), st)))
        }
    })
}

/// Pushes one layer archive unless the registry has it.
async fn push_layer(
    client: &Client,
    target: &Reference,
    archive: &LayerArchive,
    path: &std::path::Path,
    events: &Events,
) -> Result<(), PullError> {
    let id = short(&archive.digest);
    if client
        .blob_exists(target, &archive.digest)
        .await
        .map_err(|e| registry_error(e, target))?
    {
        events.send(&id, "Layer already exists", 0, 0).await;
        return Ok(());
    }
    let stream = file_stream(path.to_owned(), id.clone(), archive.size, events.0.clone());
    client
        .push_blob_stream(target, stream, &archive.digest, Some(archive.size))
        .await
        .map_err(|e| registry_error(e, target))?;
    events.send(&id, "Pushed", 0, 0).await;
    Ok(())
}

/// Pushes `req`'s tags, sending progress on `events`; returns what each push made.
pub async fn push(
    store: Arc<ImageStore>,
    req: PushRequest,
    events: mpsc::Sender<Progress>,
) -> Result<Vec<Pushed>, PullError> {
    let events = Events(events);
    let repo = reference::parse(&req.name)?;
    let familiar_repo = reference::familiar_repository(&repo);
    let tags: Vec<String> = if req.tag.is_empty() {
        let mut all: Vec<String> = store
            .list()
            .iter()
            .flat_map(|img| img.repo_tags.clone())
            .filter(|t| t.rsplit_once(':').map(|(r, _)| r) == Some(familiar_repo.as_str()))
            .collect();
        all.sort();
        all
    } else {
        vec![format!("{familiar_repo}:{}", req.tag)]
    };
    if tags.is_empty() {
        return Err(PullError::Store(super::store::StoreError::NotFound(
            familiar_repo,
        )));
    }
    events
        .send(
            "",
            &format!(
                "The push refers to repository [{}]",
                format_args!("{}/{}", repo.registry(), repo.repository())
            ),
            0,
            0,
        )
        .await;
    let client = client_for(repo.resolve_registry(), &req.insecure, req.proxy.clone());
    let mut done = Vec::new();
    for tag in tags {
        let img = store.resolve(&tag)?;
        let target = reference::parse(&tag)?;
        let layers = archives(&store, &img, &tag)?;
        let config = store.blob(&img.id)?;
        client
            .auth(&target, &req.auth, RegistryOperation::Push)
            .await
            .map_err(|e| registry_error(e, &target))?;
        for (a, _) in layers.iter().rev() {
            events.send(&short(&a.digest), "Preparing", 0, 0).await;
        }
        for (a, path) in layers.iter().rev() {
            push_layer(&client, &target, a, path, &events).await?;
        }
        if !client
            .blob_exists(&target, &img.id)
            .await
            .map_err(|e| registry_error(e, &target))?
        {
            client
                .push_blob(&target, config.clone(), &img.id)
                .await
                .map_err(|e| registry_error(e, &target))?;
        }
        let archives: Vec<LayerArchive> = layers.into_iter().map(|(a, _)| a).collect();
        let (manifest, media_type) = manifest_for(&store, &img, &config, &archives);
        let content_type = reqwest::header::HeaderValue::from_str(&media_type)
            .map_err(|e| PullError::Registry(format!("manifest media type: {e}")))?;
        client
            .push_manifest_raw(&target, manifest.clone(), content_type)
            .await
            .map_err(|e| registry_error(e, &target))?;
        let digest = format!("sha256:{:x}", Sha256::digest(&manifest));
        store.put_blob(&digest, &manifest)?;
        store.add_repo_digest(&img.id, &format!("{familiar_repo}@{digest}"))?;
        let short_tag = tag.rsplit_once(':').map_or("latest", |(_, t)| t).to_owned();
        events
            .send(
                "",
                &format!("{short_tag}: digest: {digest} size: {}", manifest.len()),
                0,
                0,
            )
            .await;
        done.push(Pushed {
            tag,
            digest,
            size: manifest.len(),
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_manifests_name_the_archives_with_oci_types() {
        let layers = vec![
            LayerArchive {
                media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                digest: "sha256:aa".into(),
                size: 10,
            },
            LayerArchive {
                media_type: TAR_LAYER.into(),
                digest: "sha256:bb".into(),
                size: 20,
            },
        ];
        let m: Value = serde_json::from_slice(&oci_manifest("sha256:cc", 5, &layers)).unwrap();
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["config"]["digest"], "sha256:cc");
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(m["layers"][1]["size"], 20);
    }
}
