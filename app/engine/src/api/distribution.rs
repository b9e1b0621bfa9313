//! `GET /distribution/{name}/json`: what the registry holds for an image reference (the
//! manifest's descriptor and its platforms), as dockerd answers it for `docker service create`
//! and docker-py's `get_registry_data`. The agent asks the registry through the host's proxy
//! with the client's `X-Registry-Auth` credentials and the engine's mirrors; nothing is pulled.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use berth_agent_proto::v1::PullRequest;

use super::goparse::internal;
use super::{ApiError, json_body, status_error};
use crate::vm::Supervisor;

/// `sha256:<64 hex>` or 64 hex alone: an image ID, which no registry can be asked for.
fn is_full_id(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub async fn inspect(
    State(sup): State<Supervisor>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Names hold slashes: the route is `/distribution/{name:.*}/json`.
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found(format!(
            "page not found: /distribution/{rest}"
        )));
    };
    if is_full_id(name) {
        return Err(internal("no manifest found for full image ID"));
    }
    let (username, password) = super::images::registry_auth(&headers);
    let settings = sup.settings()?;
    let resp = sup
        .agent()?
        .images()
        .distribution(PullRequest {
            reference: name.to_owned(),
            username,
            password,
            mirrors: settings.registry_mirrors,
            insecure_registries: settings.insecure_registries,
        })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_are_not_references() {
        let hex = "a".repeat(64);
        assert!(is_full_id(&hex));
        assert!(is_full_id(&format!("sha256:{hex}")));
        assert!(!is_full_id("busybox"));
        assert!(!is_full_id(&"A".repeat(64)));
    }
}
