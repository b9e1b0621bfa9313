//! The Volumes view's commands: list (with sizes and the containers using each), create,
//! inspect, delete and prune volumes through the engine's `/volumes` API.

use std::collections::HashMap;

use bollard::container::ListContainersOptions;
use bollard::volume::{CreateVolumeOptions, PruneVolumesOptions, RemoveVolumeOptions};
use tauri::State;

use crate::dto::{VolumeRow, VolumeSpec};
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

type Result<T> = std::result::Result<T, AppError>;

/// The label dockerd puts on a container's anonymous volumes.
const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Volumes by name, each with its size (from `/system/df`, which measures them) and the
/// names of the containers whose mounts name it.
#[tauri::command]
#[specta::specta]
pub async fn list_volumes(engine: State<'_, Engine>) -> Result<Vec<VolumeRow>> {
    engine.require_running()?;
    let docker = engine.docker()?;
    let df = docker.df().await?;
    let containers = docker
        .list_containers(Some(ListContainersOptions::<String> {
            all: true,
            ..Default::default()
        }))
        .await?;
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for c in containers {
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        for m in c.mounts.unwrap_or_default() {
            if let Some(v) = m.name {
                users.entry(v).or_default().push(name.clone());
            }
        }
    }
    let mut rows: Vec<VolumeRow> = df
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let mut labels: Vec<String> = v
                .labels
                .iter()
                .filter(|(k, _)| k.as_str() != ANONYMOUS_LABEL)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            let mut containers = users.remove(&v.name).unwrap_or_default();
            containers.sort();
            VolumeRow {
                anonymous: v.labels.contains_key(ANONYMOUS_LABEL),
                size: v.usage_data.map(|u| u.size).filter(|s| *s >= 0),
                created: v.created_at.map(|c| c.to_string()).unwrap_or_default(),
                driver: v.driver,
                mountpoint: v.mountpoint,
                name: v.name,
                labels,
                containers,
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.anonymous, &a.name).cmp(&(b.anonymous, &b.name)));
    Ok(rows)
}

/// Creates a local volume; returns its name (the engine picks one when none is given).
#[tauri::command]
#[specta::specta]
pub async fn create_volume(engine: State<'_, Engine>, spec: VolumeSpec) -> Result<String> {
    engine.require_running()?;
    let mut labels = HashMap::new();
    for l in spec
        .labels
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
    {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            return Err(AppError::new(
                ErrorCode::InvalidInput,
                format!("{l}: a label is key=value"),
            ));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    let created = engine
        .docker()?
        .create_volume(CreateVolumeOptions {
            name: spec.name.trim().to_owned(),
            driver: "local".to_owned(),
            driver_opts: HashMap::new(),
            labels,
        })
        .await?;
    Ok(created.name)
}

#[tauri::command]
#[specta::specta]
pub async fn remove_volume(engine: State<'_, Engine>, name: String) -> Result<()> {
    engine.require_running()?;
    Ok(engine
        .docker()?
        .remove_volume(&name, None::<RemoveVolumeOptions>)
        .await?)
}

/// `docker volume inspect`, as indented JSON.
#[tauri::command]
#[specta::specta]
pub async fn inspect_volume(engine: State<'_, Engine>, name: String) -> Result<String> {
    engine.require_running()?;
    let doc = engine.docker()?.inspect_volume(&name).await?;
    serde_json::to_string_pretty(&doc).map_err(AppError::internal)
}

/// Removes the volumes no container uses (anonymous ones only unless `all`); returns the
/// names removed.
#[tauri::command]
#[specta::specta]
pub async fn prune_volumes(engine: State<'_, Engine>, all: bool) -> Result<Vec<String>> {
    engine.require_running()?;
    let mut filters = HashMap::new();
    if all {
        filters.insert("all".to_owned(), vec!["true".to_owned()]);
    }
    let r = engine
        .docker()?
        .prune_volumes(Some(PruneVolumesOptions { filters }))
        .await?;
    Ok(r.volumes_deleted.unwrap_or_default())
}
