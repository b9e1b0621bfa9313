//! The commands the UI calls, typed end to end: tauri-specta exports their signatures to
//! `ui/src/lib/bindings.ts`. Streams (engine state, events, pull progress, logs) go over Tauri
//! channels and end when the UI drops its channel. Docker objects are reached through the
//! engine's own Docker API socket with bollard, as any client would.

use std::collections::HashMap;

use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, LogOutput, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::image::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use bollard::models::{HostConfig, PortBinding};
use bollard::system::EventsOptions;
use futures_util::StreamExt;
use tauri::State;
use tauri::ipc::Channel;

use crate::dto::*;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

type Result<T> = std::result::Result<T, AppError>;

#[tauri::command]
#[specta::specta]
pub fn engine_status(engine: State<'_, Engine>) -> EngineStatus {
    engine.status()
}

/// Streams the engine's state: the current one at once, then every change.
#[tauri::command]
#[specta::specta]
pub async fn watch_engine(
    engine: State<'_, Engine>,
    on_status: Channel<EngineStatus>,
) -> Result<()> {
    engine.follow(move |status| on_status.send(status).is_ok());
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub async fn engine_start(engine: State<'_, Engine>) -> Result<()> {
    engine.start().await
}

#[tauri::command]
#[specta::specta]
pub async fn engine_stop(engine: State<'_, Engine>) -> Result<()> {
    engine.stop().await
}

#[tauri::command]
#[specta::specta]
pub async fn engine_restart(engine: State<'_, Engine>) -> Result<()> {
    engine.restart().await
}

/// Streams the engine's events (containers, images, networks), across VM restarts, so the views
/// refresh when something changes instead of polling.
#[tauri::command]
#[specta::specta]
pub async fn watch_events(engine: State<'_, Engine>, on_event: Channel<EngineEvent>) -> Result<()> {
    let engine = engine.inner().clone();
    tokio::spawn(async move {
        let mut states = engine.subscribe();
        loop {
            // Wait for a running engine, then follow its events until the stream ends.
            while engine.require_running().is_err() {
                if states.changed().await.is_err() {
                    return;
                }
            }
            // A synthetic event: whatever the UI shows may be stale after a restart.
            let hello = EngineEvent {
                kind: "engine".into(),
                action: "running".into(),
                id: String::new(),
            };
            if on_event.send(hello).is_err() {
                return;
            }
            let Ok(docker) = engine.docker() else {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            };
            let mut events = docker.events(Some(EventsOptions::<String>::default()));
            while let Some(ev) = events.next().await {
                let Ok(ev) = ev else {
                    break;
                };
                let event = EngineEvent {
                    kind: ev.typ.map(|t| t.to_string()).unwrap_or_default(),
                    action: ev.action.unwrap_or_default(),
                    id: ev.actor.and_then(|a| a.id).unwrap_or_default(),
                };
                if on_event.send(event).is_err() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub async fn list_containers(engine: State<'_, Engine>) -> Result<Vec<ContainerRow>> {
    engine.require_running()?;
    let rows = engine
        .docker()?
        .list_containers(Some(ListContainersOptions::<String> {
            all: true,
            ..Default::default()
        }))
        .await?;
    let switches = engine.supervisor().ports().list();
    Ok(rows
        .into_iter()
        .map(|c| {
            let id = c.id.unwrap_or_default();
            let mut ports: Vec<PortRow> = switches
                .iter()
                .filter(|p| p.container == id)
                .map(|p| PortRow {
                    port: p.port.clone(),
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port,
                    enabled: p.enabled,
                })
                .collect();
            ports.sort_by(|a, b| (&a.port, a.host_port).cmp(&(&b.port, b.host_port)));
            ContainerRow {
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                id,
                image: c.image.unwrap_or_default(),
                state: c.state.unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                ports,
                created: c.created.unwrap_or_default() as f64,
            }
        })
        .collect())
}

#[tauri::command]
#[specta::specta]
pub async fn container_action(
    engine: State<'_, Engine>,
    id: String,
    action: ContainerAction,
) -> Result<()> {
    engine.require_running()?;
    let d = engine.docker()?;
    match action {
        ContainerAction::Start => d.start_container::<String>(&id, None).await?,
        ContainerAction::Stop => d.stop_container(&id, None::<StopContainerOptions>).await?,
        ContainerAction::Restart => d.restart_container(&id, None).await?,
        ContainerAction::Pause => d.pause_container(&id).await?,
        ContainerAction::Unpause => d.unpause_container(&id).await?,
        ContainerAction::Remove => {
            d.remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await?
        }
    }
    Ok(())
}

/// Switches a published port's host listener off or on; the container is not touched.
#[tauri::command]
#[specta::specta]
pub async fn set_port_enabled(
    engine: State<'_, Engine>,
    id: String,
    port: String,
    enabled: bool,
) -> Result<()> {
    engine.require_running()?;
    engine
        .supervisor()
        .ports()
        .set_enabled(&id, &port, enabled)
        .await
        .map_err(|e| {
            let code = if e.contains("publishes no port") {
                ErrorCode::NotFound
            } else {
                ErrorCode::Internal
            };
            AppError::new(code, e)
        })
}

#[tauri::command]
#[specta::specta]
pub async fn list_images(engine: State<'_, Engine>) -> Result<Vec<ImageRow>> {
    engine.require_running()?;
    let rows = engine
        .docker()?
        .list_images(Some(ListImagesOptions::<String>::default()))
        .await?;
    Ok(rows
        .into_iter()
        .map(|i| ImageRow {
            id: i.id,
            tags: i
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            size: i.size as f64,
            created: i.created as f64,
        })
        .collect())
}

/// `name[:tag]` or `name@digest` as the pull endpoint takes it: (image, tag).
pub fn split_reference(reference: &str) -> Result<(String, String)> {
    let r = reference.trim();
    if r.is_empty() || r.chars().any(char::is_whitespace) {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            format!("{reference:?} is not an image reference"),
        ));
    }
    if r.contains('@') {
        return Ok((r.to_owned(), String::new()));
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    match last.rfind(':') {
        Some(i) => {
            let cut = r.len() - last.len() + i;
            Ok((r[..cut].to_owned(), r[cut + 1..].to_owned()))
        }
        None => Ok((r.to_owned(), "latest".to_owned())),
    }
}

/// Pulls an image, streaming each layer's progress; ends with the pull.
#[tauri::command]
#[specta::specta]
pub async fn pull_image(
    engine: State<'_, Engine>,
    reference: String,
    on_progress: Channel<PullEvent>,
) -> Result<()> {
    engine.require_running()?;
    let (image, tag) = split_reference(&reference)?;
    let docker = engine.docker()?;
    let mut stream = docker.create_image(
        Some(CreateImageOptions {
            from_image: image,
            tag,
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(info) = stream.next().await {
        let info = info?;
        if let Some(err) = info.error {
            return Err(AppError::new(ErrorCode::Internal, err));
        }
        let status = info.status.unwrap_or_default();
        let event = match info.id {
            Some(id) if !status.starts_with("Pulling from") => {
                let detail = info.progress_detail.unwrap_or_default();
                PullEvent::Layer {
                    id,
                    status,
                    current: detail.current.unwrap_or(0) as f64,
                    total: detail.total.unwrap_or(0) as f64,
                }
            }
            _ => PullEvent::Status { text: status },
        };
        // The UI may have gone; the pull goes on.
        let _ = on_progress.send(event);
    }
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub async fn remove_image(engine: State<'_, Engine>, id: String) -> Result<()> {
    engine.require_running()?;
    engine
        .docker()?
        .remove_image(&id, None::<RemoveImageOptions>, None)
        .await?;
    Ok(())
}

/// Removes dangling images (dockerd's `image prune`); returns the bytes reclaimed.
#[tauri::command]
#[specta::specta]
pub async fn prune_images(engine: State<'_, Engine>) -> Result<f64> {
    engine.require_running()?;
    let r = engine
        .docker()?
        .prune_images(None::<bollard::image::PruneImagesOptions<String>>)
        .await?;
    Ok(r.space_reclaimed.unwrap_or(0) as f64)
}

/// Creates and starts a container from the Images view's form; returns its ID.
#[tauri::command]
#[specta::specta]
pub async fn run_container(engine: State<'_, Engine>, spec: RunSpec) -> Result<String> {
    engine.require_running()?;
    let mut exposed = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let proto = match p.protocol.as_str() {
            "" | "tcp" => "tcp",
            "udp" => "udp",
            other => {
                return Err(AppError::new(
                    ErrorCode::InvalidInput,
                    format!("{other}: a port's protocol is tcp or udp"),
                ));
            }
        };
        let key = format!("{}/{proto}", p.container_port);
        exposed.insert(key.clone(), HashMap::new());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                }),
            });
    }
    let config = Config {
        image: Some(spec.image.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = spec.name.clone().filter(|n| !n.trim().is_empty());
    let created = engine
        .docker()?
        .create_container(
            name.map(|name| CreateContainerOptions {
                name,
                platform: None,
            }),
            config,
        )
        .await?;
    engine
        .docker()?
        .start_container::<String>(&created.id, None)
        .await?;
    Ok(created.id)
}

/// Streams that run until the UI stops them ([`stop_stream`]) or their source ends.
#[derive(Default)]
pub struct Streams {
    next: std::sync::atomic::AtomicU32,
    running: std::sync::Mutex<HashMap<u32, tokio::task::AbortHandle>>,
}

impl Streams {
    pub(crate) fn add(&self, task: tokio::task::JoinHandle<()>) -> u32 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut running = self.running.lock().unwrap();
        running.retain(|_, h| !h.is_finished());
        running.insert(id, task.abort_handle());
        id
    }
}

/// Ends a stream a command started (a log the user closed).
#[tauri::command]
#[specta::specta]
pub fn stop_stream(streams: State<'_, Streams>, stream: u32) {
    if let Some(h) = streams.running.lock().unwrap().remove(&stream) {
        h.abort();
    }
}

/// Streams a container's log (the last `tail` lines, then new ones) until the container stops
/// or the UI stops the stream; returns the stream's number for [`stop_stream`].
#[tauri::command]
#[specta::specta]
pub async fn follow_logs(
    engine: State<'_, Engine>,
    streams: State<'_, Streams>,
    id: String,
    tail: u32,
    on_line: Channel<LogLine>,
) -> Result<u32> {
    engine.require_running()?;
    let docker = engine.docker()?;
    let mut stream = docker.logs(
        &id,
        Some(LogsOptions::<String> {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: tail.to_string(),
            ..Default::default()
        }),
    );
    let task = tokio::spawn(async move {
        while let Some(Ok(out)) = stream.next().await {
            let (name, bytes) = match out {
                LogOutput::StdErr { message } => ("stderr", message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    ("stdout", message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            for text in String::from_utf8_lossy(&bytes).lines() {
                let line = LogLine {
                    stream: name.into(),
                    text: text.to_owned(),
                };
                if on_line.send(line).is_err() {
                    return;
                }
            }
        }
    });
    Ok(streams.add(task))
}

/// `docker inspect` of a container, as indented JSON.
#[tauri::command]
#[specta::specta]
pub async fn inspect_container(engine: State<'_, Engine>, id: String) -> Result<String> {
    engine.require_running()?;
    let doc = engine.docker()?.inspect_container(&id, None).await?;
    serde_json::to_string_pretty(&doc).map_err(AppError::internal)
}

/// What a tray menu item does (start, stop, restart, open, quit), callable from the UI too:
/// WebDriver cannot click the tray.
#[tauri::command]
#[specta::specta]
pub fn tray_action(app: tauri::AppHandle, item: String) {
    crate::tray::menu_action(&app, &item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_the_pull_endpoint_wants() {
        let s = |r| split_reference(r).unwrap();
        assert_eq!(s("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(s("busybox:1.36"), ("busybox".into(), "1.36".into()));
        assert_eq!(
            s("127.0.0.1:5000/team/app"),
            ("127.0.0.1:5000/team/app".into(), "latest".into())
        );
        assert_eq!(
            s("127.0.0.1:5000/team/app:v2"),
            ("127.0.0.1:5000/team/app".into(), "v2".into())
        );
        assert_eq!(
            s("alpine@sha256:abc"),
            ("alpine@sha256:abc".into(), String::new())
        );
        assert_eq!(
            split_reference("bad name").unwrap_err().code,
            ErrorCode::InvalidInput
        );
        assert_eq!(
            split_reference(" ").unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }
}
