//! `Containers`: the gRPC face of [`crate::containers`]. Blocking work (mounts, crun, waits)
//! runs on blocking threads; logs, attach and exec stream. Also the monitor that enforces
//! AutoRemove and restart policies, in the guest, across agent and VM restarts.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_proto::v1::{
    AttachRequest, ContainerRef, CreateContainerRequest, CreateContainerResponse, Empty,
    ExecCreateRequest, ExecCreateResponse, ExecRef, ExecStartRequest, JsonResponse,
    KillContainerRequest, ListContainersRequest, LogsRequest, OutputChunk, RemoveContainerRequest,
    RenameContainerRequest, StdinChunk, StopContainerRequest, WaitContainerRequest,
    WaitContainerResponse, containers_server::Containers,
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

fn chunk(e: logs::Entry) -> OutputChunk {
    OutputChunk {
        stream: e.stream,
        data: e.data,
        time: e.time,
        exited: false,
        exit_code: 0,
    }
}

/// Follows the log from `offset` until the container has exited after `exits` (or is gone).
fn follow(
    store: Arc<ContainerStore>,
    id: String,
    mut offset: u64,
    exits: u64,
    filter: impl Fn(&logs::Entry) -> bool + Send + 'static,
    tx: mpsc::Sender<Result<OutputChunk, Status>>,
) {
    let path = store.dir(&id).join("log.json");
    loop {
        let st = lifecycle::refresh(&store, &id);
        let gone = !store.dir(&id).join("config.json").exists();
        let done = gone || (st.exits > exits && !st.status.is_live());
        let (entries, next) = logs::read_from(&path, offset);
        offset = next;
        for e in entries.into_iter().filter(|e| filter(e)) {
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
        blocking(move || lifecycle::remove(&store, &req.id, req.force)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn rename(
        &self,
        request: Request<RenameContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let store = self.store.clone();
        blocking(move || store.rename(&req.id, &req.name)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn prune(&self, _: Request<Empty>) -> Result<Response<JsonResponse>, Status> {
        let store = self.store.clone();
        let deleted = blocking(move || {
            let mut deleted = Vec::new();
            for id in store.ids() {
                let st = lifecycle::refresh(&store, &id);
                if matches!(st.status, St::Created | St::Exited)
                    && lifecycle::remove(&store, &id, false).is_ok()
                {
                    deleted.push(id);
                }
            }
            Ok(deleted)
        })
        .await?;
        json(&serde_json::json!({ "ContainersDeleted": deleted, "SpaceReclaimed": 0 }))
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
        let all = request.into_inner().all;
        let store = self.store.clone();
        let rows = blocking(move || {
            let mut rows: Vec<(String, _)> = store
                .ids()
                .into_iter()
                .filter_map(|id| {
                    let rec = store.record(&id).ok()?;
                    let st = lifecycle::refresh(&store, &id);
                    let running = st.status.is_live();
                    (all || running).then(|| (rec.created.clone(), docker::summary(&rec, &st)))
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
            Ok(crate::containers::stats::sample(&id, &rec.name))
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
            let (entries, offset) = logs::read_from(&path, 0);
            let selected = logs::select(
                entries, req.stdout, req.stderr, req.since, req.until, req.tail,
            );
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
                follow(store, id, offset, st.exits, filter, tx);
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
        let (id, st) = {
            let store = store.clone();
            let key = req.id.clone();
            blocking(move || {
                let id = store.resolve(&key)?;
                let st = lifecycle::refresh(&store, &id);
                Ok((id, st))
            })
            .await?
        };
        // A stopped container may be attached to: the stream starts with its next run (the
        // docker CLI's `start -a` attaches first). Refusing is the CLI's `attach` job.
        let (tx, rx) = mpsc::channel(64);
        std::thread::spawn(move || {
            let path = store.dir(&id).join("log.json");
            let offset = if req.logs { 0 } else { logs::log_len(&path) };
            let (stdout, stderr) = (req.stdout, req.stderr);
            let filter =
                move |e: &logs::Entry| (e.stream == 1 && stdout) || (e.stream == 2 && stderr);
            follow(store, id, offset, st.exits, filter, tx);
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
}

/// Whether `policy` restarts a container that exited with `st`.
fn should_restart(policy: &str, max: i64, st: &crate::containers::State) -> bool {
    if st.stopped_by_user {
        return false;
    }
    match policy {
        "always" | "unless-stopped" => true,
        "on-failure" => st.exit_code != 0 && (max <= 0 || (st.restart_count as i64) < max),
        _ => false,
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
                let Ok(rec) = store.record(&id) else { continue };
                if rec.host_config.auto_remove == Some(true) {
                    if let Err(e) = lifecycle::remove(&store, &id, true) {
                        tracing::warn!(id, "auto-remove: {e}");
                    }
                    continue;
                }
                let (policy, max) = rec
                    .host_config
                    .restart_policy
                    .as_ref()
                    .map(|p| {
                        (
                            p.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                            p.maximum_retry_count.unwrap_or(0),
                        )
                    })
                    .unwrap_or_default();
                if should_restart(&policy, max, &st) {
                    let mut next = st.clone();
                    next.restart_count += 1;
                    let _ = store.save_state(&id, &next);
                    if let Err(e) = lifecycle::start(&store, &images, &id) {
                        tracing::warn!(id, "restart policy {policy}: {e}");
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
    }
}
