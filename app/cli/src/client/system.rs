//! `system df` and `system prune`: disk use by images, containers, volumes and build cache, as
//! the docker CLI computes and prints it, and removing what nothing uses.

use std::process::ExitCode;

use bollard::container::PruneContainersOptions;
use bollard::image::PruneImagesOptions;
use bollard::network::PruneNetworksOptions;

use super::format::{Row, human_size_4};
use super::{Client, Result};

const FIELDS: [(&str, &str); 5] = [
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];
const DEFAULT: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";

#[derive(clap::Subcommand)]
pub enum SystemVerb {
    /// Show disk usage.
    Df {
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove unused data: stopped containers, unused networks, dangling images.
    Prune {
        /// Remove all unused images, not just dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Prune anonymous volumes.
        #[arg(long)]
        volumes: bool,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Connect stdin and stdout to the local engine's socket (what `berth -H ssh://` runs on
    /// the other side).
    DialStdio,
}

/// "1.2MB (50%)", the docker CLI's reclaimable column: the percent only when there is a size.
fn reclaimable(part: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", human_size_4(part as f64), part * 100 / total)
    } else {
        human_size_4(part as f64)
    }
}

fn row(kind: &str, total: usize, active: usize, size: i64, recl: String) -> Row {
    let v = [
        kind.to_owned(),
        total.to_string(),
        active.to_string(),
        human_size_4(size as f64),
        recl,
    ];
    FIELDS
        .iter()
        .zip(v)
        .map(|((f, h), v)| (*f, *h, v))
        .collect()
}

pub async fn df(client: &Client, format: Option<&str>) -> Result<ExitCode> {
    let template = super::template(format, DEFAULT, &FIELDS)?;
    let du = client.docker.df().await.map_err(|e| client.error(e, 1))?;
    let images = du.images.unwrap_or_default();
    let layers = du.layers_size.unwrap_or(0);
    let used: i64 = images
        .iter()
        .filter(|i| i.containers != 0 && i.size != -1 && i.shared_size != -1)
        .map(|i| i.size - i.shared_size)
        .sum();
    let containers = du.containers.unwrap_or_default();
    let active = |state: &str| {
        ["running", "paused", "restarting"]
            .iter()
            .any(|s| state.contains(s))
    };
    let c_size: i64 = containers.iter().filter_map(|c| c.size_rw).sum();
    let c_idle: i64 = containers
        .iter()
        .filter(|c| !active(c.state.as_deref().unwrap_or("")))
        .filter_map(|c| c.size_rw)
        .sum();
    let volumes = du.volumes.unwrap_or_default();
    let usage = |v: &bollard::models::Volume| {
        v.usage_data
            .as_ref()
            .map_or((0, 0), |u| (u.size, u.ref_count))
    };
    let v_size: i64 = volumes
        .iter()
        .map(|v| usage(v).0)
        .filter(|s| *s != -1)
        .sum();
    let v_idle: i64 = volumes
        .iter()
        .map(usage)
        .filter(|(s, refs)| *refs == 0 && *s != -1)
        .map(|(s, _)| s)
        .sum();
    let cache = du.build_cache.unwrap_or_default();
    let b_size: i64 = cache
        .iter()
        .filter(|b| !b.shared.unwrap_or(false))
        .filter_map(|b| b.size)
        .sum();
    let b_idle: i64 = cache
        .iter()
        .filter(|b| !b.shared.unwrap_or(false) && !b.in_use.unwrap_or(false))
        .filter_map(|b| b.size)
        .sum();
    let rows = vec![
        row(
            "Images",
            images.len(),
            images.iter().filter(|i| i.containers > 0).count(),
            layers,
            reclaimable(layers - used, layers),
        ),
        row(
            "Containers",
            containers.len(),
            containers
                .iter()
                .filter(|c| active(c.state.as_deref().unwrap_or("")))
                .count(),
            c_size,
            reclaimable(c_idle, c_size),
        ),
        row(
            "Local Volumes",
            volumes.len(),
            volumes.iter().filter(|v| usage(v).1 > 0).count(),
            v_size,
            reclaimable(v_idle, v_size),
        ),
        row(
            "Build Cache",
            cache.len(),
            cache.iter().filter(|b| b.in_use.unwrap_or(false)).count(),
            b_size,
            human_size_4(b_idle as f64),
        ),
    ];
    print!("{}", template.render(&rows));
    Ok(ExitCode::SUCCESS)
}

pub async fn prune(client: &Client, all: bool, volumes: bool, force: bool) -> Result<ExitCode> {
    if !force {
        let mut warning = vec![
            "WARNING! This will remove:",
            "  - all stopped containers",
            "  - all networks not used by at least one container",
        ];
        if volumes {
            warning.push("  - all anonymous volumes not used by at least one container");
        }
        warning.push(if all {
            "  - all images without at least one container associated to them"
        } else {
            "  - all dangling images"
        });
        warning.push("");
        if !super::confirm(&warning) {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let d = &client.docker;
    let mut reclaimed: i64 = 0;
    let c = d
        .prune_containers(None::<PruneContainersOptions<String>>)
        .await
        .map_err(|e| client.error(e, 1))?;
    if let Some(ids) = c.containers_deleted.filter(|v| !v.is_empty()) {
        println!("Deleted Containers:\n{}\n", ids.join("\n"));
    }
    reclaimed += c.space_reclaimed.unwrap_or(0);
    let n = d
        .prune_networks(None::<PruneNetworksOptions<String>>)
        .await
        .map_err(|e| client.error(e, 1))?;
    if let Some(names) = n.networks_deleted.filter(|v| !v.is_empty()) {
        println!("Deleted Networks:\n{}\n", names.join("\n"));
    }
    if volumes {
        let (names, bytes) = super::volumes::prune(client, Default::default()).await?;
        if !names.is_empty() {
            println!("Deleted Volumes:\n{}\n", names.join("\n"));
        }
        reclaimed += bytes;
    }
    let mut filters = std::collections::HashMap::new();
    filters.insert(
        "dangling".to_owned(),
        vec![if all { "false" } else { "true" }.to_owned()],
    );
    let i = d
        .prune_images(Some(PruneImagesOptions { filters }))
        .await
        .map_err(|e| client.error(e, 1))?;
    let deleted: Vec<String> = i
        .images_deleted
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| {
            r.untagged
                .map(|u| format!("untagged: {u}"))
                .into_iter()
                .chain(r.deleted.map(|d| format!("deleted: {d}")))
        })
        .collect();
    if !deleted.is_empty() {
        println!("Deleted Images:\n{}\n", deleted.join("\n"));
    }
    reclaimed += i.space_reclaimed.unwrap_or(0);
    // The build cache, as the docker CLI prunes it (bollard has no call for it).
    if let Some(socket) = client.unix_socket()
        && let Ok((200, doc)) =
            berth_engine::api::client::request(&socket, "POST", "/build/prune", None).await
    {
        let ids: Vec<&str> = doc["CachesDeleted"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if !ids.is_empty() {
            println!("Deleted build cache objects:\n{}\n", ids.join("\n"));
        }
        reclaimed += doc["SpaceReclaimed"].as_i64().unwrap_or(0);
    }
    println!("Total reclaimed space: {}", human_size_4(reclaimed as f64));
    Ok(ExitCode::SUCCESS)
}
