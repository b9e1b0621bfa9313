//! `GET /info` and `GET /version`: what the engine says about itself and the VM, in the shape
//! dockerd 27 (API 1.47) gives, every field filled with an honest value (the guest's kernel,
//! CPUs and memory; Berth's own runtime, storage and registries). Reads facts, changes nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use berth_agent_proto::v1::{InfoResponse, ListContainersRequest, ListImagesRequest};
use serde_json::{Value, json};

use super::{API_VERSION, ApiVersion, MIN_API_VERSION};
use crate::vm::Supervisor;

/// The toolchain that built the engine, where dockerd says which Go built it.
pub const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");
/// The commit the engine was built from, when the build said (`BERTH_GIT_COMMIT`).
pub const GIT_COMMIT: &str = match option_env!("BERTH_GIT_COMMIT") {
    Some(c) => c,
    None => "",
};
/// The runtime that runs containers in the guest (Debian's crun; dockerd's default is runc).
pub const RUNTIME: &str = "crun";

/// The runtime names a container may ask for (`HostConfig.Runtime`): those `/info` lists.
pub const RUNTIMES: &[&str] = &[RUNTIME, "runc"];
/// Where the guest keeps images, containers and volumes (the data disk's mount point).
pub const ROOT_DIR: &str = "/var/lib/berth";

/// `2026-12-07T20:40:13.247022886Z`: Go's RFC 3339 with nanoseconds (trailing zeros dropped),
/// in UTC.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// dockerd's name for the filesystem under its storage driver (`Backing Filesystem`).
fn backing_filesystem(fs: &str) -> &str {
    match fs {
        "ext2" | "ext3" | "ext4" => "extfs",
        other => other,
    }
}

/// Open file descriptors of the engine process (dockerd's `NFd`).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Live tasks of the engine's runtime, where dockerd counts goroutines.
fn live_tasks() -> usize {
    tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks())
}

/// dockerd's `Swarm` for a node in no swarm: Berth is never in one.
pub fn inactive_swarm() -> Value {
    json!({
        "NodeID": "",
        "NodeAddr": "",
        "LocalNodeState": "inactive",
        "ControlAvailable": false,
        "Error": "",
        "RemoteManagers": null,
    })
}

/// `RegistryConfig` as dockerd builds it from its settings: Docker Hub with its mirrors, each
/// insecure registry as an index that is not secure, loopback always insecure.
fn registry_config(mirrors: &[String], insecure: &[String]) -> Value {
    let mirrors: Vec<String> = mirrors
        .iter()
        .map(|m| {
            let m = m.trim_end_matches('/');
            format!("{m}/")
        })
        .collect();
    let mut cidrs = vec!["127.0.0.0/8".to_owned()];
    let mut indexes = serde_json::Map::new();
    indexes.insert(
        "docker.io".into(),
        json!({ "Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true }),
    );
    for r in insecure {
        if r.contains('/') && r.split('/').nth(1).is_some_and(|b| b.parse::<u8>().is_ok()) {
            if !cidrs.contains(r) {
                cidrs.push(r.clone());
            }
        } else {
            indexes.insert(
                r.clone(),
                json!({ "Name": r, "Mirrors": [], "Secure": false, "Official": false }),
            );
        }
    }
    json!({
        "AllowNondistributableArtifactsCIDRs": null,
        "AllowNondistributableArtifactsHostnames": null,
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": indexes,
        "Mirrors": mirrors,
    })
}

/// Container and image counts as dockerd gives them (zero while the VM is down).
async fn counts(sup: &Supervisor) -> (usize, usize, usize, usize) {
    let (mut running, mut paused, mut stopped, mut images) = (0, 0, 0, 0);
    let Ok(agent) = sup.agent() else {
        return (0, 0, 0, 0);
    };
    if let Ok(r) = agent
        .containers()
        .list(ListContainersRequest {
            all: true,
            size: false,
        })
        .await
    {
        let list: Vec<Value> = serde_json::from_slice(&r.into_inner().json).unwrap_or_default();
        for c in &list {
            match c["State"].as_str() {
                Some("running") => running += 1,
                Some("paused") => paused += 1,
                _ => stopped += 1,
            }
        }
    }
    if let Ok(r) = agent.images().list(ListImagesRequest { all: true }).await {
        images = serde_json::from_slice::<Vec<Value>>(&r.into_inner().json).map_or(0, |l| l.len());
    }
    (running, paused, stopped, images)
}

/// The guest's facts, or `None` while the VM is down.
async fn guest(sup: &Supervisor) -> Option<InfoResponse> {
    sup.agent().ok()?.info().await.ok()
}

pub async fn info(State(sup): State<Supervisor>, version: ApiVersion) -> Json<Value> {
    let status = sup.status();
    let guest = guest(&sup).await.unwrap_or_default();
    let (running, paused, stopped, images) = counts(&sup).await;
    let settings = sup.settings().unwrap_or_default();
    let kernel = status.kernel.clone().unwrap_or_default();
    let disk_fs = guest
        .data_disk
        .as_ref()
        .map(|d| backing_filesystem(&d.filesystem).to_owned())
        .unwrap_or_default();
    let warnings: Vec<String> = guest
        .init_problems
        .iter()
        .map(|p| format!("WARNING: {p}"))
        .collect();
    let name = if guest.hostname.is_empty() {
        "berth".to_owned()
    } else {
        guest.hostname.clone()
    };
    let mut security = vec!["name=seccomp,profile=builtin", "name=cgroupns"];
    if version < ApiVersion(1, 25) {
        // Before 1.25, names only.
        security = vec!["seccomp", "cgroupns"];
    }
    let mut body = json!({
        "ID": "berth",
        "Containers": running + paused + stopped,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        // Each layer is an overlayfs lower directory on the data disk.
        "Driver": "overlay2",
        "DriverStatus": if disk_fs.is_empty() {
            Value::Null
        } else {
            json!([["Backing Filesystem", disk_fs]])
        },
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        // What the agent applies through cgroup v2: memory and swap, CPUs (quota and
        // period), shares and pids. `CpusetCpus` is not applied yet.
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": false,
        "PidsLimit": true,
        "IPv4Forwarding": true,
    });
    // In parts: one `json!` this long passes the macro recursion limit.
    let system = json!({
        // Container networks use nftables; br_netfilter is not loaded in the guest.
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "NFd": open_fds(),
        // cgroup v2 has no oom_kill_disable.
        "OomKillDisable": false,
        "NGoroutines": live_tasks(),
        "SystemTime": rfc3339_nano(SystemTime::now()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2",
        "NEventsListener": super::system::event_listeners(),
        "KernelVersion": kernel,
        "OperatingSystem": "Berth VM",
        "OSVersion": status.agent_version.clone().unwrap_or_default(),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(&settings.registry_mirrors, &settings.insecure_registries),
    });
    let daemon = json!({
        "NCPU": guest.cpus,
        "MemTotal": guest.memory_total_bytes,
        "GenericResources": null,
        "DockerRootDir": ROOT_DIR,
        // Registry traffic leaves through the host's network directly, through no proxy.
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": name,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": crate::VERSION,
        // `runc`, the name clients ask for by habit, runs on crun too (same CLI, same spec).
        "Runtimes": { RUNTIME: { "path": RUNTIME }, "runc": { "path": RUNTIME } },
        "DefaultRuntime": RUNTIME,
        "Swarm": inactive_swarm(),
        // Stopping the engine stops the VM and its containers.
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "berth-init",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": security,
        "CDISpecDirs": [],
        "Warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
    });
    let fields = body.as_object_mut().expect("an object");
    for part in [system, daemon] {
        if let Value::Object(m) = part {
            fields.extend(m);
        }
    }
    if version < ApiVersion(1, 39) {
        for k in ["KernelVersion", "OperatingSystem"] {
            if body[k].as_str() == Some("") {
                body[k] = json!("<unknown>");
            }
        }
    }
    Json(body)
}

pub async fn version(State(sup): State<Supervisor>) -> Json<Value> {
    let status = sup.status();
    let kernel = status.kernel.clone().unwrap_or_default();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut engine = json!({
        "ApiVersion": API_VERSION,
        "Arch": arch,
        "Experimental": "false",
        "GitCommit": GIT_COMMIT,
        "GoVersion": RUSTC_VERSION,
        "KernelVersion": kernel,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    });
    let mut vm = json!({ "State": status.state.to_string() });
    if let Some(backend) = status.backend {
        vm["Backend"] = json!(backend.to_string());
    }
    let mut body = json!({
        "Platform": { "Name": "Berth" },
        "Components": [
            { "Name": "Engine", "Version": crate::VERSION, "Details": engine.take() },
            {
                "Name": "Berth VM",
                "Version": status.agent_version.clone().unwrap_or_default(),
                "Details": vm,
            },
        ],
        "Version": crate::VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": GIT_COMMIT,
        "GoVersion": RUSTC_VERSION,
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": kernel,
    });
    if let Some(t) = option_env!("BERTH_BUILD_TIME") {
        body["BuildTime"] = json!(t);
        body["Components"][0]["Details"]["BuildTime"] = json!(t);
    }
    Json(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_read_as_go_writes_them() {
        let at = |s: u64, n: u32| UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(at(1_796_676_013, 247_022_886)),
            "2026-12-07T20:40:13.247022886Z"
        );
        assert_eq!(
            rfc3339_nano(at(951_782_400, 500_000_000)),
            "2000-02-29T00:00:00.5Z"
        );
    }

    /// Through the whole router and its version prefix, with the VM down: the shapes of
    /// the client's API version.
    #[tokio::test]
    async fn answers_follow_the_clients_api_version() {
        use crate::api::{client, serve};
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::new(dir.path());
        paths.ensure().unwrap();
        let sock = paths.docker_socket();
        let listener = crate::api::bind(&sock).await.unwrap();
        tokio::spawn(serve(
            listener,
            Supervisor::new(paths),
            std::future::pending(),
        ));
        let get = |path: &'static str| client::request(&sock, "GET", path, None);

        let (status, info) = get("/v1.47/info").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(info["Swarm"], inactive_swarm());
        assert_eq!(info["SecurityOptions"][0], "name=seccomp,profile=builtin");
        assert_eq!(info["KernelVersion"], "");
        assert_eq!(info["DefaultRuntime"], RUNTIME);
        let (_, old) = get("/v1.24/info").await.unwrap();
        assert_eq!(old["SecurityOptions"], json!(["seccomp", "cgroupns"]));
        assert_eq!(old["KernelVersion"], "<unknown>");
        let (_, v) = get("/version").await.unwrap();
        assert_eq!(v["MinAPIVersion"], MIN_API_VERSION);
        assert!(
            v["GoVersion"].as_str().unwrap().starts_with("rustc "),
            "{v}"
        );
    }

    #[test]
    fn registry_config_lists_hub_mirrors_and_insecure_registries() {
        let c = registry_config(
            &["http://127.0.0.1:5000".into()],
            &["10.0.0.0/8".into(), "registry.local:5000".into()],
        );
        assert_eq!(c["Mirrors"], json!(["http://127.0.0.1:5000/"]));
        assert_eq!(
            c["IndexConfigs"]["docker.io"]["Mirrors"],
            json!(["http://127.0.0.1:5000/"])
        );
        assert_eq!(
            c["InsecureRegistryCIDRs"],
            json!(["127.0.0.0/8", "10.0.0.0/8"])
        );
        assert_eq!(
            c["IndexConfigs"]["registry.local:5000"],
            json!({"Name": "registry.local:5000", "Mirrors": [], "Secure": false, "Official": false})
        );
        assert_eq!(backing_filesystem("ext4"), "extfs");
        assert_eq!(inactive_swarm()["LocalNodeState"], "inactive");
    }
}
