//! `docker stats`: one sample of a running container's cgroup v2 counters (CPU, memory, pids,
//! block I/O, network) in the shape of Docker's stats JSON. Reads files only.

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

/// The memory.stat keys Docker's API documents for cgroup v2, and no others: clients (bollard
/// among them) parse the map strictly, so a newer kernel's extra keys would break them.
const MEMORY_V2_KEYS: [&str; 31] = [
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
];

fn memory_map(stat: &HashMap<String, u64>) -> Value {
    MEMORY_V2_KEYS
        .iter()
        .map(|k| ((*k).to_owned(), json!(stat.get(*k).copied().unwrap_or(0))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Per-interface counters from a network namespace's `/proc/<pid>/net/dev`, loopback left out,
/// in the shape of Docker's `networks` map.
fn networks(net_dev: &str) -> Value {
    let mut out = serde_json::Map::new();
    for line in net_dev.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let v: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if name == "lo" || v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_owned(),
            json!({
                "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
            }),
        );
    }
    out.into()
}

/// One sample of container `id`, whose init process is `pid` (0 when it has none).
pub fn sample(id: &str, name: &str, pid: u32) -> Value {
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
            "stats": memory_map(&mem),
        },
        "networks": networks(&if pid > 0 {
            std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default()
        } else {
            String::new()
        }),
        "storage_stats": {},
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

    #[test]
    fn memory_map_has_exactly_the_documented_keys() {
        let stat = kv("anon 4096\ninactive_file 8192\nzswap 1\nsec_pagetables 2\n");
        let map = memory_map(&stat);
        let map = map.as_object().unwrap();
        assert_eq!(map.len(), MEMORY_V2_KEYS.len());
        assert_eq!(map["anon"], 4096);
        assert_eq!(map["inactive_file"], 8192);
        assert_eq!(map["pgscan"], 0);
        assert!(!map.contains_key("zswap"));
    }

    #[test]
    fn net_dev_becomes_docker_networks() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0
";
        let n = networks(text);
        assert_eq!(n.as_object().unwrap().len(), 1);
        assert_eq!(n["eth0"]["rx_bytes"], 5000);
        assert_eq!(n["eth0"]["rx_dropped"], 2);
        assert_eq!(n["eth0"]["tx_bytes"], 3000);
        assert_eq!(n["eth0"]["tx_packets"], 30);
        assert_eq!(n["eth0"]["tx_dropped"], 4);
    }
}
