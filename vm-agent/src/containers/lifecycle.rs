//! The container verbs: create (merge the image's config under Docker's create body), start
//! (overlay rootfs, OCI spec, shim), stop (StopSignal, then SIGKILL after the timeout), kill,
//! remove, wait. Each verb refreshes the state from disk, checks it allows the verb, then acts.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use bollard_stubs::models::{ContainerConfig, HostConfig};
use nix::sys::signal::Signal;

use super::spec::{self, build_spec, write_spec};
use super::{ContainerError, ContainerRecord, ContainerStore, CreateBody, State, Status, io};
use crate::clock;
use crate::images::docker::image_config;
use crate::images::store::ImageStore;

/// Docker's default stop timeout.
const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// Merges the image's defaults under the create body, as dockerd does: Env by key, the image's
/// Cmd only when the body sets neither Cmd nor Entrypoint.
fn merge(body: &ContainerConfig, image: &bollard_stubs::models::ImageConfig) -> ContainerConfig {
    let mut merged = body.clone();
    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    for e in body.env.clone().unwrap_or_default() {
        let key = e.split('=').next().unwrap_or("").to_owned();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    merged.env = Some(env);
    if body.entrypoint.is_none() {
        merged.entrypoint = image.entrypoint.clone();
        if body.cmd.is_none() {
            merged.cmd = image.cmd.clone();
        }
    }
    if body.working_dir.as_deref().unwrap_or("").is_empty() {
        merged.working_dir = image.working_dir.clone();
    }
    if body.user.as_deref().unwrap_or("").is_empty() {
        merged.user = image.user.clone();
    }
    if body.healthcheck.is_none() {
        merged.healthcheck = image.healthcheck.clone();
    }
    if body.stop_signal.is_none() {
        merged.stop_signal = image.stop_signal.clone();
    }
    // The image's VOLUMEs join the body's, as dockerd merges them.
    if let Some(from_image) = image.volumes.clone() {
        let mut vols = from_image;
        vols.extend(merged.volumes.take().unwrap_or_default());
        merged.volumes = Some(vols);
    }
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(body.labels.clone().unwrap_or_default());
    merged.labels = Some(labels);
    // The image's EXPOSE and the body's --expose/-p ports together, as dockerd merges them.
    if let Some(from_image) = image.exposed_ports.clone() {
        let mut ports = from_image;
        ports.extend(merged.exposed_ports.take().unwrap_or_default());
        merged.exposed_ports = Some(ports);
    }
    merged
}

pub fn create(
    store: &ContainerStore,
    images: &ImageStore,
    name: &str,
    body: CreateBody,
) -> Result<String, ContainerError> {
    let image_name = body.config.image.clone().unwrap_or_default();
    if image_name.is_empty() {
        return Err(ContainerError::Invalid("config.Image must be set".into()));
    }
    let image = images
        .resolve(&image_name)
        .map_err(|_| ContainerError::NotFound(format!("No such image: {image_name}")))?;
    let image_cfg =
        image_config(images, &image).map_err(|e| ContainerError::Failed(e.to_string()))?;
    let (config, argv, mut mounts) = check_create(&body, &image_cfg)?;
    let host_config = body.host_config.clone().unwrap_or_default();
    if let Some(lc) = &host_config.log_config {
        super::logs::check_driver(lc.typ.as_deref().unwrap_or(""))
            .map_err(ContainerError::Invalid)?;
        super::logs::Rotation::from_options(lc.config.as_ref())
            .map_err(|e| ContainerError::Invalid(format!("invalid log options: {e}")))?;
    }
    let mode = crate::net::network_mode(&host_config);
    let endpoints = body
        .networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.clone())
        .unwrap_or_default();
    let networks = crate::net::networks_for_create(&mode, &endpoints).map_err(net_error)?;
    let (id, name) = store.allocate(name)?;
    let mut host_config = host_config;
    if let Some(links) = host_config.links.as_deref().filter(|l| !l.is_empty()) {
        match super::links::normalize(store, &name, links) {
            Ok(links) => host_config.links = Some(links),
            Err(e) => {
                let _ = std::fs::remove_dir_all(store.dir(&id));
                return Err(e);
            }
        }
    }
    if let Some(volumes) = crate::volumes::get()
        && let Err(e) = super::volumes::create_volumes(volumes, &mut mounts)
    {
        let _ = std::fs::remove_dir_all(store.dir(&id));
        return Err(e);
    }
    let mut config = config;
    config.image = Some(image_name.clone());
    if config.hostname.as_deref().unwrap_or("").is_empty() {
        config.hostname = Some(id[..12].to_owned());
    }
    let rec = ContainerRecord {
        id: id.clone(),
        name,
        created: clock::now(),
        image_id: image.id.clone(),
        image: image_name,
        path: argv[0].clone(),
        args: argv[1..].to_vec(),
        config,
        host_config,
        layers: image.layers.clone(),
        networks,
        mounts,
    };
    store.save_record(&rec)?;
    store.save_state(&id, &State::default())?;
    event(&rec, "create", &[]);
    Ok(id)
}

/// Checks a create body against the image's defaults the way start will use them, so bad
/// values fail at create: the merged config, the command line and the mounts. Touches nothing
/// (the fuzz target for request bodies drives it).
pub fn check_create(
    body: &CreateBody,
    image_cfg: &bollard_stubs::models::ImageConfig,
) -> Result<
    (
        ContainerConfig,
        Vec<String>,
        Vec<super::volumes::MountPoint>,
    ),
    ContainerError,
> {
    let config = merge(&body.config, image_cfg);
    let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    argv.extend(config.cmd.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(ContainerError::Invalid("no command specified".into()));
    }
    let host_config = body.host_config.clone().unwrap_or_default();
    if let Some(rp) = &host_config.restart_policy
        && host_config.auto_remove == Some(true)
        && rp
            .name
            .as_ref()
            .is_some_and(|n| !matches!(n.to_string().as_str(), "" | "no"))
    {
        return Err(ContainerError::Invalid(
            "conflicting options: cannot specify both --restart and --rm".into(),
        ));
    }
    // Check the host config the way start will use it, so bad values fail at create.
    spec_config(&config, &host_config, &argv).and_then(|c| {
        build_spec(&c, Path::new("/nonexistent"), "/berth/check")
            .map(|_| ())
            .or_else(|e| match e {
                // The rootfs is not mounted yet: users resolve at start.
                spec::SpecError::UnknownUser(_)
                | spec::SpecError::UnknownGroup(_)
                | spec::SpecError::InvalidRootfs(_)
                | spec::SpecError::Io { .. } => Ok(()),
                e => Err(ContainerError::Invalid(e.to_string())),
            })
    })?;
    let mounts = super::volumes::parse_all(&config, &host_config)?;
    // --add-host and --dns values are checked now, not at the first start.
    crate::net::files::hosts(
        "",
        None,
        &host_config.extra_hosts.clone().unwrap_or_default(),
    )
    .map_err(ContainerError::Invalid)?;
    crate::net::files::resolv_conf(
        "",
        None,
        &host_config.dns.clone().unwrap_or_default(),
        &[],
        &[],
    )
    .map_err(ContainerError::Invalid)?;
    Ok((config, argv, mounts))
}

/// The attributes dockerd gives container events: labels, image and name.
fn event_attributes(rec: &ContainerRecord) -> BTreeMap<String, String> {
    let mut attrs: BTreeMap<String, String> = rec
        .config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    attrs.insert("image".into(), rec.image.clone());
    attrs.insert("name".into(), rec.name.clone());
    attrs
}

/// Sends a container event.
pub fn event(rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
    let mut attrs = event_attributes(rec);
    for (k, v) in extra {
        attrs.insert((*k).to_owned(), v.clone());
    }
    crate::events::emit("container", action, &rec.id, attrs);
}

/// A network error as a container error, keeping dockerd's status.
pub fn net_error(e: crate::net::NetError) -> ContainerError {
    use crate::net::NetError as N;
    match e {
        N::NotFound(m) => ContainerError::NotFound(m),
        N::Conflict(m) | N::Forbidden(m) => ContainerError::Conflict(m),
        N::Invalid(m) => ContainerError::Invalid(m),
        N::Failed(m) => ContainerError::Failed(m),
    }
}

/// Sends `oom` and `die` for the container's latest exit, once per exit, and takes the
/// container off its networks.
pub fn note_exit(store: &ContainerStore, id: &str) {
    let st = store.state(id);
    if st.status == Status::Exited
        && let Some(nets) = crate::net::get()
    {
        nets.detach(id, &store.dir(id));
    }
    if st.status != Status::Exited || st.exits == 0 || !crate::events::first_report(id, st.exits) {
        return;
    }
    let Ok(rec) = store.record(id) else { return };
    if st.oom_killed {
        event(&rec, "oom", &[]);
    }
    event(&rec, "die", &[("exitCode", st.exit_code.to_string())]);
}

/// The spec module's view of a container.
/// Whether a `PidMode`/`IpcMode`/`UTSMode` asks for the VM's namespace; other modes than
/// dockerd's defaults and `host` are refused by name.
fn host_namespace(what: &str, mode: Option<&str>, own: &[&str]) -> Result<bool, ContainerError> {
    match mode.unwrap_or("") {
        "host" => Ok(true),
        m if own.contains(&m) => Ok(false),
        m => Err(ContainerError::Invalid(format!(
            "{what} mode {m:?} is not supported by Berth (the default or \"host\" are)"
        ))),
    }
}

pub(super) fn spec_config(
    config: &ContainerConfig,
    hc: &HostConfig,
    argv: &[String],
) -> Result<spec::ContainerConfig, ContainerError> {
    let host_pid = host_namespace("pid", hc.pid_mode.as_deref(), &[""])?;
    // dockerd's default IPC mode is "private" ("shareable" on older daemons).
    let host_ipc = host_namespace("ipc", hc.ipc_mode.as_deref(), &["", "private", "shareable"])?;
    let host_uts = host_namespace("uts", hc.uts_mode.as_deref(), &[""])?;
    Ok(spec::ContainerConfig {
        host_pid,
        host_ipc,
        host_uts,
        args: argv.to_vec(),
        env: config.env.clone().unwrap_or_default(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        user: config.user.clone().unwrap_or_default(),
        group_add: hc.group_add.clone().unwrap_or_default(),
        hostname: config.hostname.clone().unwrap_or_default(),
        tty: config.tty.unwrap_or(false),
        console_size: super::terminal::console_size(hc.console_size.as_ref())
            .map(|(h, w)| (u32::from(h), u32::from(w))),
        privileged: hc.privileged.unwrap_or(false),
        cap_add: hc.cap_add.clone().unwrap_or_default(),
        cap_drop: hc.cap_drop.clone().unwrap_or_default(),
        readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
        security_opt: hc.security_opt.clone().unwrap_or_default(),
        memory: hc.memory.unwrap_or(0),
        memory_swap: hc.memory_swap.unwrap_or(0),
        nano_cpus: hc.nano_cpus.unwrap_or(0),
        cpu_shares: hc.cpu_shares.unwrap_or(0),
        pids_limit: hc.pids_limit.unwrap_or(0),
        tmpfs: hc.tmpfs.clone().unwrap_or_default().into_iter().collect(),
        shm_size: hc.shm_size.unwrap_or(0),
        ulimits: hc
            .ulimits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                (
                    u.name.unwrap_or_default(),
                    u.soft.unwrap_or(0),
                    u.hard.unwrap_or(0),
                )
            })
            .collect(),
        init: hc.init.unwrap_or(false),
        init_path: "/sbin/berth-init".into(),
        oom_score_adj: hc.oom_score_adj.map(|v| v as i32),
        netns: None,
        etc_files: Vec::new(),
        binds: Vec::new(),
    })
}

fn rootfs_mounted(dir: &Path) -> bool {
    let target = dir.join("rootfs");
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*target.to_string_lossy()))
}

/// Mounts the container's overlay rootfs unless it is mounted (it stays mounted until the
/// container is removed).
pub fn mount_rootfs(
    store: &ContainerStore,
    images: &ImageStore,
    rec: &ContainerRecord,
) -> Result<(), ContainerError> {
    let dir = store.dir(&rec.id);
    if rootfs_mounted(&dir) {
        return Ok(());
    }
    for sub in ["rootfs", "upper", "work"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io("preparing the rootfs"))?;
    }
    let lower: Vec<String> = rec
        .layers
        .iter()
        .rev()
        .map(|l| images.snapshot_dir(l).join("fs").display().to_string())
        .collect();
    if lower.is_empty() {
        return Err(ContainerError::Failed("the image has no layers".into()));
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &dir.join("rootfs"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| ContainerError::Failed(format!("mounting the container's rootfs: {e}")))
}

pub fn unmount_rootfs(dir: &Path) {
    if rootfs_mounted(dir) {
        let _ = nix::mount::umount2(&dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Whether the shim recorded in `state` still lives (so `running` is true).
pub fn shim_alive(state: &State, id: &str) -> bool {
    state.shim_pid != 0
        && std::fs::read(format!("/proc/{}/cmdline", state.shim_pid))
            .is_ok_and(|c| c.windows(id.len()).any(|w| w == id.as_bytes()))
}

/// The state, corrected when the VM restarted under a "running" container.
pub fn refresh(store: &ContainerStore, id: &str) -> State {
    let mut st = store.state(id);
    if st.status.is_live() && !shim_alive(&st, id) {
        st.status = Status::Exited;
        st.exit_code = 255;
        st.pid = 0;
        st.finished_at = clock::now();
        st.exits += 1;
        let _ = store.save_state(id, &st);
    }
    st
}

/// Starts the container, and its healthcheck when it has one.
pub fn start(
    store: &std::sync::Arc<ContainerStore>,
    images: &ImageStore,
    key: &str,
) -> Result<(), ContainerError> {
    let id = store.resolve(key)?;
    let result = start_resolved(store, images, &id);
    // As dockerd: an AutoRemove container that could not start goes away, whatever stopped it
    // (the client waits for its removal). A restart policy never comes with AutoRemove, so the
    // restart monitor, which holds the container's lock, never gets here.
    if result
        .as_ref()
        .is_err_and(|e| !matches!(e, ContainerError::NotModified(_)))
        && store
            .record(&id)
            .is_ok_and(|rec| rec.host_config.auto_remove == Some(true))
    {
        let _ = remove(store, &id, true, true);
    }
    result
}

fn start_resolved(
    store: &std::sync::Arc<ContainerStore>,
    images: &ImageStore,
    id: &str,
) -> Result<(), ContainerError> {
    let id = id.to_owned();
    let st = refresh(store, &id);
    if st.status == Status::Running || st.status == Status::Paused {
        return Err(ContainerError::NotModified(
            "container already started".into(),
        ));
    }
    let rec = store.record(&id)?;
    let dir = store.dir(&id);
    mount_rootfs(store, images, &rec)?;
    let mut argv = vec![rec.path.clone()];
    argv.extend(rec.args.iter().cloned());
    let mut cfg = spec_config(&rec.config, &rec.host_config, &argv)?;
    if let Some(volumes) = crate::volumes::get() {
        for p in super::volumes::prepare(&id, volumes, &rec.mounts, &dir.join("rootfs"))? {
            match p {
                super::volumes::Prepared::Bind(source, destination, readonly, propagation) => {
                    cfg.binds.push(spec::BindMount {
                        source,
                        destination,
                        readonly,
                        propagation,
                    })
                }
                super::volumes::Prepared::Tmpfs(dest, opts) => cfg.tmpfs.push((dest, opts)),
            }
        }
    }
    if let Some(nets) = crate::net::get() {
        // Legacy links add the children's variables and names, on the default bridge only.
        let mut rec = rec.clone();
        if crate::net::network_mode(&rec.host_config) == "bridge" {
            let linked =
                super::links::resolve(store, &rec, &|child| nets.address_on(child, "bridge"))?;
            for e in linked.env {
                let key = e.split('=').next().unwrap_or_default();
                if !cfg.env.iter().any(|own| own.split('=').next() == Some(key)) {
                    cfg.env.push(e);
                }
            }
            let mut hosts = linked.hosts;
            hosts.extend(rec.host_config.extra_hosts.take().unwrap_or_default());
            rec.host_config.extra_hosts = Some(hosts);
        }
        let plan = nets.attach(&rec, &dir).map_err(net_error)?;
        cfg.netns = Some(plan.netns.unwrap_or_default());
        cfg.etc_files = plan.etc_files;
    }
    let detach = || {
        if let Some(nets) = crate::net::get() {
            nets.detach(&id, &dir);
        }
    };
    let spec = match build_spec(&cfg, &dir.join("rootfs"), &format!("/berth/{id}")) {
        Ok(spec) => spec,
        Err(e) => {
            detach();
            return Err(ContainerError::Invalid(e.to_string()));
        }
    };
    std::fs::create_dir_all(dir.join("bundle")).map_err(io("creating the bundle"))?;
    write_spec(&spec, &dir.join("bundle")).map_err(|e| ContainerError::Failed(e.to_string()))?;
    let Err(msg) = super::shim::launch(&dir, &id) else {
        event(&rec, "start", &[]);
        super::health::spawn(store.clone(), id);
        return Ok(());
    };
    detach();
    // As dockerd: the exit code says why the process never ran.
    let code = if msg.contains("executable file not found") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        128
    };
    let mut st = store.state(&id);
    st.exit_code = code;
    st.error = msg.clone();
    let _ = store.save_state(&id, &st);
    Err(if code == 128 {
        ContainerError::Failed(msg)
    } else {
        ContainerError::Invalid(msg)
    })
}

/// Parses `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| ContainerError::Invalid(format!("Invalid signal: {s}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| ContainerError::Invalid(format!("Invalid signal: {s}")))
}

fn signal_pid(st: &State, sig: Signal) -> Result<(), ContainerError> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid as i32), sig)
        .map_err(|e| ContainerError::Failed(format!("signalling the container: {e}")))
}

fn mark_stopped_by_user(store: &ContainerStore, id: &str) {
    let mut st = store.state(id);
    st.stopped_by_user = true;
    let _ = store.save_state(id, &st);
}

/// Waits until the container is no longer running; false on timeout.
fn wait_exit(store: &ContainerStore, id: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let st = refresh(store, id);
        if !st.status.is_live() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `by_user` is false when the VM's shutdown stops the container: restart policies then still
/// bring it back at the next boot.
pub fn stop(
    store: &ContainerStore,
    key: &str,
    timeout: Option<i64>,
    signal: &str,
    by_user: bool,
) -> Result<(), ContainerError> {
    let id = store.resolve(key)?;
    let st = refresh(store, &id);
    if st.status != Status::Running && st.status != Status::Paused {
        return Err(ContainerError::NotModified(
            "container already stopped".into(),
        ));
    }
    let rec = store.record(&id)?;
    if by_user {
        mark_stopped_by_user(store, &id);
    }
    let sig = if signal.is_empty() {
        parse_signal(rec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?
    } else {
        parse_signal(signal)?
    };
    let timeout = timeout
        .or(rec.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    if st.status == Status::Paused {
        let _ = super::shim::crun_resume(&id);
    }
    tracing::info!(
        id,
        pid = st.pid,
        ?sig,
        timeout,
        by_user,
        "stopping a container"
    );
    if timeout != 0 {
        event(&rec, "kill", &[("signal", (sig as i32).to_string())]);
        if let Err(e) = signal_pid(&st, sig) {
            tracing::warn!(id, "stop signal: {e}");
        }
    }
    let grace = if timeout < 0 {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(timeout as u64)
    };
    if !wait_exit(store, &id, grace) {
        tracing::info!(id, "still running after {timeout}s: SIGKILL");
        event(&rec, "kill", &[("signal", "9".into())]);
        let _ = signal_pid(&st, Signal::SIGKILL);
        if !wait_exit(store, &id, Duration::from_secs(30)) {
            return Err(ContainerError::Failed(format!(
                "container {id} did not stop"
            )));
        }
    }
    note_exit(store, &id);
    event(&rec, "stop", &[]);
    Ok(())
}

pub fn kill(store: &ContainerStore, key: &str, signal: &str) -> Result<(), ContainerError> {
    let id = store.resolve(key)?;
    let st = refresh(store, &id);
    if st.status != Status::Running {
        return Err(ContainerError::Conflict(format!(
            "Container {id} is not running"
        )));
    }
    let sig = if signal.is_empty() {
        Signal::SIGKILL
    } else {
        parse_signal(signal)?
    };
    if matches!(sig, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT) {
        mark_stopped_by_user(store, &id);
    }
    let rec = store.record(&id)?;
    event(&rec, "kill", &[("signal", (sig as i32).to_string())]);
    signal_pid(&st, sig)?;
    if sig == Signal::SIGKILL {
        wait_exit(store, &id, Duration::from_secs(30));
        note_exit(store, &id);
    }
    Ok(())
}

pub fn pause(store: &ContainerStore, key: &str, freeze: bool) -> Result<(), ContainerError> {
    let id = store.resolve(key)?;
    let mut st = refresh(store, &id);
    match (st.status, freeze) {
        (Status::Running, true) => {
            super::shim::crun_pause(&id).map_err(ContainerError::Failed)?;
            st.status = Status::Paused;
        }
        (Status::Paused, false) => {
            super::shim::crun_resume(&id).map_err(ContainerError::Failed)?;
            st.status = Status::Running;
        }
        (Status::Paused, true) => {
            return Err(ContainerError::Conflict(format!(
                "Container {id} is already paused"
            )));
        }
        (Status::Running, false) => {
            return Err(ContainerError::Conflict(format!(
                "Container {id} is not paused"
            )));
        }
        _ => {
            return Err(ContainerError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
    }
    store.save_state(&id, &st)?;
    let rec = store.record(&id)?;
    event(&rec, if freeze { "pause" } else { "unpause" }, &[]);
    Ok(())
}

/// Whether the restart policy in `hc` brings back a container that exited with `st`.
pub fn restarts_after(hc: &HostConfig, st: &State) -> bool {
    if st.stopped_by_user {
        return false;
    }
    let Some(policy) = hc.restart_policy.as_ref() else {
        return false;
    };
    let max = policy.maximum_retry_count.unwrap_or(0);
    match policy.name.as_ref().map(|n| n.to_string()).as_deref() {
        Some("always" | "unless-stopped") => true,
        Some("on-failure") => st.exit_code != 0 && (max <= 0 || (st.restart_count as i64) < max),
        _ => false,
    }
}

/// `volumes` also removes the container's anonymous volumes (`docker rm -v`); an `--rm`
/// container's go with it anyway, as dockerd does.
pub fn remove(
    store: &ContainerStore,
    key: &str,
    force: bool,
    volumes: bool,
) -> Result<(), ContainerError> {
    let id = store.resolve(key)?;
    let lock = store.op_lock(&id);
    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
    let st = refresh(store, &id);
    if st.status == Status::Exited
        && !force
        && store
            .record(&id)
            .is_ok_and(|rec| restarts_after(&rec.host_config, &st))
    {
        // Between an exit and its restart dockerd calls the container restarting.
        return Err(ContainerError::Conflict(format!(
            "You cannot remove a restarting container {id}. Stop the container before attempting removal or force remove"
        )));
    }
    if st.status.is_live() {
        if !force {
            return Err(ContainerError::Conflict(format!(
                "cannot remove container \"{id}\": container is running: stop the container before removing or force remove"
            )));
        }
        mark_stopped_by_user(store, &id);
        let _ = signal_pid(&st, Signal::SIGKILL);
        wait_exit(store, &id, Duration::from_secs(30));
    }
    // A forced removal also cancels a restart that was due.
    mark_stopped_by_user(store, &id);
    note_exit(store, &id);
    let rec = store.record(&id)?;
    let dir = store.dir(&id);
    if let Some(nets) = crate::net::get() {
        nets.detach(&id, &dir);
    }
    unmount_rootfs(&dir);
    super::binds::unstage(&id);
    store.delete(&id)?;
    if (volumes || rec.host_config.auto_remove == Some(true))
        && let Some(vs) = crate::volumes::get()
    {
        super::volumes::remove_anonymous(vs, store, &rec);
    }
    crate::events::forget(&id);
    event(&rec, "destroy", &[]);
    Ok(())
}

/// Waits for `condition` (`not-running`, `next-exit`, `removed`); returns the exit code.
pub fn wait(store: &ContainerStore, key: &str, condition: &str) -> Result<i64, ContainerError> {
    let id = store.resolve(key)?;
    let first = refresh(store, &id);
    let mut last_code = first.exit_code;
    loop {
        let exists = store.dir(&id).join("config.json").exists();
        if !exists {
            return if condition == "removed" {
                Ok(store.removed_exit_code(&id).unwrap_or(last_code))
            } else {
                Err(ContainerError::NotFound(id))
            };
        }
        let st = refresh(store, &id);
        last_code = st.exit_code;
        let done = match condition {
            "next-exit" => st.exits > first.exits,
            "removed" => false,
            _ => !st.status.is_live(),
        };
        if done {
            note_exit(store, &id);
            return Ok(st.exit_code);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::ImageConfig;

    #[test]
    fn create_body_wins_over_image_defaults() {
        let image = ImageConfig {
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            cmd: Some(vec!["sh".into()]),
            working_dir: Some("/srv".into()),
            user: Some("app".into()),
            ..Default::default()
        };
        let body = ContainerConfig {
            env: Some(vec!["A=body".into(), "B=2".into()]),
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        let m = merge(&body, &image);
        assert_eq!(m.env.unwrap(), vec!["PATH=/bin", "A=body", "B=2"]);
        assert_eq!(m.cmd, None, "an entrypoint drops the image's cmd");
        assert_eq!(m.working_dir.as_deref(), Some("/srv"));
        assert_eq!(m.user.as_deref(), Some("app"));
        let m = merge(&ContainerConfig::default(), &image);
        assert_eq!(m.cmd.unwrap(), vec!["sh"]);
        let image = ImageConfig {
            volumes: Some([("/data".to_owned(), Default::default())].into()),
            ..image
        };
        let body = ContainerConfig {
            volumes: Some([("/logs".to_owned(), Default::default())].into()),
            ..Default::default()
        };
        let vols = merge(&body, &image).volumes.unwrap();
        assert!(vols.contains_key("/data") && vols.contains_key("/logs"));
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
