//! `Images`: pull and push (progress streamed), save, load and import (archives streamed),
//! list, inspect, history, tag and remove with dockerd's conflict rules. Answers carry Docker Engine API JSON built in [`crate::images::docker`].

use std::pin::Pin;
use std::sync::Arc;

use berth_agent_proto::v1::{
    DataChunk, ImageName, JsonResponse, ListImagesRequest, LoadInput, LoginRequest, LoginResponse,
    PruneImagesRequest, PullProgress, PullRequest, PushRequest, RemoveImageRequest, SaveRequest,
    TagRequest, TagResponse, images_server::Images,
};
use bollard_stubs::models::ImageDeleteResponseItem;
use oci_client::secrets::RegistryAuth;
use tokio::io::AsyncWriteExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::images::archive;
use crate::images::pull::{self, PullError};
use crate::images::push;
use crate::images::store::{ImageStore, StoreError};
use crate::images::{docker, reference};

/// Who uses an image: (container ID, running) for each container made from it.
pub type ImageUsers = Arc<dyn Fn(&str) -> Vec<(String, bool)> + Send + Sync>;

pub struct ImagesService {
    store: Arc<ImageStore>,
    users: ImageUsers,
    proxy: Option<String>,
}

impl ImagesService {
    pub fn new(store: Arc<ImageStore>, users: ImageUsers, proxy: Option<String>) -> Self {
        ImagesService {
            store,
            users,
            proxy,
        }
    }
}

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(name) => Status::not_found(format!("No such image: {name}")),
        e => Status::internal(e.to_string()),
    }
}

fn pull_status(e: PullError) -> Status {
    match e {
        PullError::Reference(e) => Status::invalid_argument(e.to_string()),
        PullError::NotFound(r) => Status::not_found(format!(
            "pull access denied for {r}, repository does not exist or may require 'docker login': manifest unknown"
        )),
        e => Status::internal(e.to_string()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Response<JsonResponse>, Status> {
    Ok(Response::new(JsonResponse {
        json: serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?,
    }))
}

type PullStream = Pin<Box<dyn Stream<Item = Result<PullProgress, Status>> + Send>>;
type DataStream = Pin<Box<dyn Stream<Item = Result<DataChunk, Status>> + Send>>;

fn auth(username: &str, password: &str) -> RegistryAuth {
    if username.is_empty() {
        RegistryAuth::Anonymous
    } else {
        RegistryAuth::Basic(username.to_owned(), password.to_owned())
    }
}

/// Runs a pull or push (`run`, given the progress sender) and streams its progress; `done`
/// turns its result into the stream's last message (`None` ends it cleanly). The job stops
/// when the host goes away.
fn progress_stream<T, F, Fut>(
    run: F,
    done: impl FnOnce(Result<T, PullError>) -> Option<Status> + Send + 'static,
) -> PullStream
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<pull::Progress>) -> Fut,
    Fut: std::future::Future<Output = Result<T, PullError>> + Send + 'static,
{
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel(64);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<PullProgress, Status>>(64);
    let job = tokio::spawn(run(progress_tx));
    tokio::spawn(async move {
        while let Some(p) = progress_rx.recv().await {
            let msg = PullProgress {
                id: p.id,
                status: p.status,
                current: p.current,
                total: p.total,
            };
            if out_tx.send(Ok(msg)).await.is_err() {
                job.abort();
                return;
            }
        }
        let last = match job.await {
            Ok(result) => done(result),
            Err(e) => Some(Status::internal(format!("task: {e}"))),
        };
        if let Some(status) = last {
            let _ = out_tx.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(out_rx))
}

/// Sends what is written as data chunks; fails once the receiver is gone.
struct ChunkWriter(tokio::sync::mpsc::Sender<Result<DataChunk, Status>>);

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = DataChunk { data: buf.to_vec() };
        self.0
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    type PullStream = PullStream;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        reference::parse(&req.reference).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let pull_req = pull::PullRequest {
            reference: req.reference.clone(),
            auth: auth(&req.username, &req.password),
            mirrors: req.mirrors,
            insecure: req.insecure_registries,
            proxy: self.proxy.clone(),
        };
        let store = self.store.clone();
        let reference = req.reference;
        Ok(Response::new(progress_stream(
            move |tx| pull::pull(store, pull_req, tx),
            move |result| match result {
                Ok(_) => {
                    let name = reference::parse(&reference)
                        .ok()
                        .and_then(|r| reference::familiar_tag(&r))
                        .unwrap_or(reference.clone());
                    crate::events::emit(
                        "image",
                        "pull",
                        &name,
                        crate::events::attrs([("name", name.as_str())]),
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(reference, "pull failed: {e}");
                    Some(pull_status(e))
                }
            },
        )))
    }

    type PushStream = PullStream;

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        reference::parse(&req.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !req.tag.is_empty() {
            self.store
                .resolve(&format!("{}:{}", req.name, req.tag))
                .map_err(|_| {
                    Status::not_found(format!(
                        "An image does not exist locally with the tag: {}",
                        req.name
                    ))
                })?;
        }
        let push_req = push::PushRequest {
            name: req.name.clone(),
            tag: req.tag,
            auth: auth(&req.username, &req.password),
            insecure: req.insecure_registries,
            proxy: self.proxy.clone(),
        };
        let store = self.store.clone();
        let name = req.name;
        Ok(Response::new(progress_stream(
            move |tx| push::push(store, push_req, tx),
            move |result| match result {
                Ok(done) => {
                    for p in done {
                        crate::events::emit(
                            "image",
                            "push",
                            &p.tag,
                            crate::events::attrs([("name", p.tag.as_str())]),
                        );
                    }
                    None
                }
                Err(e) => {
                    tracing::warn!(name, "push failed: {e}");
                    Some(pull_status(e))
                }
            },
        )))
    }

    type SaveStream = DataStream;

    async fn save(&self, request: Request<SaveRequest>) -> Result<Response<DataStream>, Status> {
        let names = request.into_inner().names;
        if names.is_empty() {
            return Err(Status::invalid_argument("no image names to save"));
        }
        // Missing images and layers are statuses, not a broken archive.
        let chosen = archive::to_save(&self.store, &names).map_err(|e| match e {
            archive::SaveError::NotFound(e) => store_status(e),
            e => Status::failed_precondition(e.to_string()),
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<DataChunk, Status>>(8);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::io::BufWriter::with_capacity(1 << 20, ChunkWriter(tx.clone()));
            if let Err(e) = archive::save(&store, &chosen, out) {
                let _ = tx.blocking_send(Err(Status::internal(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type LoadStream = Pin<Box<dyn Stream<Item = Result<JsonResponse, Status>> + Send>>;

    async fn load(
        &self,
        request: Request<tonic::Streaming<LoadInput>>,
    ) -> Result<Response<Self::LoadStream>, Status> {
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no load parameters"))?;
        let params: serde_json::Value = serde_json::from_slice(&first.params)
            .map_err(|e| Status::invalid_argument(format!("load parameters: {e}")))?;
        let import = params["mode"] == "import";
        let import_params: archive::ImportParams = if import {
            serde_json::from_value(params.clone())
                .map_err(|e| Status::invalid_argument(format!("import parameters: {e}")))?
        } else {
            Default::default()
        };
        let spool = self.store.tmp_dir().join(pull::unique(
            "incoming",
            if import { "import" } else { "load" },
        ));
        let mut file = tokio::fs::File::create(&spool)
            .await
            .map_err(|e| Status::internal(format!("saving the archive: {e}")))?;
        let received = async {
            file.write_all(&first.data).await?;
            while let Some(chunk) = input.message().await.map_err(std::io::Error::other)? {
                file.write_all(&chunk.data).await?;
            }
            file.flush().await
        }
        .await;
        drop(file);
        if let Err(e) = received {
            let _ = std::fs::remove_file(&spool);
            return Err(Status::internal(format!("receiving the archive: {e}")));
        }
        let store = self.store.clone();
        let lines = tokio::task::spawn_blocking(move || {
            let result = if import {
                archive::import(&store, &spool, &import_params).map(|id| vec![id])
            } else {
                archive::load(&store, &spool)
            };
            let _ = std::fs::remove_file(&spool);
            result
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| {
            if e.starts_with("invalid")
                || e.contains("digest mismatch")
                || e.contains("not a valid change")
            {
                Status::invalid_argument(e)
            } else {
                Status::internal(e)
            }
        })?;
        let messages: Vec<Result<JsonResponse, Status>> = lines
            .into_iter()
            .map(|l| {
                let v = if import {
                    serde_json::json!({ "status": l })
                } else {
                    serde_json::json!({ "stream": format!("{l}\n") })
                };
                Ok(JsonResponse {
                    json: serde_json::to_vec(&v).unwrap_or_default(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn list(&self, _: Request<ListImagesRequest>) -> Result<Response<JsonResponse>, Status> {
        let all: Vec<_> = self
            .store
            .list()
            .iter()
            .map(|img| {
                let n = (self.users)(&img.id).len() as i64;
                docker::summary(&self.store, img, n)
            })
            .collect();
        json(&all)
    }

    async fn inspect(&self, request: Request<ImageName>) -> Result<Response<JsonResponse>, Status> {
        let img = self
            .store
            .resolve(&request.into_inner().name)
            .map_err(store_status)?;
        json(&docker::inspect(&self.store, &img).map_err(store_status)?)
    }

    async fn history(&self, request: Request<ImageName>) -> Result<Response<JsonResponse>, Status> {
        let img = self
            .store
            .resolve(&request.into_inner().name)
            .map_err(store_status)?;
        json(&docker::history(&self.store, &img).map_err(store_status)?)
    }

    async fn tag(&self, request: Request<TagRequest>) -> Result<Response<TagResponse>, Status> {
        let req = request.into_inner();
        let tag = if req.tag.is_empty() {
            "latest"
        } else {
            &req.tag
        };
        let target = reference::parse(&format!("{}:{tag}", req.repo))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let familiar = reference::familiar_tag(&target)
            .ok_or_else(|| Status::invalid_argument("a tag needs a name"))?;
        self.store
            .tag(&req.source, &familiar)
            .map_err(store_status)?;
        if let Ok(img) = self.store.resolve(&familiar) {
            crate::events::emit(
                "image",
                "tag",
                &img.id,
                crate::events::attrs([("name", familiar.as_str())]),
            );
        }
        Ok(Response::new(TagResponse {}))
    }

    async fn remove(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        let items = self.remove_items(request.into_inner())?;
        let mut image_deleted = false;
        for item in &items {
            match (&item.untagged, &item.deleted) {
                (Some(tag), _) => crate::events::emit(
                    "image",
                    "untag",
                    tag,
                    crate::events::attrs([("name", tag.as_str())]),
                ),
                // The first Deleted item is the image; layers follow.
                (_, Some(id)) if !image_deleted => {
                    image_deleted = true;
                    crate::events::emit(
                        "image",
                        "delete",
                        id,
                        crate::events::attrs([("name", id.as_str())]),
                    );
                }
                _ => {}
            }
        }
        json(&items)
    }

    async fn prune(
        &self,
        request: Request<PruneImagesRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        let all = request.into_inner().all;
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for img in self.store.list() {
            if (!all && !img.repo_tags.is_empty()) || !(self.users)(&img.id).is_empty() {
                continue;
            }
            let req = RemoveImageRequest {
                name: img.id.clone(),
                force: true,
                no_prune: false,
            };
            match self.remove_items(req) {
                Ok(items) => {
                    reclaimed += img.size;
                    deleted.extend(items);
                }
                Err(e) => tracing::warn!(id = img.id, "image prune: {}", e.message()),
            }
        }
        crate::events::emit(
            "image",
            "prune",
            "",
            crate::events::attrs([("reclaimed", reclaimed.to_string().as_str())]),
        );
        json(&serde_json::json!({
            "ImagesDeleted": deleted,
            "SpaceReclaimed": reclaimed,
        }))
    }

    async fn distribution(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<JsonResponse>, Status> {
        use crate::images::distribution::{DistributionError as E, inspect};
        let req = request.into_inner();
        let described = inspect(&pull::PullRequest {
            reference: req.reference,
            auth: auth(&req.username, &req.password),
            mirrors: req.mirrors,
            insecure: req.insecure_registries,
            proxy: self.proxy.clone(),
        })
        .await;
        match described {
            Ok(v) => json(&v),
            Err(E::Reference(e)) => Err(Status::invalid_argument(e.to_string())),
            Err(E::NotFound(m)) => Err(Status::not_found(m)),
            Err(E::Unauthorized(m)) => Err(Status::unauthenticated(m)),
            Err(E::Denied(m)) => Err(Status::permission_denied(m)),
            Err(E::Registry(m)) => Err(Status::internal(m)),
        }
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        use crate::images::login::{LoginError, login};
        let req = request.into_inner();
        match login(
            &req.server,
            &req.username,
            &req.password,
            &req.insecure_registries,
            self.proxy.as_deref(),
        )
        .await
        {
            Ok(()) => Ok(Response::new(LoginResponse {
                status: "Login Succeeded".into(),
            })),
            Err(LoginError::Unauthorized(m)) => Err(Status::unauthenticated(m)),
            Err(LoginError::Registry(m)) => Err(Status::internal(m)),
        }
    }
}

impl ImagesService {
    /// `docker rmi` by dockerd's rules: what was untagged and deleted.
    fn remove_items(
        &self,
        req: RemoveImageRequest,
    ) -> Result<Vec<ImageDeleteResponseItem>, Status> {
        let img = self.store.resolve(&req.name).map_err(store_status)?;
        let users = (self.users)(&img.id);
        let short = img
            .id
            .trim_start_matches("sha256:")
            .get(..12)
            .unwrap_or("")
            .to_owned();
        // Removing by name untags; by ID it deletes.
        let by_tag = reference::parse(&req.name)
            .ok()
            .and_then(|r| reference::familiar_tag(&r))
            .filter(|t| img.repo_tags.contains(t));
        let mut items = Vec::new();
        // One name of several goes without a check, as with dockerd: the image stays.
        if let Some(tag) = by_tag.as_ref().filter(|_| img.repo_tags.len() > 1) {
            self.store.untag(&img.id, tag).map_err(store_status)?;
            items.push(ImageDeleteResponseItem {
                untagged: Some(tag.clone()),
                deleted: None,
            });
            return Ok(items);
        }
        if let Some((cid, true)) = users.iter().find(|(_, running)| *running) {
            let what = by_tag.clone().unwrap_or_else(|| short.clone());
            return Err(Status::failed_precondition(format!(
                "conflict: unable to delete {what} (cannot be forced) - image is being used by running container {}",
                &cid[..12.min(cid.len())]
            )));
        }
        match &by_tag {
            Some(tag) => {
                if let Some((cid, _)) = users.first() {
                    if !req.force {
                        return Err(Status::failed_precondition(format!(
                            "conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image {short}",
                            req.name,
                            &cid[..12.min(cid.len())]
                        )));
                    }
                    self.store.untag(&img.id, tag).map_err(store_status)?;
                    items.push(ImageDeleteResponseItem {
                        untagged: Some(tag.clone()),
                        deleted: None,
                    });
                    return Ok(items);
                }
            }
            None => {
                if img.repo_tags.len() > 1 && !req.force {
                    return Err(Status::failed_precondition(format!(
                        "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                if let Some((cid, _)) = users.first() {
                    return Err(Status::failed_precondition(format!(
                        "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
                        &cid[..12.min(cid.len())]
                    )));
                }
            }
        }
        for t in &img.repo_tags {
            items.push(ImageDeleteResponseItem {
                untagged: Some(t.clone()),
                deleted: None,
            });
        }
        for d in &img.repo_digests {
            items.push(ImageDeleteResponseItem {
                untagged: Some(d.clone()),
                deleted: None,
            });
        }
        let layers = self.store.delete(&img.id).map_err(store_status)?;
        items.push(ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(img.id.clone()),
        });
        for l in layers {
            items.push(ImageDeleteResponseItem {
                untagged: None,
                deleted: Some(l),
            });
        }
        Ok(items)
    }
}
