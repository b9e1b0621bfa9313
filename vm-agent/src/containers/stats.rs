//! `docker stats`: one sample of a running container's cgroup v2 counters (CPU, memory, pids,
//! block I/O) in the shape of Docker's stats JSON. Reads files only.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// `key value` lines (cpu.stat, memory.stat) as a map.
fn kv(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A number, or `fallback` for "max" or an unreadable file.
fn limit(text: &str, fallback: u64) -> u64 {
    text.trim().parse().unwrap_or(fallback)
}

/// Total CPU time of the machine in nanoseconds, from /proc/stat (USER_HZ is 100).
fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
                * 10_000_000
        })
        .unwrap_or(0)
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn sample(id: &str, name: &str) -> Value {
    let dir = Path::new("/sys/fs/cgroup/berth").join(id);
    let cpu = kv(&read(&dir, "cpu.stat"));
    let mem = kv(&read(&dir, "memory.stat"));
    let usage = limit(&read(&dir, "memory.current"), 0);
    let mut read_bytes = 0;
    let mut write_bytes = 0;
    for line in read(&dir, "io.stat").lines() {
        for field in line.split_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("rbytes", v)) => read_bytes += v.parse::<u64>().unwrap_or(0),
                Some(("wbytes", v)) => write_bytes += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "id": id,
        "name": format!("/{name}"),
        "read": crate::clock::now(),
        "num_procs": 0,
        "pids_stats": {
            "current": limit(&read(&dir, "pids.current"), 0),
            "limit": limit(&read(&dir, "pids.max"), u64::MAX),
        },
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu.get("usage_usec").copied().unwrap_or(0) * 1000,
                "usage_in_usermode": cpu.get("user_usec").copied().unwrap_or(0) * 1000,
                "usage_in_kernelmode": cpu.get("system_usec").copied().unwrap_or(0) * 1000,
            },
            "system_cpu_usage": system_cpu_ns(),
            "online_cpus": cpus,
            "throttling_data": {
                "periods": cpu.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": cpu.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": cpu.get("throttled_usec").copied().unwrap_or(0) * 1000,
            },
        },
        "memory_stats": {
            "usage": usage,
            "limit": limit(&read(&dir, "memory.max"), mem_total()),
            "stats": mem,
        },
        "blkio_stats": {
            "io_service_bytes_recursive": [
                { "major": 254, "minor": 0, "op": "read", "value": read_bytes },
                { "major": 254, "minor": 0, "op": "write", "value": write_bytes },
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_files() {
        let m = kv("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
        assert_eq!(m["usage_usec"], 1500);
        assert_eq!(limit("max\n", 7), 7);
        assert_eq!(limit("67108864\n", 7), 67_108_864);
    }
}
