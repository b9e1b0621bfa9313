//! The Networks view's commands: list, create, inspect and delete user networks through the
//! engine's `/networks` API.

use bollard::models::{Ipam, IpamConfig, Network};
use bollard::network::{CreateNetworkOptions, InspectNetworkOptions, ListNetworksOptions};
use tauri::State;

use crate::dto::{NetworkRow, NetworkSpec};
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

type Result<T> = std::result::Result<T, AppError>;

fn row(n: Network) -> NetworkRow {
    let name = n.name.unwrap_or_default();
    let ipv4 = n
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.subnet.as_deref().is_some_and(|s| s.contains('.')));
    let mut containers: Vec<String> = n
        .containers
        .unwrap_or_default()
        .into_values()
        .filter_map(|c| c.name)
        .collect();
    containers.sort();
    NetworkRow {
        id: n.id.unwrap_or_default(),
        builtin: matches!(name.as_str(), "bridge" | "host" | "none"),
        name,
        driver: n.driver.unwrap_or_default(),
        subnet: ipv4.as_ref().and_then(|c| c.subnet.clone()),
        gateway: ipv4.and_then(|c| c.gateway),
        internal: n.internal.unwrap_or(false),
        containers,
    }
}

/// Networks by name, the built-in ones first. Attached containers come from each network's
/// inspect, as `docker network ls` leaves them out.
#[tauri::command]
#[specta::specta]
pub async fn list_networks(engine: State<'_, Engine>) -> Result<Vec<NetworkRow>> {
    engine.require_running()?;
    let docker = engine.docker()?;
    let listed = docker
        .list_networks(None::<ListNetworksOptions<String>>)
        .await?;
    let mut rows = Vec::with_capacity(listed.len());
    for n in listed {
        let id = n.id.clone().unwrap_or_default();
        let full = docker
            .inspect_network(&id, None::<InspectNetworkOptions<String>>)
            .await
            .unwrap_or(n);
        rows.push(row(full));
    }
    rows.sort_by(|a, b| (!a.builtin, &a.name).cmp(&(!b.builtin, &b.name)));
    Ok(rows)
}

/// Creates a bridge network; returns its id.
#[tauri::command]
#[specta::specta]
pub async fn create_network(engine: State<'_, Engine>, spec: NetworkSpec) -> Result<String> {
    engine.require_running()?;
    let name = spec.name.trim().to_owned();
    if name.is_empty() {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            "a network needs a name",
        ));
    }
    let blank = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let (subnet, gateway) = (blank(spec.subnet), blank(spec.gateway));
    if gateway.is_some() && subnet.is_none() {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            "a gateway needs a subnet",
        ));
    }
    let ipam = Ipam {
        config: subnet.map(|subnet| {
            vec![IpamConfig {
                subnet: Some(subnet),
                gateway,
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let created = engine
        .docker()?
        .create_network(CreateNetworkOptions {
            name,
            driver: "bridge".into(),
            internal: spec.internal,
            ipam,
            ..Default::default()
        })
        .await?;
    Ok(created.id)
}

#[tauri::command]
#[specta::specta]
pub async fn remove_network(engine: State<'_, Engine>, id: String) -> Result<()> {
    engine.require_running()?;
    Ok(engine.docker()?.remove_network(&id).await?)
}

/// `docker network inspect`, as indented JSON.
#[tauri::command]
#[specta::specta]
pub async fn inspect_network(engine: State<'_, Engine>, id: String) -> Result<String> {
    engine.require_running()?;
    let doc = engine
        .docker()?
        .inspect_network(&id, None::<InspectNetworkOptions<String>>)
        .await?;
    serde_json::to_string_pretty(&doc).map_err(AppError::internal)
}
