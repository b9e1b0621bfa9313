//! Live resource use of containers: one `/containers/{id}/stats` stream per container, folded
//! into [`StatsSample`]s the way the docker CLI computes its `stats` table, and sent to the UI
//! over one channel.

use bollard::container::{Stats, StatsOptions};
use futures_util::StreamExt;
use tauri::State;
use tauri::ipc::Channel;

use crate::commands::Streams;
use crate::dto::StatsSample;
use crate::engine::Engine;
use crate::error::AppError;

/// CPU percent as the docker CLI computes it: the container's share of the machine's CPU time
/// between two samples, times the online CPUs.
fn cpu_percent(s: &Stats) -> f64 {
    let cpu_delta = s
        .cpu_stats
        .cpu_usage
        .total_usage
        .saturating_sub(s.precpu_stats.cpu_usage.total_usage);
    let system_delta = s
        .cpu_stats
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(s.precpu_stats.system_cpu_usage.unwrap_or(0));
    let cpus = s.cpu_stats.online_cpus.unwrap_or_else(|| {
        s.cpu_stats
            .cpu_usage
            .percpu_usage
            .as_ref()
            .map_or(1, |v| v.len() as u64)
    });
    if cpu_delta == 0 || system_delta == 0 {
        return 0.0;
    }
    cpu_delta as f64 / system_delta as f64 * cpus as f64 * 100.0
}

/// Memory in use less the inactive page cache (cgroup v2's `inactive_file`, v1's
/// `total_inactive_file`), as the docker CLI shows it.
fn mem_usage(s: &Stats) -> u64 {
    use bollard::container::MemoryStatsStats::{V1, V2};
    let usage = s.memory_stats.usage.unwrap_or(0);
    let cache = match s.memory_stats.stats {
        Some(V2(m)) => m.inactive_file,
        Some(V1(m)) => m.total_inactive_file,
        None => 0,
    };
    if cache < usage { usage - cache } else { usage }
}

pub fn fold(s: &Stats) -> StatsSample {
    let (mut rx, mut tx) = (0, 0);
    for n in s.networks.iter().flat_map(|m| m.values()) {
        rx += n.rx_bytes;
        tx += n.tx_bytes;
    }
    let (mut read, mut write) = (0, 0);
    for e in s.blkio_stats.io_service_bytes_recursive.iter().flatten() {
        match e.op.to_ascii_lowercase().as_str() {
            "read" => read += e.value,
            "write" => write += e.value,
            _ => {}
        }
    }
    StatsSample {
        id: s.id.clone(),
        cpu_percent: cpu_percent(s),
        mem_usage: mem_usage(s) as f64,
        mem_limit: s.memory_stats.limit.unwrap_or(0) as f64,
        net_rx: rx as f64,
        net_tx: tx as f64,
        block_read: read as f64,
        block_write: write as f64,
        pids: s.pids_stats.current.unwrap_or(0) as f64,
    }
}

/// Streams the samples of `ids` (running containers), all of them once a second in one message
/// so the UI repaints once, until the UI stops the stream; a container that stops ends its part.
/// Returns the stream's number for `stop_stream`.
#[tauri::command]
#[specta::specta]
pub async fn watch_stats(
    engine: State<'_, Engine>,
    streams: State<'_, Streams>,
    ids: Vec<String>,
    on_samples: Channel<Vec<StatsSample>>,
) -> Result<u32, AppError> {
    engine.require_running()?;
    let docker = engine.docker()?;
    let per_container = ids.into_iter().map(|id| {
        let stream = docker.stats(
            &id,
            Some(StatsOptions {
                stream: true,
                one_shot: false,
            }),
        );
        // The sample's own id is the full one; keep the UI's key.
        stream.map(move |r| {
            r.map(|s| StatsSample {
                id: id.clone(),
                ..fold(&s)
            })
        })
    });
    let mut all = futures_util::stream::select_all(per_container);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<StatsSample> = Vec::new();
        loop {
            tokio::select! {
                sample = all.next() => match sample {
                    Some(Ok(s)) => {
                        batch.retain(|b| b.id != s.id);
                        batch.push(s);
                    }
                    Some(Err(e)) => tracing::debug!("stats: {e}"),
                    None => break,
                },
                _ = tick.tick() => {
                    if !batch.is_empty() && on_samples.send(std::mem::take(&mut batch)).is_err() {
                        return;
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = on_samples.send(batch);
        }
    });
    Ok(streams.add(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's stats document as the guest agent writes it, parsed by bollard.
    fn doc(total: u64, pretotal: u64) -> Stats {
        let mem: serde_json::Map<String, serde_json::Value> = [
            "anon",
            "file",
            "kernel_stack",
            "slab",
            "sock",
            "shmem",
            "file_mapped",
            "file_dirty",
            "file_writeback",
            "anon_thp",
            "inactive_anon",
            "active_anon",
            "inactive_file",
            "active_file",
            "unevictable",
            "slab_reclaimable",
            "slab_unreclaimable",
            "pgfault",
            "pgmajfault",
            "workingset_refault",
            "workingset_activate",
            "workingset_nodereclaim",
            "pgrefill",
            "pgscan",
            "pgsteal",
            "pgactivate",
            "pgdeactivate",
            "pglazyfree",
            "pglazyfreed",
            "thp_fault_alloc",
            "thp_collapse_alloc",
        ]
        .iter()
        .map(|k| {
            let v = if *k == "inactive_file" { 1 << 20 } else { 0 };
            ((*k).to_owned(), serde_json::json!(v))
        })
        .collect();
        serde_json::from_value(serde_json::json!({
            "id": "abc", "name": "/web", "read": "2026-11-29T09:00:01Z",
            "preread": "2026-11-29T09:00:00Z", "num_procs": 0,
            "pids_stats": { "current": 3, "limit": 4096 },
            "cpu_stats": {
                "cpu_usage": { "total_usage": total, "usage_in_usermode": 0, "usage_in_kernelmode": 0 },
                "system_cpu_usage": 4_000_000_000u64, "online_cpus": 2,
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
            },
            "precpu_stats": {
                "cpu_usage": { "total_usage": pretotal, "usage_in_usermode": 0, "usage_in_kernelmode": 0 },
                "system_cpu_usage": 2_000_000_000u64, "online_cpus": 2,
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
            },
            "memory_stats": { "usage": 5u64 << 20, "limit": 64u64 << 20, "stats": mem },
            "blkio_stats": { "io_service_bytes_recursive": [
                { "major": 254, "minor": 0, "op": "read", "value": 4096 },
                { "major": 254, "minor": 0, "op": "write", "value": 8192 },
            ] },
            "networks": {
                "eth0": { "rx_bytes": 100, "rx_packets": 1, "rx_errors": 0, "rx_dropped": 0,
                          "tx_bytes": 50, "tx_packets": 1, "tx_errors": 0, "tx_dropped": 0 },
            },
            "storage_stats": {},
        }))
        .expect("bollard parses the engine's stats")
    }

    #[test]
    fn folds_as_the_docker_cli_does() {
        // One CPU-second out of 2 s of machine time (both CPUs' time summed): 100 % of one CPU.
        let s = fold(&doc(1_500_000_000, 500_000_000));
        assert_eq!(s.cpu_percent, 100.0);
        assert_eq!(s.mem_usage, (4u64 << 20) as f64);
        assert_eq!(s.mem_limit, (64u64 << 20) as f64);
        assert_eq!((s.net_rx, s.net_tx), (100.0, 50.0));
        assert_eq!((s.block_read, s.block_write), (4096.0, 8192.0));
        assert_eq!(s.pids, 3.0);
        assert_eq!(fold(&doc(7, 7)).cpu_percent, 0.0);
    }
}
