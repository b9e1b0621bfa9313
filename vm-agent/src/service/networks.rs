//! `Networks`: Docker's network verbs over [`crate::net`], answering Docker Engine API JSON.

use std::sync::Arc;

use berth_agent_proto::v1::{
    Empty, JsonRequest, JsonResponse, NetworkConnectRequest, NetworkRef, networks_server,
};
use tonic::{Request, Response, Status};

use super::{json_body as body, json_value as json};

use crate::containers::ContainerStore;
use crate::net::{self, NetError, Networks};

pub struct NetworksService {
    nets: &'static Networks,
    store: Arc<ContainerStore>,
}

impl NetworksService {
    pub fn new(nets: &'static Networks, store: Arc<ContainerStore>) -> Self {
        NetworksService { nets, store }
    }
}

fn status_of(e: NetError) -> Status {
    match e {
        NetError::NotFound(m) => Status::not_found(m),
        NetError::Conflict(m) => Status::already_exists(m),
        NetError::Forbidden(m) => Status::permission_denied(m),
        NetError::Invalid(m) => Status::invalid_argument(m),
        NetError::Failed(m) => Status::internal(m),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status_of)
}

/// The `Container` a connect or disconnect body names.
fn container_of(b: &serde_json::Value) -> Result<String, Status> {
    match b["Container"].as_str() {
        Some(c) if !c.is_empty() => Ok(c.to_owned()),
        _ => Err(Status::invalid_argument("the body must name a Container")),
    }
}

#[tonic::async_trait]
impl networks_server::Networks for NetworksService {
    async fn create(&self, req: Request<JsonRequest>) -> Result<Response<JsonResponse>, Status> {
        let b = body(&req.into_inner().json)?;
        let nets = self.nets;
        let id = blocking(move || nets.create(&b)).await?;
        Ok(json(&serde_json::json!({ "Id": id, "Warning": "" })))
    }

    async fn list(&self, _req: Request<Empty>) -> Result<Response<JsonResponse>, Status> {
        let (nets, store) = (self.nets, self.store.clone());
        let list = blocking(move || {
            Ok(nets
                .all()
                .iter()
                .map(|n| net::docker::network_json(nets, n, Some(&store)))
                .collect::<Vec<_>>())
        })
        .await?;
        Ok(json(&serde_json::Value::Array(list)))
    }

    async fn inspect(&self, req: Request<NetworkRef>) -> Result<Response<JsonResponse>, Status> {
        let key = req.into_inner().id;
        let (nets, store) = (self.nets, self.store.clone());
        let doc = blocking(move || {
            let n = nets.find(&key)?;
            Ok(net::docker::network_json(nets, &n, Some(&store)))
        })
        .await?;
        Ok(json(&doc))
    }

    async fn remove(&self, req: Request<NetworkRef>) -> Result<Response<Empty>, Status> {
        let key = req.into_inner().id;
        let nets = self.nets;
        blocking(move || nets.remove(&key)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn prune(&self, req: Request<JsonRequest>) -> Result<Response<JsonResponse>, Status> {
        let keep: Vec<String> = {
            let raw = req.into_inner().json;
            if raw.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&raw)
                    .map_err(|e| Status::invalid_argument(format!("invalid keep list: {e}")))?
            }
        };
        let nets = self.nets;
        let removed = blocking(move || nets.prune(|n| keep.contains(&n.id))).await?;
        Ok(json(&serde_json::json!({ "NetworksDeleted": removed })))
    }

    async fn connect_container(
        &self,
        req: Request<NetworkConnectRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = req.into_inner();
        let b = body(&req.json)?;
        let container = container_of(&b)?;
        let cfg: bollard_stubs::models::EndpointSettings =
            serde_json::from_value(b["EndpointConfig"].clone()).unwrap_or_default();
        let (nets, store) = (self.nets, self.store.clone());
        blocking(move || nets.connect(&store, &req.network, &container, cfg)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn disconnect_container(
        &self,
        req: Request<NetworkConnectRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = req.into_inner();
        let b = body(&req.json)?;
        let container = container_of(&b)?;
        let (nets, store) = (self.nets, self.store.clone());
        blocking(move || nets.disconnect(&store, &req.network, &container)).await?;
        Ok(Response::new(Empty {}))
    }
}
