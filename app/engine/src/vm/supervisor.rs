//! The VM supervisor: takes the home's lock, starts the VM through its backend, waits for the
//! agent, watches the VM process and the agent's health, and stops the VM cleanly (agent
//! shutdown, then SIGKILL after a grace period). Owns the VM's processes; every state change
//! goes through the state machine in [`super::state`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::lock::{VmLock, kill_leftovers};
use super::state::{BootTimes, VmState, VmStatus};
use super::{GuestImage, VmConfig, VmError, backend};
use crate::agent::AgentClient;
use crate::host::{self, Accel, BackendKind, BackendPick};
use crate::paths::{self, Paths};
use crate::settings::{BackendChoice, Settings};

/// How long the agent may take to answer after the VM process starts, unless
/// `BERTH_BOOT_TIMEOUT` (seconds) says otherwise: a machine that emulates its hardware
/// virtualization (nested, or under TCG) boots many times slower than one with it.
const BOOT_DEADLINE: Duration = Duration::from_secs(90);

fn boot_deadline() -> Duration {
    std::env::var("BERTH_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(BOOT_DEADLINE, Duration::from_secs)
}
/// How long a clean shutdown may take before the VM is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 30;

/// Settings from the engine's command line; they win over settings.json.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub backend: Option<crate::settings::BackendChoice>,
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub expose_ports_on_lan: bool,
}

/// What one successful boot measured.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    pub backend: BackendKind,
    pub accel: Accel,
    pub backend_reason: String,
    pub boot: BootTimes,
    pub kernel: String,
    pub agent_version: String,
    pub image_size_bytes: u64,
    pub clock_offset_ms: i64,
    /// Why `auto` fell back from the builtin VMM to qemu, when it did.
    pub fallback: Option<String>,
}

struct Control {
    agent: AgentClient,
    /// The host directories this VM shares.
    shares: Vec<PathBuf>,
    kill: mpsc::Sender<()>,
    exited: watch::Receiver<bool>,
}

/// Runs at most one VM for one `BERTH_HOME`. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    paths: Paths,
    image_dir: PathBuf,
    overrides: Arc<Overrides>,
    status: watch::Sender<VmStatus>,
    control: Arc<Mutex<Option<Control>>>,
    /// Serializes start and stop.
    op: Arc<tokio::sync::Mutex<()>>,
    /// Host listeners of published ports.
    ports: crate::ports::Ports,
}

impl Supervisor {
    pub fn new(paths: Paths) -> Self {
        let ports = crate::ports::Ports::new(paths.ports_off());
        Supervisor {
            paths,
            image_dir: paths::guest_image_dir(),
            overrides: Arc::new(Overrides::default()),
            status: watch::Sender::new(VmStatus::default()),
            control: Arc::new(Mutex::new(None)),
            op: Arc::new(tokio::sync::Mutex::new(())),
            ports,
        }
    }

    /// The host listeners of published ports.
    pub fn ports(&self) -> &crate::ports::Ports {
        &self.ports
    }

    /// Settings given on the engine's command line, over settings.json.
    pub fn with_overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = Arc::new(overrides);
        self
    }

    /// settings.json with the command line's overrides applied.
    pub fn settings(&self) -> Result<Settings, VmError> {
        let mut s = Settings::load(&self.paths.settings())?;
        let o = &self.overrides;
        if let Some(b) = o.backend {
            s.backend = b;
        }
        s.registry_mirrors
            .extend(o.registry_mirrors.iter().cloned());
        s.insecure_registries
            .extend(o.insecure_registries.iter().cloned());
        s.expose_ports_on_lan |= o.expose_ports_on_lan;
        Ok(s)
    }

    /// Boots from the guest image in `dir` instead of the one [`paths::guest_image_dir`] finds.
    pub fn with_image_dir(mut self, dir: PathBuf) -> Self {
        self.image_dir = dir;
        self
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn status(&self) -> VmStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<VmStatus> {
        self.status.subscribe()
    }

    /// The agent of the running VM.
    pub fn agent(&self) -> Result<AgentClient, VmError> {
        match (self.status().state, self.control.lock().unwrap().as_ref()) {
            (VmState::Running, Some(c)) => Ok(c.agent.clone()),
            _ => Err(VmError::NotRunning),
        }
    }

    /// The host directories the running VM shares (none while it is down): where bind mounts
    /// may come from.
    pub fn shares(&self) -> Vec<PathBuf> {
        self.control
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.shares.clone())
            .unwrap_or_default()
    }

    /// Moves to `next` if the state machine allows it; `update` fills in the rest.
    fn transition(
        &self,
        next: VmState,
        verb: &'static str,
        update: impl FnOnce(&mut VmStatus),
    ) -> Result<(), VmError> {
        let mut result = Ok(());
        self.status.send_modify(|s| {
            if s.state.can_become(next) {
                s.state = next;
                update(s);
            } else {
                result = Err(VmError::InvalidTransition(s.state, verb));
            }
        });
        if result.is_ok() {
            tracing::info!(state = %next, "vm state");
        }
        result
    }

    fn fail(&self, reason: String, log_tail: String) {
        let _ = self.transition(VmState::Failed, "failing", |s| {
            s.reason = Some(reason);
            s.log_tail = Some(log_tail);
            s.healthy = false;
            s.pid = None;
        });
    }

    /// Boots the VM and waits until the agent answers.
    pub async fn start(&self) -> Result<BootReport, VmError> {
        let _op = self.op.lock().await;
        self.transition(VmState::Starting, "start", |s| {
            *s = VmStatus {
                state: VmState::Starting,
                ..VmStatus::default()
            }
        })?;
        match self.boot().await {
            Ok(report) => Ok(report),
            Err(e) => {
                let tail = match &e {
                    VmError::Boot { log_tail, .. } => log_tail.clone(),
                    _ => super::log_tail(
                        &self.paths.serial_log(),
                        &self.paths.vmm_log(),
                        LOG_TAIL_LINES,
                    ),
                };
                self.fail(e.to_string(), tail);
                Err(e)
            }
        }
    }

    /// Boots on the backend the settings pick. When `auto` picked the builtin VMM and it did
    /// not reach agent-ready, boots once more on qemu with KVM and says why; an explicit
    /// `builtin` gets the failure instead.
    async fn boot(&self) -> Result<BootReport, VmError> {
        self.paths.ensure()?;
        let settings = self.settings()?;
        let kvm = host::probe_kvm();
        let pick = host::pick_backend(settings.backend, &kvm)?;
        let auto_builtin =
            pick.kind == BackendKind::Builtin && settings.backend == BackendChoice::Auto;
        match self.boot_on(&settings, pick).await {
            Err(e @ (VmError::Boot { .. } | VmError::Spawn { .. })) if auto_builtin => {
                let why = e.to_string();
                tracing::warn!("{why}; falling back to qemu with KVM");
                let failed_tail = match &e {
                    VmError::Boot { log_tail, .. } => log_tail.clone(),
                    _ => String::new(),
                };
                let fallback = BackendPick {
                    kind: BackendKind::Qemu,
                    accel: Accel::Kvm,
                    reason: format!(
                        "auto: the builtin VMM did not boot ({why}), so qemu with KVM runs the guest"
                    ),
                };
                self.status.send_modify(|s| {
                    s.fallback = Some(why.clone());
                    s.log_tail = Some(failed_tail);
                });
                let mut report = self.boot_on(&settings, fallback).await?;
                report.fallback = Some(why);
                Ok(report)
            }
            other => other,
        }
    }

    async fn boot_on(&self, settings: &Settings, pick: BackendPick) -> Result<BootReport, VmError> {
        let t0 = Instant::now();
        let image = GuestImage::locate(&self.image_dir)?;
        let lock = VmLock::acquire(&self.paths)?;
        kill_leftovers(&self.paths);
        // Entropy and the agent key for the guest, where only its init reads them. The key
        // is also left 0600 beside the vsock socket, for whoever dials the guest.
        let key = berth_agent_proto::auth::Key::generate()
            .map_err(VmError::io("making the agent key".to_owned()))?;
        crate::paths::write_private_atomic(&self.paths.agent_key(), key.as_bytes()).map_err(
            VmError::io(format!("writing {}", self.paths.agent_key().display())),
        )?;
        let mut image = image;
        image.initramfs = super::seed::boot_initramfs(
            &self.paths,
            &image.initramfs,
            &super::seed::fresh()?,
            &key,
        )?;
        let hidden = crate::shares::hidden(&self.paths);
        let shares = crate::shares::effective(&settings.shared_paths, &hidden);
        let config = VmConfig {
            paths: self.paths.clone(),
            image: image.clone(),
            cpus: settings.cpus,
            memory_mib: settings.memory_mib,
            disk_gib: settings.disk_gib,
            accel: pick.accel,
            extra_cmdline: vec![
                // The resolver address passt relays to the host's (see vm::net).
                format!("berth.dns={}", super::net::DNS_ADDR),
            ]
            .into_iter()
            // The user's cap on one decompression in the guest (see the agent's `space`).
            .chain(
                (settings.max_layer_mib > 0)
                    .then(|| format!("berth.max_layer_mib={}", settings.max_layer_mib)),
            )
            .chain(guest_cmdline_extra())
            .collect(),
            shares,
        };
        let mut vm = backend(pick.kind).start(&config)?;
        // The agent's hello arrives at `<vsock>_1027`, bound as soon as the backend has cleared
        // stale sockets (the guest is seconds from saying it; it also retries).
        let hello_socket = PathBuf::from(format!(
            "{}_{}",
            vm.vsock_socket.display(),
            berth_agent_proto::READY_PORT
        ));
        let hello = tokio::net::UnixListener::bind(&hello_socket).map_err(VmError::io(format!(
            "listening on {}",
            hello_socket.display()
        )))?;
        // Registry traffic from the guest arrives at `<vsock>_1025`.
        let proxy_socket = PathBuf::from(format!(
            "{}_{}",
            vm.vsock_socket.display(),
            crate::proxy::PROXY_PORT
        ));
        let proxy = crate::proxy::spawn(&proxy_socket, key)
            .map_err(VmError::io(format!("serving {}", proxy_socket.display())))?;
        let vm_process_ms = t0.elapsed().as_millis() as u64;
        let pid = vm.pid();
        self.status.send_modify(|s| {
            s.backend = Some(pick.kind);
            s.accel = Some(pick.accel);
            s.pid = pid;
        });

        let (kill_tx, mut kill_rx) = mpsc::channel::<()>(1);
        let (exited_tx, mut exited_rx) = watch::channel(false);
        let agent = AgentClient::new(vm.vsock_socket.clone(), Duration::from_secs(5));
        *self.control.lock().unwrap() = Some(Control {
            agent: agent.clone(),
            shares: vm.shares.clone(),
            kill: kill_tx,
            exited: exited_rx.clone(),
        });
        // The VM's logs stay bounded while it runs.
        let trimmer = super::logtrim::spawn(vec![self.paths.serial_log(), self.paths.vmm_log()]);
        // The monitor owns the processes and the lock until the VM has exited.
        let monitor = self.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = vm.wait() => status,
                _ = kill_rx.recv() => { vm.kill(); vm.wait().await }
            };
            let tail = vm.log_tail(LOG_TAIL_LINES);
            proxy.abort();
            trimmer.abort();
            let _ = std::fs::remove_file(monitor.paths.agent_key());
            drop(lock);
            let _ = exited_tx.send(true);
            let what = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::info!(%what, "vm process exited");
            if monitor.status().state == VmState::Running {
                monitor.fail(format!("the VM process exited unexpectedly ({what})"), tail);
            }
        });

        let deadline = boot_deadline();
        let ready = tokio::select! {
            r = async {
                tokio::time::timeout(deadline, hello.accept())
                    .await
                    .map_err(|_| format!("the agent did not say hello within {deadline:?}"))?
                    .map_err(|e| format!("waiting for the agent's hello: {e}"))?;
                agent
                    .wait_ready(deadline.saturating_sub(t0.elapsed()))
                    .await
                    .map_err(|e| e.to_string())
            } => r,
            _ = exited_rx.wait_for(|e| *e) => Err("the VM process exited during boot".to_owned()),
        };
        drop(hello);
        let _ = std::fs::remove_file(&hello_socket);
        let agent_version = match ready {
            Ok(v) => v,
            Err(reason) => {
                self.kill_and_wait().await;
                let log_tail = super::log_tail(
                    &self.paths.serial_log(),
                    &self.paths.vmm_log(),
                    LOG_TAIL_LINES,
                );
                if log_tail.contains("Failed to get \"write\" lock") {
                    return Err(VmError::DiskInUse {
                        disk: self.paths.data_disk(),
                    });
                }
                let serial = super::logtrim::tail_bytes(&self.paths.serial_log(), 1 << 20);
                let reason = match guest_death(&String::from_utf8_lossy(&serial)) {
                    Some(death) => format!("{reason}: {death}"),
                    None => reason,
                };
                return Err(VmError::Boot {
                    reason: format!("{} backend: {reason}", pick.kind),
                    log_tail,
                });
            }
        };
        let agent_ready_ms = t0.elapsed().as_millis() as u64;
        let info = agent.info().await?;
        let info_at_ms = t0.elapsed().as_millis() as u64;
        let clock_offset_ms = agent.sync_time().await? / 1_000_000;
        // The guest's boot clock started when the kernel did.
        let kernel_up_ms = info_at_ms.saturating_sub(info.uptime_ms);
        let boot = BootTimes {
            vm_process_ms,
            kernel_up_ms,
            init_up_ms: kernel_up_ms + info.init_started_ms,
            agent_ready_ms,
        };
        for problem in &info.init_problems {
            tracing::warn!(problem, "guest init");
        }
        let report = BootReport {
            backend: pick.kind,
            accel: pick.accel,
            backend_reason: pick.reason,
            boot: boot.clone(),
            kernel: info.kernel_release.clone(),
            agent_version: agent_version.clone(),
            image_size_bytes: image.size(),
            clock_offset_ms,
            fallback: None,
        };
        self.transition(VmState::Running, "running", |s| {
            s.boot = Some(boot);
            s.kernel = Some(info.kernel_release);
            s.agent_version = Some(agent_version);
            s.healthy = true;
        })?;
        self.spawn_health_check(agent, exited_rx);
        Ok(report)
    }

    fn spawn_health_check(&self, agent: AgentClient, mut exited: watch::Receiver<bool>) {
        let sup = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
                    _ = exited.wait_for(|e| *e) => return,
                }
                let ok = tokio::time::timeout(
                    Duration::from_secs(10),
                    agent.system().ping(berth_agent_proto::v1::PingRequest {}),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                sup.status.send_if_modified(|s| {
                    let changed = s.state == VmState::Running && s.healthy != ok;
                    if changed {
                        s.healthy = ok;
                        tracing::warn!(healthy = ok, "agent health changed");
                    }
                    changed
                });
            }
        });
    }

    async fn kill_and_wait(&self) {
        let control = self.control.lock().unwrap().take();
        if let Some(c) = control {
            let _ = c.kill.send(()).await;
            let mut exited = c.exited;
            let _ = exited.wait_for(|e| *e).await;
        }
    }

    /// Shuts the VM down cleanly; kills it when the guest does not power off in time.
    pub async fn stop(&self) -> Result<(), VmError> {
        let _op = self.op.lock().await;
        if self.status().state == VmState::Failed {
            // Nothing runs any more; acknowledging the failure makes the VM Stopped.
            self.kill_and_wait().await;
            return self.transition(VmState::Stopped, "stop", |s| *s = VmStatus::default());
        }
        self.transition(VmState::Stopping, "stop", |_| {})?;
        let control = self.control.lock().unwrap().take();
        if let Some(c) = control {
            let mut exited = c.exited.clone();
            stop_containers(&c.agent).await;
            if let Err(e) = c.agent.shutdown().await {
                tracing::warn!("agent shutdown: {e}; killing the VM");
                let _ = c.kill.send(()).await;
            }
            if tokio::time::timeout(STOP_GRACE, exited.wait_for(|e| *e))
                .await
                .is_err()
            {
                tracing::warn!("the guest did not power off within {STOP_GRACE:?}; killing it");
                let _ = c.kill.send(()).await;
                let _ = exited.wait_for(|e| *e).await;
            }
        }
        self.transition(VmState::Stopped, "stopped", |s| {
            s.pid = None;
            s.healthy = false;
        })
    }
}

/// Stops every running container with its own stop signal and timeout, all at once, so their
/// processes end cleanly before the guest powers off. Restart policies still hold at the next
/// boot.
async fn stop_containers(agent: &AgentClient) {
    use berth_agent_proto::v1::StopContainerRequest;
    let Some(rows) = agent.running_containers().await else {
        return;
    };
    let mut stops = tokio::task::JoinSet::new();
    for id in rows.iter().filter_map(|r| r["Id"].as_str()) {
        let (agent, id) = (agent.clone(), id.to_owned());
        stops.spawn(async move {
            let req = StopContainerRequest {
                id: id.clone(),
                timeout: -1,
                signal: String::new(),
                for_shutdown: true,
            };
            if let Err(e) = agent.containers().stop(req).await {
                tracing::warn!(id, "stopping before shutdown: {}", e.message());
            }
        });
    }
    while stops.join_next().await.is_some() {}
}

/// Extra kernel command line words from `BERTH_GUEST_CMDLINE` (space-separated), for debugging
/// the guest (`berth.fault=init-panic` tests init's panic path).
fn guest_cmdline_extra() -> Vec<String> {
    std::env::var("BERTH_GUEST_CMDLINE")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// What killed the guest, from its serial log: init's panic message, else the kernel's panic
/// line. None when the log shows neither.
pub fn guest_death(serial: &str) -> Option<String> {
    let line_of = |needle: &str| {
        serial
            .lines()
            .rev()
            .find_map(|l| l.find(needle).map(|i| l[i..].trim().to_owned()))
    };
    line_of(berth_agent_proto::INIT_PANIC_PREFIX)
        .map(|p| format!("the guest's init died: {p}"))
        .or_else(|| line_of("Kernel panic - not syncing:"))
}
