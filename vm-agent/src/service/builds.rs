//! `Builds`: receives a build's parameters and context tar, runs [`crate::build`] and streams
//! its JSON messages back; a failure is the stream's last message, as dockerd's `error`.

use std::io::Write;
use std::sync::Arc;

use berth_agent_proto::v1::{BuildInput, Empty, JsonRequest, JsonResponse, builds_server};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::build::{BuildFailure, BuildParams, Builder};
use crate::containers::ContainerStore;
use crate::images::store::ImageStore;

pub struct BuildsService {
    store: Arc<ImageStore>,
    containers: Arc<ContainerStore>,
}

impl BuildsService {
    pub fn new(store: Arc<ImageStore>, containers: Arc<ContainerStore>) -> Self {
        BuildsService { store, containers }
    }
}

type Stream = ReceiverStream<Result<JsonResponse, Status>>;

#[tonic::async_trait]
impl builds_server::Builds for BuildsService {
    type BuildStream = Stream;

    async fn build(
        &self,
        request: Request<tonic::Streaming<BuildInput>>,
    ) -> Result<Response<Stream>, Status> {
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no build parameters"))?;
        let params: BuildParams = serde_json::from_slice(&first.params)
            .map_err(|e| Status::invalid_argument(format!("build parameters: {e}")))?;
        let root = std::path::Path::new(crate::disk::MOUNT_POINT);
        let tar_path = self
            .store
            .tmp_dir()
            .join(format!("context-{}.tar", crate::containers::random_hex(8)));
        let mut file = std::fs::File::create(&tar_path)
            .map_err(|e| Status::internal(format!("saving the build context: {e}")))?;
        file.write_all(&first.context)
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = input.message().await? {
            file.write_all(&chunk.context)
                .map_err(|e| Status::internal(format!("saving the build context: {e}")))?;
        }
        drop(file);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let send = |v: serde_json::Value| {
                let _ = tx.blocking_send(Ok(JsonResponse {
                    json: serde_json::to_vec(&v).unwrap_or_default(),
                }));
            };
            // A panic in the builder must reach the client as an error, not end the stream
            // as if the build had succeeded.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Builder::run(store, root, &tar_path, params, &send, rt)
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!("the builder panicked: {what}");
                Err(BuildFailure {
                    message: format!("the builder failed unexpectedly: {what}"),
                    code: None,
                })
            });
            let _ = std::fs::remove_file(&tar_path);
            if let Err(e) = result {
                send(e.message_json());
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cache(&self, _: Request<Empty>) -> Result<Response<JsonResponse>, Status> {
        let store = self.store.clone();
        let list = tokio::task::spawn_blocking(move || {
            crate::build::cache::list(&store, std::path::Path::new(crate::disk::MOUNT_POINT))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(JsonResponse {
            json: serde_json::to_vec(&list).unwrap_or_default(),
        }))
    }

    async fn prune(&self, _: Request<Empty>) -> Result<Response<JsonResponse>, Status> {
        let store = self.store.clone();
        let (deleted, freed) = tokio::task::spawn_blocking(move || {
            crate::build::cache::prune(&store, std::path::Path::new(crate::disk::MOUNT_POINT))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let doc = serde_json::json!({ "CachesDeleted": deleted, "SpaceReclaimed": freed });
        Ok(Response::new(JsonResponse {
            json: serde_json::to_vec(&doc).unwrap_or_default(),
        }))
    }

    async fn commit(
        &self,
        request: Request<JsonRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        let params: crate::build::commit::CommitParams =
            serde_json::from_slice(&request.into_inner().json)
                .map_err(|e| Status::invalid_argument(format!("commit parameters: {e}")))?;
        let (images, containers) = (self.store.clone(), self.containers.clone());
        let id = tokio::task::spawn_blocking(move || {
            crate::build::commit::commit(&images, &containers, &params)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| {
            if e.starts_with("No such container") {
                Status::not_found(e)
            } else if e.starts_with("invalid") || e.contains("not a valid change") {
                Status::invalid_argument(e)
            } else {
                Status::internal(e)
            }
        })?;
        Ok(Response::new(JsonResponse {
            json: serde_json::to_vec(&serde_json::json!({ "Id": id })).unwrap_or_default(),
        }))
    }
}
