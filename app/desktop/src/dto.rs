//! What crosses to the UI: plain, typed shapes (exported to TypeScript by tauri-specta), built
//! from the Docker API's types and the engine's own. Sizes and times are `f64` so TypeScript
//! sees numbers, not bigints.

use serde::{Deserialize, Serialize};
use specta::Type;

/// The engine as the tray and the header show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Error,
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    pub state: EngineState,
    /// Why it is in this state (the error, for `error`).
    pub detail: Option<String>,
    /// The Docker socket, for `DOCKER_HOST`.
    pub socket: String,
    pub backend: Option<String>,
    /// Boot to agent ready, once running.
    pub boot_ms: Option<f64>,
    /// Why `auto` fell back from the builtin VMM to qemu, when it did.
    pub fallback: Option<String>,
}

/// One published port of a container, with its host listener's state.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PortRow {
    /// Docker's name of the container side: `80/tcp`.
    pub port: String,
    pub host_ip: String,
    pub host_port: u16,
    /// The host listener is on (see `berth port off|on`).
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image: String,
    /// created, running, paused, restarting, exited, dead.
    pub state: String,
    /// dockerd's human status: "Up 3 minutes", "Exited (0) 2 seconds ago".
    pub status: String,
    pub ports: Vec<PortRow>,
    /// Seconds since the epoch.
    pub created: f64,
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ImageRow {
    pub id: String,
    pub tags: Vec<String>,
    pub size: f64,
    /// Seconds since the epoch.
    pub created: f64,
}

/// What `pull_image` streams: per-layer progress, then the end.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PullEvent {
    /// A layer's state; `current`/`total` in bytes while downloading (0 when unknown).
    #[serde(rename_all = "camelCase")]
    Layer {
        id: String,
        status: String,
        current: f64,
        total: f64,
    },
    /// A message not about one layer ("Digest: …", "Status: …").
    Status { text: String },
}

/// A change the engine reports, so views refresh without polling.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct EngineEvent {
    /// container, image, network, volume.
    pub kind: String,
    /// start, die, destroy, pull, delete…
    pub action: String,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "lowercase")]
pub enum ContainerAction {
    Start,
    Stop,
    Restart,
    Pause,
    Unpause,
    Remove,
}

/// A port to publish when running an image.
#[derive(Debug, Clone, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// 0: any free port.
    pub host_port: u16,
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: String,
}

/// "Run" from the Images view.
#[derive(Debug, Clone, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    pub image: String,
    pub name: Option<String>,
    pub ports: Vec<PortSpec>,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// Empty: the image's own command.
    pub command: Vec<String>,
}

/// One line of a container's log.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// stdout or stderr.
    pub stream: String,
    pub text: String,
}

/// One second of a running container's resource use, as `docker stats` computes it.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct StatsSample {
    pub id: String,
    /// Percent of one CPU (up to 100 × the VM's CPUs), over the last second.
    pub cpu_percent: f64,
    /// Bytes in use, page cache that can be dropped left out (what `docker stats` shows).
    pub mem_usage: f64,
    /// The container's memory limit, or the VM's memory when it has none.
    pub mem_limit: f64,
    /// Bytes received and sent on all of the container's interfaces since it started.
    pub net_rx: f64,
    pub net_tx: f64,
    /// Bytes read and written on block devices since it started.
    pub block_read: f64,
    pub block_write: f64,
    pub pids: f64,
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRow {
    pub id: String,
    pub name: String,
    /// bridge, host, null.
    pub driver: String,
    /// The IPv4 subnet and gateway, when the network has them.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    /// bridge, host and none: always there, cannot be deleted.
    pub builtin: bool,
    /// Names of the containers attached.
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    /// Where the volume's files are inside the VM.
    pub mountpoint: String,
    /// RFC 3339.
    pub created: String,
    /// `key=value`, sorted.
    pub labels: Vec<String>,
    /// Bytes on the data disk; none when the engine did not measure it.
    pub size: Option<i64>,
    /// Made for a container's anonymous mount.
    pub anonymous: bool,
    /// Names of the containers whose mounts use it.
    pub containers: Vec<String>,
}

/// "Create volume" from the Volumes view.
#[derive(Debug, Clone, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Empty: the engine picks a random name.
    pub name: String,
    /// `key=value` each.
    pub labels: Vec<String>,
}

/// "Create network" from the Networks view.
#[derive(Debug, Clone, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    pub name: String,
    /// Empty: the engine picks a free /24.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// No route out of the VM.
    pub internal: bool,
}
