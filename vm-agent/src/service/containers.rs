//! `Containers`: the gRPC face of [`crate::containers`]. Blocking work (mounts, crun, waits)
//! runs on blocking threads; logs, attach and exec stream. Also the monitor that enforces
//! AutoRemove and restart policies, in the guest, across agent and VM restarts.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_proto::v1::{
    ArchivePutChunk, ArchiveRequest, AttachRequest, ContainerRef, CreateContainerRequest,
    CreateContainerResponse, DataChunk, Empty, EventsRequest, ExecCreateRequest,
    ExecCreateResponse, ExecRef, ExecStartRequest, JsonResponse, KillContainerRequest,
    ListContainersRequest, LogsRequest, OutputChunk, RemoveContainerRequest,
    RenameContainerRequest, ResizeRequest, StdinChunk, StopContainerRequest,
    UpdateContainerRequest, WaitContainerRequest, WaitContainerResponse,
    containers_server::Containers,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::containers::exec::{ExecEvent, Execs};
use crate::containers::{
    ContainerError, ContainerStore, CreateBody, Status as St, docker, lifecycle, logs,
};
use crate::images::store::ImageStore;

pub struct ContainersService {
    store: Arc<ContainerStore>,
    images: Arc<ImageStore>,
    execs: Arc<Execs>,
}

impl ContainersService {
    pub fn new(store: Arc<ContainerStore>, images: Arc<ImageStore>) -> Self {
        ContainersService {
            store,
            images,
            execs: Arc::new(Execs::default()),
        }
    }
}

pub fn status_of(e: ContainerError) -> Status {
    match e {
        ContainerError::NotFound(m) if m.starts_with("network ") => Status::not_found(m),
        ContainerError::NotFound(m) if m.starts_with("No such") || m.starts_with("exec") => {
            Status::not_found(if m.starts_with("exec") {
                format!("No such exec instance: {m}")
            } else {
                m
            })
        }
        ContainerError::NotFound(id) => Status::not_found(format!("No such container: {id}")),
        ContainerError::Conflict(m) => Status::failed_precondition(m),
        ContainerError::Invalid(m) => Status::invalid_argument(m),
        // The engine answers 304 Not Modified for these.
        ContainerError::NotModified(m) => Status::already_exists(m),
        e => Status::internal(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ContainerError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status_of)
}

fn json<T: serde::Serialize>(v: &T) -> Result<Response<JsonResponse>, Status> {
    Ok(Response::new(JsonResponse {
        json: serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?,
    }))
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<OutputChunk, Status>> + Send>>;
type DataStream = Pin<Box<dyn Stream<Item = Result<DataChunk, Status>> + Send>>;

fn event_json(ev: &serde_json::Value) -> JsonResponse {
    JsonResponse {
        json: serde_json::to_vec(ev).unwrap_or_default(),
    }
}

/// `berth-agent archive ...`: the helper that works chrooted in a container's rootfs.
fn archive_helper(args: &[&str]) -> tokio::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("archive")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The helper's exit status as dockerd's answer.
fn helper_status(status: &std::process::ExitStatus, stderr: &[u8], id: &str) -> Result<(), Status> {
    use crate::containers::archive::{INVALID, NOT_FOUND};
    let msg = String::from_utf8_lossy(stderr).trim().to_owned();
    match status.code() {
        Some(0) => Ok(()),
        Some(c) if c == i32::from(NOT_FOUND) => {
            Err(Status::not_found(format!("{msg} in container {id}")))
        }
        Some(c) if c == i32::from(INVALID) => Err(Status::invalid_argument(msg)),
        _ => Err(Status::internal(if msg.is_empty() {
            "the archive helper failed".to_owned()
        } else {
            msg
        })),
    }
}

/// Streams a helper's stdout as data chunks; a failure after the start ends the stream with
/// the helper's error.
fn stream_helper(
    mut cmd: tokio::process::Command,
    id: String,
) -> Result<Response<DataStream>, Status> {
    use tokio::io::AsyncReadExt;
    let mut child = cmd
        .spawn()
        .map_err(|e| Status::internal(format!("archive helper: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = DataChunk {
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                    return;
                }
            }
        }
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err).await;
        match child.wait().await {
            Ok(status) => {
                if let Err(e) = helper_status(&status, &err, &id) {
                    let _ = tx.send(Err(e)).await;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
            }
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

impl ContainersService {
    /// The container's mounted rootfs (mounted now for a container never started in this
    /// boot).
    async fn rootfs(&self, key: &str) -> Result<String, Status> {
        Ok(self.rootfs_and_binds(key).await?.0)
    }

    /// The rootfs, and the archive helper's `--bind SRC DST ro|rw` arguments for the
    /// container's volumes and bind mounts, so `docker cp` sees into them as dockerd's does.
    async fn rootfs_and_binds(&self, key: &str) -> Result<(String, Vec<String>), Status> {
        let (store, images, key) = (self.store.clone(), self.images.clone(), key.to_owned());
        blocking(move || {
            let id = store.resolve(&key)?;
            let rec = store.record(&id)?;
            lifecycle::mount_rootfs(&store, &images, &rec)?;
            let rootfs = store.dir(&id).join("rootfs").display().to_string();
            Ok((
                rootfs,
                crate::containers::volumes::archive_binds(&rec.mounts),
            ))
        })
        .await
    }
}

fn chunk(e: logs::Entry) -> OutputChunk {
    OutputChunk {
        stream: e.stream,
        data: e.data,
        time: e.time,
        exited: false,
        exit_code: 0,
    }
}

/// Adjacent entries of one stream as one: what an attached client reads as one piece of
/// output (a TTY's `hello` and `\r\n`, read by the shim apart), as dockerd passes it on.
fn merged(entries: Vec<logs::Entry>) -> Vec<logs::Entry> {
    let mut out: Vec<logs::Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.stream == e.stream => last.data.extend_from_slice(&e.data),
            _ => out.push(e),
        }
    }
    out
}

/// Follows the log from `offset` until the container has exited after `exits` (or is gone);
/// with `merge`, the entries of each look that belong to one stream go as one chunk.
fn follow(
    store: Arc<ContainerStore>,
    id: String,
    mut offset: u64,
    exits: u64,
    filter: impl Fn(&logs::Entry) -> bool + Send + 'static,
    merge: bool,
    tx: mpsc::Sender<Result<OutputChunk, Status>>,
) {
    use std::os::unix::fs::MetadataExt;
    let path = store.dir(&id).join("log.json");
    let inode = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.ino());
    let mut following = inode(&path);
    loop {
        let st = lifecycle::refresh(&store, &id);
        let gone = !store.dir(&id).join("config.json").exists();
        let done = gone || (st.exits > exits && !st.status.is_live());
        let mut entries = Vec::new();
        let now = inode(&path);
        // Rotated since the last look: another file now, or (its inode number reused by the
        // new file) one shorter than where we were.
        if now != following || logs::log_len(&path) < offset {
            // Rotated: the rest of the file being followed (now `.1`), then the new one.
            let older = logs::rotated(&path, 1);
            if following != 0 && inode(&older) == following {
                entries.extend(logs::read_from(&older, offset).0);
            }
            following = now;
            offset = 0;
        }
        let (fresh, next) = logs::read_from(&path, offset);
        entries.extend(fresh);
        offset = next;
        let mut entries: Vec<logs::Entry> = entries.into_iter().filter(|e| filter(e)).collect();
        if merge {
            entries = merged(entries);
        }
        for e in entries {
            if tx.blocking_send(Ok(chunk(e))).is_err() {
                return;
            }
        }
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn create(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let body: CreateBody = serde_json::from_slice(&req.config_json)
            .map_err(|e| Status::invalid_argument(format!("invalid create body: {e}")))?;
        let (store, images) = (self.store.clone(), self.images.clone());
        let id = blocking(move || lifecycle::create(&store, &images, &req.name, body)).await?;
        Ok(Response::new(CreateContainerResponse {
            id,
            warnings: vec![],
        }))
    }

    async fn start(&self, request: Request<ContainerRef>) -> Result<Response<Empty>, Status> {
        let id = request.into_inner().id;
        let (store, images) = (self.store.clone(), self.images.clone());
        blocking(move || lifecycle::start(&store, &images, &id)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn stop(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        let timeout = (req.timeout >= 0).then_some(i64::from(req.timeout));
        blocking(move || lifecycle::stop(&store, &req.id, timeout, &req.signal, !req.for_shutdown))
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn kill(
        &self,
        request: Request<KillContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        blocking(move || lifecycle::kill(&store, &req.id, &req.signal)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn remove(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        blocking(move || {
            if req.link.is_empty() {
                lifecycle::remove(&store, &req.id, req.force, req.volumes)
            } else {
                crate::containers::links::remove(&store, &req.id, &req.link)
            }
        })
        .await?;
        Ok(Response::new(Empty {}))
    }

    async fn rename(
        &self,
        request: Request<RenameContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        blocking(move || {
            let id = store.resolve(&req.id)?;
            let old = store.record(&id)?.name;
            store.rename(&id, &req.name)?;
            let rec = store.record(&id)?;
            lifecycle::event(&rec, "rename", &[("oldName", format!("/{old}"))]);
            Ok(())
        })
        .await?;
        Ok(Response::new(Empty {}))
    }

    async fn pause(&self, request: Request<ContainerRef>) -> Result<Response<Empty>, Status> {
        let id = request.into_inner().id;
        let store = self.store.clone();
        blocking(move || lifecycle::pause(&store, &id, true)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn unpause(&self, request: Request<ContainerRef>) -> Result<Response<Empty>, Status> {
        let id = request.into_inner().id;
        let store = self.store.clone();
        blocking(move || lifecycle::pause(&store, &id, false)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn list(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        let ListContainersRequest { all, size } = request.into_inner();
        let (store, images) = (self.store.clone(), self.images.clone());
        let rows = blocking(move || {
            let records: Vec<_> = store
                .ids()
                .into_iter()
                .filter_map(|id| store.record(&id).ok())
                .collect();
            let mut rows: Vec<(String, _)> = records
                .iter()
                .filter_map(|rec| {
                    let id = rec.id.clone();
                    let st = lifecycle::refresh(&store, &id);
                    let running = st.status.is_live();
                    if !(all || running) {
                        return None;
                    }
                    let mut row = docker::summary(rec, &st);
                    // A linked container is listed by its link names too, as dockerd does.
                    if let Some(names) = row.names.as_mut() {
                        names.extend(crate::containers::links::names_of(&records, &rec.name));
                    }
                    if st.status == St::Running
                        && let Some(h) = crate::containers::health::load(&store.dir(&id))
                        && let Some(text) = row.status.as_mut()
                    {
                        text.push_str(match h.status.as_str() {
                            "healthy" => " (healthy)",
                            "unhealthy" => " (unhealthy)",
                            _ => " (health: starting)",
                        });
                    }
                    row.network_settings =
                        Some(bollard_stubs::models::ContainerSummaryNetworkSettings {
                            networks: crate::net::docker::network_settings(
                                rec,
                                &store.dir(&id),
                                running,
                            )
                            .networks,
                        });
                    if size {
                        let rw = crate::images::pull::dir_size(&store.dir(&id).join("upper"));
                        let image = images.resolve(&rec.image_id).map_or(0, |i| i.size);
                        row.size_rw = Some(rw as i64);
                        row.size_root_fs = Some((rw + image) as i64);
                    }
                    Some((rec.created.clone(), row))
                })
                .collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0));
            Ok(rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>())
        })
        .await?;
        json(&rows)
    }

    async fn inspect(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<JsonResponse>, Status> {
        let key = request.into_inner().id;
        let store = self.store.clone();
        let doc = blocking(move || {
            let id = store.resolve(&key)?;
            let rec = store.record(&id)?;
            let st = lifecycle::refresh(&store, &id);
            Ok(docker::inspect(&store, &rec, &st))
        })
        .await?;
        json(&doc)
    }

    async fn stats(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<JsonResponse>, Status> {
        let key = request.into_inner().id;
        let store = self.store.clone();
        let doc = blocking(move || {
            let id = store.resolve(&key)?;
            let rec = store.record(&id)?;
            let st = store.state(&id);
            let pid = if st.status.is_live() { st.pid } else { 0 };
            Ok(crate::containers::stats::sample(&id, &rec.name, pid))
        })
        .await?;
        json(&doc)
    }

    async fn wait(
        &self,
        request: Request<WaitContainerRequest>,
    ) -> Result<Response<WaitContainerResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        let code = blocking(move || lifecycle::wait(&store, &req.id, &req.condition)).await?;
        Ok(Response::new(WaitContainerResponse {
            status_code: code,
            error: String::new(),
        }))
    }

    type LogsStream = ChunkStream;

    async fn logs(&self, request: Request<LogsRequest>) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        let id = {
            let store = store.clone();
            let key = req.id.clone();
            blocking(move || store.resolve(&key)).await?
        };
        let (tx, rx) = mpsc::channel(64);
        std::thread::spawn(move || {
            let path = store.dir(&id).join("log.json");
            let st = lifecycle::refresh(&store, &id);
            // Where following picks up: the end of the current file as it is now.
            let offset = logs::log_len(&path);
            let selected = if req.tail >= 0 {
                logs::tail(
                    &path,
                    (req.stdout, req.stderr, req.since, req.until),
                    req.tail as usize,
                    offset,
                )
            } else {
                logs::select(
                    logs::read_all(&path, offset),
                    req.stdout,
                    req.stderr,
                    req.since,
                    req.until,
                    -1,
                )
            };
            for e in selected {
                if tx.blocking_send(Ok(chunk(e))).is_err() {
                    return;
                }
            }
            if req.follow && matches!(st.status, St::Running | St::Paused | St::Created) {
                let (stdout, stderr, until) = (req.stdout, req.stderr, req.until);
                let filter = move |e: &logs::Entry| {
                    ((e.stream == 1 && stdout) || (e.stream == 2 && stderr))
                        && (until <= 0
                            || crate::clock::parse(&e.time).unwrap_or(0.0) < until as f64)
                };
                follow(store, id, offset, st.exits, filter, false, tx);
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type AttachStream = ChunkStream;

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        // Where the stream starts is fixed before the answer: output the client causes once
        // attached (a TTY's echo of its first keys) is never before it.
        let (id, st, offset) = {
            let store = store.clone();
            let key = req.id.clone();
            let from_start = req.logs;
            blocking(move || {
                let id = store.resolve(&key)?;
                let st = lifecycle::refresh(&store, &id);
                let path = store.dir(&id).join("log.json");
                let offset = if from_start { 0 } else { logs::log_len(&path) };
                Ok((id, st, offset))
            })
            .await?
        };
        // A stopped container may be attached to: the stream starts with its next run (the
        // docker CLI's `start -a` attaches first). Refusing is the CLI's `attach` job.
        let (tx, rx) = mpsc::channel(64);
        std::thread::spawn(move || {
            let (stdout, stderr) = (req.stdout, req.stderr);
            let filter =
                move |e: &logs::Entry| (e.stream == 1 && stdout) || (e.stream == 2 && stderr);
            follow(store, id, offset, st.exits, filter, true, tx);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn write_stdin(
        &self,
        request: Request<tonic::Streaming<StdinChunk>>,
    ) -> Result<Response<Empty>, Status> {
        use tokio::io::AsyncWriteExt;
        let mut input = request.into_inner();
        let Some(first) = input.message().await? else {
            return Ok(Response::new(Empty {}));
        };
        let store = self.store.clone();
        let key = first.id.clone();
        let (id, open) = blocking(move || {
            let id = store.resolve(&key)?;
            let rec = store.record(&id)?;
            Ok((id, rec.config.open_stdin.unwrap_or(false)))
        })
        .await?;
        if !open {
            return Err(Status::failed_precondition(format!(
                "container {id} was not created with an open stdin (-i)"
            )));
        }
        // The shim opens the socket when the container starts; input may come first.
        let sock = self.store.dir(&id).join("stdin.sock");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut conn = loop {
            match tokio::net::UnixStream::connect(&sock).await {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(Status::unavailable(format!("container stdin: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        conn.write_all(&first.data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = input.message().await? {
            if conn.write_all(&chunk.data).await.is_err() {
                break;
            }
        }
        let _ = conn.shutdown().await;
        Ok(Response::new(Empty {}))
    }

    async fn exec_create(
        &self,
        request: Request<ExecCreateRequest>,
    ) -> Result<Response<ExecCreateResponse>, Status> {
        let req = request.into_inner();
        let config = serde_json::from_slice(&req.config_json)
            .map_err(|e| Status::invalid_argument(format!("invalid exec body: {e}")))?;
        let (store, execs) = (self.store.clone(), self.execs.clone());
        let id = blocking(move || execs.create(&store, &req.container, config)).await?;
        Ok(Response::new(ExecCreateResponse { id }))
    }

    type ExecStartStream = ChunkStream;

    async fn exec_start(
        &self,
        request: Request<ExecStartRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let id = request.into_inner().id;
        self.execs.inspect(&id).map_err(status_of)?;
        let (store, execs) = (self.store.clone(), self.execs.clone());
        let (ev_tx, mut ev_rx) = mpsc::channel::<ExecEvent>(64);
        let (tx, rx) = mpsc::channel(64);
        let err_tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = execs.run(&store, &id, ev_tx) {
                let _ = err_tx.blocking_send(Err(status_of(e)));
            }
        });
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                let msg = match ev {
                    ExecEvent::Output(stream, data) => OutputChunk {
                        stream,
                        data,
                        time: crate::clock::now(),
                        exited: false,
                        exit_code: 0,
                    },
                    ExecEvent::Exited(code) => OutputChunk {
                        stream: 0,
                        data: vec![],
                        time: crate::clock::now(),
                        exited: true,
                        exit_code: code as i32,
                    },
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn write_exec_stdin(
        &self,
        request: Request<tonic::Streaming<StdinChunk>>,
    ) -> Result<Response<Empty>, Status> {
        let mut input = request.into_inner();
        let Some(first) = input.message().await? else {
            return Ok(Response::new(Empty {}));
        };
        let tx = self.execs.stdin(&first.id).map_err(status_of)?;
        let _ = tx.send(Some(first.data));
        while let Some(chunk) = input.message().await? {
            if tx.send(Some(chunk.data)).is_err() {
                break;
            }
        }
        let _ = tx.send(None);
        Ok(Response::new(Empty {}))
    }

    async fn exec_inspect(
        &self,
        request: Request<ExecRef>,
    ) -> Result<Response<JsonResponse>, Status> {
        let doc = self
            .execs
            .inspect(&request.into_inner().id)
            .map_err(status_of)?;
        json(&doc)
    }

    async fn resize(&self, request: Request<ResizeRequest>) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let (h, w) = (
            req.height.min(u16::MAX as u32) as u16,
            req.width.min(u16::MAX as u32) as u16,
        );
        if req.exec {
            self.execs.resize(&req.id, h, w).map_err(status_of)?;
        } else {
            let store = self.store.clone();
            blocking(move || {
                let id = store.resolve(&req.id)?;
                let rec = store.record(&id)?;
                let st = lifecycle::refresh(&store, &id);
                if !rec.config.tty.unwrap_or(false) || st.status != St::Running {
                    return Err(crate::containers::ContainerError::Conflict(format!(
                        "container {id} is not running with a terminal"
                    )));
                }
                crate::containers::terminal::resize_container(st.pid, h, w)
            })
            .await?;
        }
        Ok(Response::new(Empty {}))
    }

    async fn top(&self, request: Request<ContainerRef>) -> Result<Response<JsonResponse>, Status> {
        let key = request.into_inner().id;
        let store = self.store.clone();
        let doc = blocking(move || {
            let id = store.resolve(&key)?;
            let st = lifecycle::refresh(&store, &id);
            if !st.status.is_live() {
                return Err(crate::containers::ContainerError::Conflict(format!(
                    "container {id} is not running"
                )));
            }
            Ok(crate::containers::top::top(&id))
        })
        .await?;
        json(&doc)
    }

    async fn update(
        &self,
        request: Request<UpdateContainerRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        let req = request.into_inner();
        let body: serde_json::Value = serde_json::from_slice(&req.json)
            .map_err(|e| Status::invalid_argument(format!("invalid update body: {e}")))?;
        let store = self.store.clone();
        let warnings =
            blocking(move || crate::containers::update::update(&store, &req.id, &body)).await?;
        json(&serde_json::json!({ "Warnings": warnings }))
    }

    async fn changes(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<JsonResponse>, Status> {
        let key = request.into_inner().id;
        let (store, images) = (self.store.clone(), self.images.clone());
        let found = blocking(move || {
            let id = store.resolve(&key)?;
            let rec = store.record(&id)?;
            let lowers: Vec<_> = rec
                .layers
                .iter()
                .map(|l| images.snapshot_dir(l).join("fs"))
                .collect();
            crate::containers::changes::changes(&store.dir(&id).join("upper"), &lowers)
                .map_err(crate::containers::io("reading the container's changes"))
        })
        .await?;
        // dockerd answers null, not [], for a container that changed nothing.
        json(&(!found.is_empty()).then_some(found))
    }

    async fn archive_stat(
        &self,
        request: Request<ArchiveRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        let req = request.into_inner();
        let (rootfs, binds) = self.rootfs_and_binds(&req.id).await?;
        let out = archive_helper(&["stat", &rootfs, &req.path])
            .args(&binds)
            .output()
            .await
            .map_err(|e| Status::internal(format!("archive helper: {e}")))?;
        helper_status(&out.status, &out.stderr, &req.id)?;
        Ok(Response::new(JsonResponse { json: out.stdout }))
    }

    type ArchiveGetStream = DataStream;

    async fn archive_get(
        &self,
        request: Request<ArchiveRequest>,
    ) -> Result<Response<DataStream>, Status> {
        let req = request.into_inner();
        let (rootfs, binds) = self.rootfs_and_binds(&req.id).await?;
        let mut cmd = archive_helper(&["get", &rootfs, &req.path]);
        cmd.args(&binds);
        stream_helper(cmd, req.id)
    }

    type ExportStream = DataStream;

    async fn export(&self, request: Request<ContainerRef>) -> Result<Response<DataStream>, Status> {
        let key = request.into_inner().id;
        let rootfs = self.rootfs(&key).await?;
        stream_helper(archive_helper(&["export", &rootfs]), key)
    }

    async fn archive_put(
        &self,
        request: Request<tonic::Streaming<ArchivePutChunk>>,
    ) -> Result<Response<Empty>, Status> {
        use tokio::io::AsyncWriteExt;
        let mut input = request.into_inner();
        let Some(first) = input.message().await? else {
            return Err(Status::invalid_argument("no archive"));
        };
        let (rootfs, binds) = self.rootfs_and_binds(&first.id).await?;
        let mut args = vec!["put", rootfs.as_str(), first.path.as_str()];
        if first.copy_uid_gid {
            args.push("--keep-owners");
        }
        let mut child = archive_helper(&args)
            .args(&binds)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Status::internal(format!("archive helper: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut data = first.data;
        loop {
            if !data.is_empty() && stdin.write_all(&data).await.is_err() {
                // The helper stopped reading: its status says why.
                break;
            }
            match input.message().await? {
                Some(c) => data = c.data,
                None => break,
            }
        }
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Status::internal(format!("archive helper: {e}")))?;
        helper_status(&out.status, &out.stderr, &first.id)?;
        Ok(Response::new(Empty {}))
    }

    type EventsStream = Pin<Box<dyn Stream<Item = Result<JsonResponse, Status>> + Send>>;

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let EventsRequest { since_ns, until_ns } = request.into_inner();
        let (past, mut live) = crate::events::subscribe(since_ns);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let in_range = |t: i64| until_ns <= 0 || t <= until_ns;
            for (t, ev) in past {
                if !in_range(t) {
                    return;
                }
                if tx.send(Ok(event_json(&ev))).await.is_err() {
                    return;
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            let end = if until_ns > 0 {
                if until_ns <= now {
                    return;
                }
                tokio::time::Instant::now() + Duration::from_nanos((until_ns - now) as u64)
            } else {
                tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400)
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(end) => return,
                    _ = tx.closed() => return,
                    ev = live.recv() => match ev {
                        Ok((t, ev)) if t >= since_ns => {
                            if tx.send(Ok(event_json(&ev))).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Enforces AutoRemove and restart policies. On the agent's first start in a boot, containers
/// whose policy says so come back up (the VM restarted under them).
pub fn spawn_monitor(store: Arc<ContainerStore>, images: Arc<ImageStore>, first_start: bool) {
    std::thread::spawn(move || {
        let mut handled: HashMap<String, u64> = HashMap::new();
        for id in store.ids() {
            let st = lifecycle::refresh(&store, &id);
            handled.insert(id.clone(), if first_start { 0 } else { st.exits });
            // A restarted agent picks up the checks of what still runs.
            if st.status.is_live() {
                crate::containers::health::spawn(store.clone(), id.clone());
            }
        }
        loop {
            for id in store.ids() {
                let st = lifecycle::refresh(&store, &id);
                // A container first seen now was created after the monitor started: every
                // exit of it is new.
                let seen = handled.entry(id.clone()).or_insert(0);
                if st.status != St::Exited || st.exits <= *seen {
                    continue;
                }
                *seen = st.exits;
                lifecycle::note_exit(&store, &id);
                let Ok(rec) = store.record(&id) else { continue };
                if rec.host_config.auto_remove == Some(true) {
                    if let Err(e) = lifecycle::remove(&store, &id, true, true) {
                        tracing::warn!(id, "auto-remove: {e}");
                    }
                    continue;
                }
                // Decided again under the container's lock: a removal may have come first.
                let lock = store.op_lock(&id);
                let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
                let st = store.state(&id);
                let Ok(rec) = store.record(&id) else { continue };
                if lifecycle::restarts_after(&rec.host_config, &st) {
                    let mut next = st.clone();
                    next.restart_count += 1;
                    let _ = store.save_state(&id, &next);
                    if let Err(e) = lifecycle::start(&store, &images, &id) {
                        tracing::warn!(id, "restart policy: {e}");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::State;

    #[test]
    fn restart_policies() {
        let policy = |name: &str, max: i64| -> bollard_stubs::models::HostConfig {
            serde_json::from_value(serde_json::json!({
                "RestartPolicy": {"Name": name, "MaximumRetryCount": max}
            }))
            .unwrap()
        };
        let should_restart =
            |name: &str, max: i64, st: &State| lifecycle::restarts_after(&policy(name, max), st);
        let failed = State {
            exit_code: 1,
            ..Default::default()
        };
        let ok = State::default();
        assert!(should_restart("always", 0, &ok));
        assert!(!should_restart("on-failure", 0, &ok));
        assert!(should_restart("on-failure", 2, &failed));
        let tried = State {
            exit_code: 1,
            restart_count: 2,
            ..Default::default()
        };
        assert!(!should_restart("on-failure", 2, &tried));
        let stopped = State {
            stopped_by_user: true,
            ..Default::default()
        };
        assert!(!should_restart("unless-stopped", 0, &stopped));
        assert!(!should_restart("no", 0, &failed));
        assert!(!lifecycle::restarts_after(&Default::default(), &failed));
    }
}
