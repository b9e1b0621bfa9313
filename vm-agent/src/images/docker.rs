//! Docker Engine API views of stored images (bollard-stubs models): the summary `docker images`
//! lists, the document `docker image inspect` prints, and `docker history`'s rows.

use std::collections::HashMap;

use bollard_stubs::models::{
    DriverData, HistoryResponseItem, ImageConfig, ImageInspect, ImageInspectRootFs, ImageSummary,
};

use super::store::{ImageRecord, ImageStore, StoreError};

fn config_json(store: &ImageStore, img: &ImageRecord) -> Result<serde_json::Value, StoreError> {
    let data = store.blob(&img.id)?;
    Ok(serde_json::from_slice(&data).unwrap_or_default())
}

/// The image config's `config` section (Env, Cmd, Entrypoint, WorkingDir, User, ...).
pub fn image_config(store: &ImageStore, img: &ImageRecord) -> Result<ImageConfig, StoreError> {
    let v = config_json(store, img)?;
    Ok(serde_json::from_value(v["config"].clone()).unwrap_or_default())
}

fn unix_seconds(rfc3339: &str) -> i64 {
    crate::clock::parse(rfc3339).unwrap_or(0.0) as i64
}

pub fn summary(store: &ImageStore, img: &ImageRecord, containers: i64) -> ImageSummary {
    let labels = image_config(store, img)
        .ok()
        .and_then(|c| c.labels)
        .unwrap_or_default();
    ImageSummary {
        id: img.id.clone(),
        parent_id: img.parent.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        created: unix_seconds(&img.created),
        size: img.size as i64,
        shared_size: -1,
        virtual_size: Some(img.size as i64),
        labels,
        containers,
        manifests: None,
    }
}

pub fn inspect(store: &ImageStore, img: &ImageRecord) -> Result<ImageInspect, StoreError> {
    let v = config_json(store, img)?;
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let layer_dirs: Vec<String> = img
        .layers
        .iter()
        .rev()
        .map(|l| store.snapshot_dir(l).join("fs").display().to_string())
        .collect();
    let mut data = HashMap::new();
    data.insert("LowerDir".to_owned(), layer_dirs.join(":"));
    Ok(ImageInspect {
        id: Some(img.id.clone()),
        repo_tags: Some(img.repo_tags.clone()),
        repo_digests: Some(img.repo_digests.clone()),
        parent: Some(img.parent.clone()),
        comment: Some(s("comment").unwrap_or_default()),
        created: s("created"),
        docker_version: Some(s("docker_version").unwrap_or_default()),
        author: Some(s("author").unwrap_or_default()),
        config: Some(serde_json::from_value(v["config"].clone()).unwrap_or_default()),
        architecture: s("architecture"),
        variant: s("variant"),
        os: s("os"),
        size: Some(img.size as i64),
        virtual_size: Some(img.size as i64),
        graph_driver: Some(DriverData {
            name: "overlay2".into(),
            data,
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".into(),
            layers: Some(img.layers.clone()),
        }),
        ..Default::default()
    })
}

pub fn history(
    store: &ImageStore,
    img: &ImageRecord,
) -> Result<Vec<HistoryResponseItem>, StoreError> {
    let v = config_json(store, img)?;
    let entries = v["history"].as_array().cloned().unwrap_or_default();
    let mut layers = img.layers.iter();
    let mut rows: Vec<HistoryResponseItem> = entries
        .iter()
        .map(|h| {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty {
                0
            } else {
                layers
                    .next()
                    .map(|l| super::pull::dir_size(&store.snapshot_dir(l).join("fs")) as i64)
                    .unwrap_or(0)
            };
            HistoryResponseItem {
                id: "<missing>".into(),
                created: unix_seconds(h["created"].as_str().unwrap_or_default()),
                created_by: h["created_by"].as_str().unwrap_or_default().to_owned(),
                tags: vec![],
                size,
                comment: h["comment"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = img.id.clone();
        top.tags = img.repo_tags.clone();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_unix() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix_seconds("2024-03-01T12:00:00.5Z"), 1_709_294_400);
        assert_eq!(unix_seconds("garbage"), 0);
    }
}
