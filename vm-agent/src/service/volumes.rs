//! `Volumes`: Docker's volume verbs over [`crate::volumes`], answering Docker Engine API JSON.
//! Whether a volume is in use comes from the container records.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_agent_proto::v1::{Empty, JsonRequest, JsonResponse, VolumeRef, volumes_server};
use tonic::{Request, Response, Status};

use super::{json_body as body, json_value as json};

use crate::containers::ContainerStore;
use crate::containers::volumes::{ref_counts, users};
use crate::volumes::{VolumeError, VolumeStore};

pub struct VolumesService {
    volumes: &'static VolumeStore,
    store: Arc<ContainerStore>,
}

impl VolumesService {
    pub fn new(volumes: &'static VolumeStore, store: Arc<ContainerStore>) -> Self {
        VolumesService { volumes, store }
    }
}

fn status_of(e: VolumeError) -> Status {
    let msg = e.to_string();
    match e {
        VolumeError::NotFound(_) => Status::not_found(msg),
        VolumeError::Conflict(_) => Status::failed_precondition(msg),
        VolumeError::Invalid(_) => Status::invalid_argument(msg),
        VolumeError::Failed(_) => Status::internal(msg),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status_of)
}

/// A `{"k": "v"}` field of a create body; anything but strings is refused.
fn string_map(v: &serde_json::Value, field: &str) -> Result<BTreeMap<String, String>, Status> {
    match &v[field] {
        serde_json::Value::Null => Ok(BTreeMap::new()),
        m => serde_json::from_value(m.clone())
            .map_err(|_| Status::invalid_argument(format!("{field} must map strings to strings"))),
    }
}

#[tonic::async_trait]
impl volumes_server::Volumes for VolumesService {
    async fn create(&self, req: Request<JsonRequest>) -> Result<Response<JsonResponse>, Status> {
        let b = body(&req.into_inner().json)?;
        let name = b["Name"].as_str().unwrap_or("").to_owned();
        let driver = b["Driver"].as_str().unwrap_or("").to_owned();
        let labels = string_map(&b, "Labels")?;
        let opts = string_map(&b, "DriverOpts")?;
        let volumes = self.volumes;
        let doc = blocking(move || {
            let meta = volumes.create(&name, &driver, labels, opts)?;
            Ok(volumes.json(&meta, None, false))
        })
        .await?;
        Ok(json(&doc))
    }

    async fn list(&self, req: Request<JsonRequest>) -> Result<Response<JsonResponse>, Status> {
        let with_size = body(&req.into_inner().json)?["Size"].as_bool() == Some(true);
        let (volumes, store) = (self.volumes, self.store.clone());
        let list = blocking(move || {
            let counts = ref_counts(&store);
            Ok(volumes
                .names()
                .iter()
                .filter_map(|n| volumes.get(n).ok())
                .map(|m| {
                    let n = counts.get(&m.name).copied().unwrap_or(0);
                    volumes.json(&m, Some(n), with_size)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        Ok(json(&serde_json::Value::Array(list)))
    }

    async fn inspect(&self, req: Request<VolumeRef>) -> Result<Response<JsonResponse>, Status> {
        let name = req.into_inner().name;
        let volumes = self.volumes;
        let doc = blocking(move || Ok(volumes.json(&volumes.get(&name)?, None, false))).await?;
        Ok(json(&doc))
    }

    async fn remove(&self, req: Request<VolumeRef>) -> Result<Response<Empty>, Status> {
        let name = req.into_inner().name;
        let (volumes, store) = (self.volumes, self.store.clone());
        blocking(move || volumes.remove(&name, &users(&store, &name))).await?;
        Ok(Response::new(Empty {}))
    }

    async fn prune(&self, req: Request<JsonRequest>) -> Result<Response<JsonResponse>, Status> {
        let names: Vec<String> = {
            let raw = req.into_inner().json;
            if raw.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&raw)
                    .map_err(|e| Status::invalid_argument(format!("invalid name list: {e}")))?
            }
        };
        let (volumes, store) = (self.volumes, self.store.clone());
        let (deleted, reclaimed) = blocking(move || {
            let counts = ref_counts(&store);
            let mut deleted = Vec::new();
            let mut reclaimed = 0i64;
            for name in names {
                if counts.contains_key(&name) {
                    continue;
                }
                let size = volumes.size(&name);
                if volumes.remove(&name, &[]).is_ok() {
                    reclaimed += size;
                    deleted.push(name);
                }
            }
            Ok((deleted, reclaimed))
        })
        .await?;
        Ok(json(&serde_json::json!({
            "VolumesDeleted": deleted,
            "SpaceReclaimed": reclaimed,
        })))
    }
}
