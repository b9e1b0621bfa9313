//! Published ports, host side: a TCP listener on the host for each port a running container
//! publishes (`-p`), opened before the container starts (so a port in use fails the start and
//! leaves nothing running) and closed when it stops. Each accepted connection is one raw
//! stream to the agent's forward port over the hybrid vsock socket, led by one line naming the
//! container and its port, then bytes both ways (see the agent's `service::forward`).
//!
//! Listeners are host resources, so they live here; which containers run is the agent's to
//! say, and [`reconcile`] follows it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use berth_agent_proto::forward::{self, Kind};

/// One published port: what the container exposes and where the host listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub container_port: u16,
    pub proto: String,
    /// As the user asked: empty means the default address.
    pub host_ip: String,
    /// 0 means any free port.
    pub host_port: u16,
}

impl Binding {
    /// Docker's name of the container side: `80/tcp`.
    pub fn spec(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
}

/// The bindings a document asks for (HostConfig.PortBindings, dockerd's
/// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`), ranges already expanded by the client.
/// With PublishAllPorts (`-P`), every exposed port without a binding gets a free host port.
pub fn wanted(inspect: &Value) -> Result<Vec<Binding>, String> {
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let map = inspect["HostConfig"]["PortBindings"]
        .as_object()
        .unwrap_or(&empty);
    if inspect["HostConfig"]["PublishAllPorts"].as_bool() == Some(true)
        && let Some(exposed) = inspect["Config"]["ExposedPorts"].as_object()
    {
        for key in exposed.keys().filter(|k| !map.contains_key(*k)) {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            out.push(Binding {
                container_port: port
                    .parse()
                    .map_err(|_| format!("invalid exposed port {key}"))?,
                proto: proto.to_owned(),
                host_ip: String::new(),
                host_port: 0,
            });
        }
    }
    for (key, list) in map {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let container_port: u16 = port
            .parse()
            .map_err(|_| format!("invalid container port {key}"))?;
        for b in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            let host_port = match b["HostPort"].as_str().unwrap_or("") {
                "" => 0,
                p => p.parse().map_err(|_| format!("invalid host port {p}"))?,
            };
            out.push(Binding {
                container_port,
                proto: proto.to_owned(),
                host_ip: b["HostIp"].as_str().unwrap_or("").to_owned(),
                host_port,
            });
        }
    }
    out.sort_by_key(|b| (b.container_port, b.host_port));
    Ok(out)
}

struct Open {
    binding: Binding,
    /// Where it listens (or listened, while switched off).
    addr: std::net::SocketAddr,
    /// None while the user switched it off.
    task: Option<tokio::task::AbortHandle>,
    name: String,
    vsock: PathBuf,
}

/// The open listeners, by container ID, and the ports the user switched off (kept in
/// `ports-off.json` in the Berth home, so the choice survives an engine restart).
#[derive(Clone, Default)]
pub struct Ports {
    open: Arc<Mutex<HashMap<String, Vec<Open>>>>,
    /// Containers whose ports are open while their start is under way: reconcile leaves them.
    starting: Arc<Mutex<std::collections::HashSet<String>>>,
    off_file: Option<PathBuf>,
}

/// One published port as `berth port list` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PortView {
    pub container: String,
    pub name: String,
    pub port: String,
    pub host_ip: String,
    pub host_port: u16,
    pub enabled: bool,
}

/// Why `ports-off.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PortsOffError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is corrupt ({source}); fix or remove it (removing it switches every published port back on)"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("saving {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads `ports-off.json`: a JSON array of `<container id>/<port>/<proto>` keys. Missing means
/// none switched off; anything else that is not such an array is an error.
pub fn load_switched_off(file: &Path) -> Result<Vec<String>, PortsOffError> {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PortsOffError::Read {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&data).map_err(|source| PortsOffError::Corrupt {
        path: file.to_path_buf(),
        source,
    })
}

/// Writes `ports-off.json` through [`crate::paths::write_private_atomic`].
pub fn save_switched_off(file: &Path, keys: &[String]) -> Result<(), PortsOffError> {
    let data = serde_json::to_vec(keys).expect("a list of strings serializes");
    crate::paths::write_private_atomic(file, &data).map_err(|source| PortsOffError::Write {
        path: file.to_path_buf(),
        source,
    })
}

fn off_key(id: &str, b: &Binding) -> String {
    format!("{id}/{}", b.spec())
}

impl Ports {
    pub fn new(off_file: PathBuf) -> Self {
        Ports {
            open: Arc::default(),
            starting: Arc::default(),
            off_file: Some(off_file),
        }
    }

    /// The ports the user switched off. A missing file means none; an unreadable or corrupt
    /// one is an error (logged here, returned to the caller), never "all ports on".
    fn switched_off(&self) -> Result<Vec<String>, String> {
        let Some(file) = &self.off_file else {
            return Ok(Vec::new());
        };
        load_switched_off(file).map_err(|e| {
            tracing::error!("{e}");
            e.to_string()
        })
    }

    /// Replaces `ports-off.json` atomically and durably, 0600.
    fn save_switched_off(&self, keys: &[String]) -> Result<(), String> {
        let Some(file) = &self.off_file else {
            return Ok(());
        };
        save_switched_off(file, keys).map_err(|e| {
            tracing::error!("{e}");
            e.to_string()
        })
    }

    /// Every published port of running containers, switched on or off.
    pub fn list(&self) -> Vec<PortView> {
        let open = self.open.lock().unwrap();
        let mut out: Vec<PortView> = open
            .iter()
            .flat_map(|(id, list)| {
                list.iter().map(move |o| PortView {
                    container: id.clone(),
                    name: o.name.clone(),
                    port: o.binding.spec(),
                    host_ip: o.addr.ip().to_string(),
                    host_port: o.addr.port(),
                    enabled: o.task.is_some(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.port).cmp(&(&b.name, &b.port)));
        out
    }

    /// Switches the host listener of container `id`'s `port` (`80` or `80/tcp`) off or on,
    /// leaving the container as it is.
    pub async fn set_enabled(&self, id: &str, port: &str, on: bool) -> Result<(), String> {
        let port = if port.contains('/') {
            port.to_owned()
        } else {
            format!("{port}/tcp")
        };
        // A corrupt record is an error before anything changes.
        let mut off = self.switched_off()?;
        let (key, rebind) = {
            let mut open = self.open.lock().unwrap();
            let o = open
                .get_mut(id)
                .and_then(|list| list.iter_mut().find(|o| o.binding.spec() == port))
                .ok_or_else(|| format!("container {id} publishes no port {port}"))?;
            let key = off_key(id, &o.binding);
            match (on, o.task.take()) {
                (false, Some(task)) => {
                    task.abort();
                    (key, None)
                }
                (false, None) => (key, None),
                (true, Some(task)) => {
                    o.task = Some(task);
                    (key, None)
                }
                (true, None) => (key, Some((o.addr, o.vsock.clone(), o.binding.clone()))),
            }
        };
        if let Some((addr, vsock, binding)) = rebind {
            let (_, task) = listen(&binding, addr, vsock, id)
                .await
                .map_err(|e| format!("listening on {addr} again: {e}"))?;
            let mut open = self.open.lock().unwrap();
            if let Some(o) = open
                .get_mut(id)
                .and_then(|l| l.iter_mut().find(|o| o.binding.spec() == port))
            {
                o.task = Some(task);
            } else {
                task.abort();
            }
        }
        off.retain(|k| *k != key);
        if !on {
            off.push(key);
        }
        self.save_switched_off(&off)
    }

    /// Binds every TCP binding of container `id` (its full ID); if one cannot be bound, none
    /// stays bound and the error is dockerd's. A container already open is left as it is.
    pub async fn open(
        &self,
        id: &str,
        name: &str,
        bindings: Vec<Binding>,
        vsock: PathBuf,
        expose_on_lan: bool,
    ) -> Result<(), String> {
        if self.open.lock().unwrap().contains_key(id) {
            return Ok(());
        }
        let off = self.switched_off()?;
        let mut opened = Vec::new();
        for b in bindings {
            if b.proto != "tcp" && b.proto != "udp" {
                tracing::warn!(
                    id,
                    port = b.container_port,
                    proto = b.proto,
                    "only TCP and UDP ports are published"
                );
                continue;
            }
            let ip = match b.host_ip.as_str() {
                "" if expose_on_lan => "0.0.0.0",
                "" => "127.0.0.1",
                ip => ip,
            };
            if off.contains(&off_key(id, &b)) {
                // Switched off by the user: shown, not listening.
                let addr = std::net::SocketAddr::new(
                    ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                    b.host_port,
                );
                opened.push(Open {
                    binding: b,
                    addr,
                    task: None,
                    name: name.to_owned(),
                    vsock: vsock.clone(),
                });
                continue;
            }
            let want = std::net::SocketAddr::new(
                ip.parse()
                    .map_err(|_| format!("invalid host IP {ip} for port {}", b.spec()))?,
                b.host_port,
            );
            let (addr, task) = match listen(&b, want, vsock.clone(), id).await {
                Ok(l) => l,
                Err(e) => {
                    for o in opened {
                        let o: Open = o;
                        if let Some(t) = o.task {
                            t.abort();
                        }
                    }
                    let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                        "port is already allocated".to_owned()
                    } else {
                        e.to_string()
                    };
                    return Err(format!(
                        "driver failed programming external connectivity on endpoint {name} ({id}): Bind for {ip}:{} failed: {why}",
                        b.host_port
                    ));
                }
            };
            opened.push(Open {
                binding: b,
                addr,
                task: Some(task),
                name: name.to_owned(),
                vsock: vsock.clone(),
            });
        }
        self.open.lock().unwrap().insert(id.to_owned(), opened);
        Ok(())
    }

    /// Marks container `id` as starting (its ports open before it runs), or no longer.
    pub fn set_starting(&self, id: &str, starting: bool) {
        let mut set = self.starting.lock().unwrap();
        if starting {
            set.insert(id.to_owned());
        } else {
            set.remove(id);
        }
    }

    /// Closes the listeners of container `id`.
    pub fn close(&self, id: &str) {
        if let Some(list) = self.open.lock().unwrap().remove(id) {
            for o in list.into_iter().filter_map(|o| o.task) {
                o.abort();
            }
        }
    }

    pub fn close_all(&self) {
        let ids: Vec<String> = self.open.lock().unwrap().keys().cloned().collect();
        for id in ids {
            self.close(&id);
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.open.lock().unwrap().keys().cloned().collect()
    }

    /// NetworkSettings.Ports for container `id`: `{"80/tcp": [{"HostIp", "HostPort"}]}`.
    pub fn network_settings(&self, id: &str) -> Option<Value> {
        let open = self.open.lock().unwrap();
        let list = open.get(id)?;
        let mut map = serde_json::Map::new();
        for o in list {
            let key = o.binding.spec();
            let entry = map.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(json!({ "HostIp": o.addr.ip().to_string(), "HostPort": o.addr.port().to_string() }));
            }
        }
        Some(Value::Object(map))
    }

    /// The `Ports` of a container list entry for container `id`.
    pub fn summary(&self, id: &str) -> Option<Value> {
        let open = self.open.lock().unwrap();
        let list = open.get(id)?;
        Some(Value::Array(
            list.iter()
                .map(|o| {
                    json!({
                        "IP": o.addr.ip().to_string(),
                        "PrivatePort": o.binding.container_port,
                        "PublicPort": o.addr.port(),
                        "Type": o.binding.proto,
                    })
                })
                .collect(),
        ))
    }
}

/// Binds `addr` for binding `b` and serves it in a task: TCP connections or UDP peers, each
/// relayed through the agent. Returns the bound address (a random port resolved).
async fn listen(
    b: &Binding,
    addr: std::net::SocketAddr,
    vsock: PathBuf,
    id: &str,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::AbortHandle)> {
    let port = b.container_port;
    if b.proto == "udp" {
        let sock = tokio::net::UdpSocket::bind(addr).await?;
        let bound = sock.local_addr()?;
        let task = tokio::spawn(crate::ports_udp::serve(sock, vsock, id.to_owned(), port));
        return Ok((bound, task.abort_handle()));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, vsock, id.to_owned(), port));
    Ok((bound, task.abort_handle()))
}

async fn accept_loop(listener: tokio::net::TcpListener, vsock: PathBuf, id: String, port: u16) {
    let mut backoff = crate::limits::AcceptBackoff::new("a published port");
    loop {
        let (conn, peer) = backoff.retry(|| listener.accept()).await;
        let (vsock, id) = (vsock.clone(), id.clone());
        tokio::spawn(async move {
            if let Err(e) = forward(conn, &vsock, &id, port, Target::Address).await {
                tracing::debug!(%peer, id, port, "port forward: {e}");
            }
        });
    }
}

/// Which of the container's addresses a forwarded connection reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Its address on its first network, as dockerd's published ports reach it.
    Address,
    /// Its loopback, inside its namespace (`berth port-forward`).
    Loopback,
}

/// Opens a forward stream to the agent: sends the request line and waits for its `OK`.
pub(crate) async fn open_stream(
    vsock: &Path,
    kind: Kind,
    id: &str,
    port: u16,
) -> std::io::Result<tokio::net::UnixStream> {
    // A burst of connections can overrun the agent's accept backlog (the guest may be slow to
    // accept, under emulation): the host side tries again for a while, as a SYN would be resent.
    let mut stream =
        crate::agent::connect_with_deadline(vsock, forward::PORT, Duration::from_secs(20))
            .await
            .map_err(std::io::Error::other)?;
    stream
        .write_all(forward::request(kind, id, port).as_bytes())
        .await?;
    let answer = crate::agent::read_line_raw(&mut stream, 4096)
        .await?
        .unwrap_or_default();
    let answer = String::from_utf8_lossy(&answer);
    if answer.trim() != "OK" {
        // Nothing listens there in the container: the client sees the connection close.
        return Err(std::io::Error::other(answer.trim().to_owned()));
    }
    Ok(stream)
}

/// One host connection to the container's port through the agent.
pub async fn forward(
    mut conn: tokio::net::TcpStream,
    vsock: &Path,
    id: &str,
    port: u16,
    target: Target,
) -> std::io::Result<()> {
    let kind = match target {
        Target::Address => Kind::Tcp,
        Target::Loopback => Kind::TcpLoopback,
    };
    let stream = open_stream(vsock, kind, id, port).await?;
    // Until the container's side ends (the agent then closes the stream); the client's end of
    // input only half-closes towards the container.
    let (mut agent_r, mut agent_w) = tokio::io::split(stream);
    let (mut client_r, mut client_w) = conn.split();
    let inbound = async {
        let _ = tokio::io::copy(&mut client_r, &mut agent_w).await;
        let _ = agent_w.shutdown().await;
        std::future::pending::<()>().await
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut agent_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
    Ok(())
}

/// Makes the listeners match the running containers: closes those of containers no longer
/// running, opens those of running ones not open yet (after an engine restart, or a restart
/// policy bringing a container back).
pub async fn reconcile(sup: &crate::vm::Supervisor) {
    use berth_agent_proto::v1::ContainerRef;
    let Ok(agent) = sup.agent() else {
        sup.ports().close_all();
        return;
    };
    let Some(rows) = agent.running_containers().await else {
        return;
    };
    let running: Vec<String> = rows
        .iter()
        .filter(|r| r["State"] == "running" || r["State"] == "paused")
        .filter_map(|r| r["Id"].as_str().map(str::to_owned))
        .collect();
    let starting = sup.ports().starting.lock().unwrap().clone();
    for id in sup.ports().ids() {
        if !running.contains(&id) && !starting.contains(&id) {
            sup.ports().close(&id);
        }
    }
    let expose = sup
        .settings()
        .map(|s| s.expose_ports_on_lan)
        .unwrap_or(false);
    for id in running {
        if sup.ports().ids().contains(&id) {
            continue;
        }
        let Ok(doc) = agent
            .containers()
            .inspect(ContainerRef { id: id.clone() })
            .await
        else {
            continue;
        };
        let doc: Value = serde_json::from_slice(&doc.into_inner().json).unwrap_or_default();
        let bindings = match sup.paths().published().bindings(&id, &doc) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(id, "publishing ports: {e}");
                continue;
            }
        };
        if bindings.is_empty() {
            continue;
        }
        let name = doc["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned();
        if let Err(e) = sup
            .ports()
            .open(&id, &name, bindings, sup.paths().vsock_socket(), expose)
            .await
        {
            tracing::warn!(id, "publishing ports: {e}");
        }
    }
}

/// Drops the host's records of published ports for containers the agent no longer has
/// (removed with `--rm`, pruned, or gone with the data disk).
async fn sweep_published(sup: &crate::vm::Supervisor) {
    let Ok(agent) = sup.agent() else { return };
    let Ok(list) = agent
        .containers()
        .list(berth_agent_proto::v1::ListContainersRequest {
            all: true,
            size: false,
        })
        .await
    else {
        return;
    };
    let rows: Vec<Value> = serde_json::from_slice(&list.into_inner().json).unwrap_or_default();
    let existing = rows
        .iter()
        .filter_map(|r| r["Id"].as_str().map(str::to_owned))
        .collect();
    sup.paths().published().sweep(&existing);
}

/// Follows the agent's container events and reconciles on each start and stop, for as long as
/// the engine runs (across VM restarts).
pub async fn follow_events(sup: crate::vm::Supervisor) {
    use berth_agent_proto::v1::EventsRequest;
    use tokio_stream::StreamExt;
    loop {
        reconcile(&sup).await;
        sweep_published(&sup).await;
        if let Ok(agent) = sup.agent()
            && let Ok(stream) = agent
                .containers()
                .events(EventsRequest {
                    since_ns: 0,
                    until_ns: 0,
                })
                .await
        {
            let mut stream = stream.into_inner();
            while let Some(Ok(ev)) = stream.next().await {
                let ev: Value = serde_json::from_slice(&ev.json).unwrap_or_default();
                if ev["Type"] == "container"
                    && ev["Action"] == "destroy"
                    && let Some(id) = ev["Actor"]["ID"].as_str()
                {
                    sup.paths().published().forget(id);
                }
                if ev["Type"] == "container"
                    && matches!(
                        ev["Action"].as_str(),
                        // `stop` and `kill` come with or before `die`.
                        Some("start" | "die" | "destroy")
                    )
                {
                    reconcile(&sup).await;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_from_dockers_port_map() {
        let doc = json!({"HostConfig": {"PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "0.0.0.0", "HostPort": ""}],
            "53/udp": [{"HostIp": "", "HostPort": "5353"}]
        }}});
        let b = wanted(&doc).unwrap();
        assert_eq!(b.len(), 3);
        assert!(b.contains(&Binding {
            container_port: 80,
            proto: "tcp".into(),
            host_ip: String::new(),
            host_port: 8080
        }));
        assert!(b.iter().any(|b| b.host_port == 0 && b.host_ip == "0.0.0.0"));
        assert!(wanted(&json!({"HostConfig": {}})).unwrap().is_empty());
        // -P: exposed ports without a binding get a free host port.
        let all = json!({"HostConfig": {"PublishAllPorts": true, "PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
            "Config": {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}}});
        let b = wanted(&all).unwrap();
        assert_eq!(b.len(), 2);
        assert!(
            b.iter()
                .any(|b| b.container_port == 443 && b.host_port == 0)
        );
        assert!(wanted(&json!({"HostConfig": {"PortBindings": {"x/tcp": []}}})).is_err());
    }

    #[test]
    fn ports_off_round_trips_and_corruption_is_an_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ports-off.json");
        assert!(load_switched_off(&file).unwrap().is_empty());
        let keys = vec!["c1/80/tcp".to_owned(), "c2/53/udp".to_owned()];
        save_switched_off(&file, &keys).unwrap();
        assert_eq!(load_switched_off(&file).unwrap(), keys);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        for corrupt in ["", "[\"c1/80/tcp\"", "{}", "[1, 2]", "not json"] {
            std::fs::write(&file, corrupt).unwrap();
            assert!(
                matches!(load_switched_off(&file), Err(PortsOffError::Corrupt { .. })),
                "{corrupt:?}"
            );
        }
        assert!(matches!(
            load_switched_off(dir.path()),
            Err(PortsOffError::Read { .. })
        ));
    }

    #[tokio::test]
    async fn a_corrupt_ports_off_file_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ports-off.json");
        let ports = Ports::new(file.clone());
        let b = Binding {
            container_port: 80,
            proto: "tcp".into(),
            host_ip: String::new(),
            host_port: 0,
        };
        ports
            .open("c1", "web", vec![b.clone()], "/nonexistent".into(), false)
            .await
            .unwrap();
        std::fs::write(&file, "[\"c1/80/tc").unwrap();
        let err = ports
            .open("c2", "web", vec![b], "/nonexistent".into(), false)
            .await
            .unwrap_err();
        assert!(
            err.contains("ports-off.json") && err.contains("corrupt"),
            "{err}"
        );
        assert_eq!(ports.ids(), ["c1"]);
        // Switching a port off does not overwrite the file with what it could not read.
        let err = ports.set_enabled("c1", "80", false).await.unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"[\"c1/80/tc");
        ports.close_all();
    }

    #[tokio::test]
    async fn a_port_in_use_fails_with_dockerds_words_and_binds_nothing() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let ports = Ports::default();
        let free = Binding {
            container_port: 81,
            proto: "tcp".into(),
            host_ip: String::new(),
            host_port: 0,
        };
        let busy = Binding {
            container_port: 80,
            proto: "tcp".into(),
            host_ip: String::new(),
            host_port: port,
        };
        let err = ports
            .open("c1", "web", vec![free, busy], "/nonexistent".into(), false)
            .await
            .unwrap_err();
        assert!(err.contains("port is already allocated"), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(ports.ids().is_empty());
        let ok = Binding {
            container_port: 80,
            proto: "tcp".into(),
            host_ip: String::new(),
            host_port: 0,
        };
        ports
            .open("c2", "web", vec![ok], "/nonexistent".into(), false)
            .await
            .unwrap();
        let ns = ports.network_settings("c2").unwrap();
        assert_eq!(ns["80/tcp"][0]["HostIp"], "127.0.0.1");
        assert_ne!(ns["80/tcp"][0]["HostPort"], "0");
        ports.close("c2");
        assert!(ports.summary("c2").is_none());
    }
}
