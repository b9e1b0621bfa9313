//! `/build`: the classic builder's endpoint (the docker CLI uses it with `DOCKER_BUILDKIT=0`).
//! The context tar is spooled to the runtime directory with a size limit (an oversized one is
//! refused while it uploads), then streamed to the agent's `Builds` service, whose JSON
//! messages come back as the response body. Also `/commit`, which the same agent service
//! answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::BuildInput;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use super::{ApiError, status_error, truthy};
use crate::vm::Supervisor;

/// A JSON map query parameter (`buildargs`, `labels`); null values (an ARG named without a
/// value) are left out.
fn json_map(raw: &str, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    if raw.is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: BTreeMap<String, Option<String>> = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))?;
    Ok(v.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// The builder's parameters from the query; unknown ones are ignored, as dockerd does.
pub fn params(
    q: &[(String, String)],
    mirrors: &[String],
    insecure: &[String],
) -> Result<Value, ApiError> {
    let mut p = json!({
        "tags": [], "dockerfile": "", "build_args": {}, "labels": {}, "no_cache": false,
        "target": "", "mirrors": mirrors, "insecure": insecure, "network_mode": "",
        "extra_hosts": [], "cache_from": [],
    });
    let mut seen = std::collections::HashSet::new();
    for (k, v) in q {
        // As Go's `FormValue`, a parameter given twice counts once, the first time (docker-py
        // sends `dockerfile` twice: the name, then the text), except those that are lists.
        if !matches!(k.as_str(), "t" | "extrahosts") && !seen.insert(k.as_str()) {
            continue;
        }
        match k.as_str() {
            "t" if !v.is_empty() => p["tags"].as_array_mut().expect("an array").push(json!(v)),
            "dockerfile" => p["dockerfile"] = json!(v),
            "buildargs" => p["build_args"] = json!(json_map(v, "buildargs")?),
            "labels" => p["labels"] = json!(json_map(v, "labels")?),
            "nocache" => p["no_cache"] = json!(truthy(v)),
            "target" => p["target"] = json!(v),
            "networkmode" => p["network_mode"] = json!(v),
            // The docker CLI joins them with commas; docker-py repeats the parameter.
            "extrahosts" => {
                let list = p["extra_hosts"].as_array_mut().expect("an array");
                list.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(|h| json!(h)),
                );
            }
            "cachefrom" if !v.is_empty() => {
                let list: Vec<String> = serde_json::from_str(v)
                    .map_err(|e| ApiError::bad_request(format!("invalid cachefrom: {e}")))?;
                p["cache_from"] = json!(list);
            }
            "remote" if !v.is_empty() => {
                return Err(ApiError::bad_request(
                    "building from a remote context is not supported yet",
                ));
            }
            _ => {}
        }
    }
    Ok(p)
}

pub async fn build(
    State(sup): State<Supervisor>,
    Query(q): Query<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    let settings = sup.settings()?;
    // dockerd has no limit, but a desktop's disk is not a server's.
    let limit = u64::from(settings.build_context_limit_mib) << 20;
    let params = params(
        &q,
        &settings.registry_mirrors,
        &settings.insecure_registries,
    )?;
    let agent = sup.agent()?;
    // Spool the context, refusing it once it passes the limit.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let spool = Spool(sup.paths().run_dir.join(format!(
        "build-{}-{}.tar",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )));
    let mut file = tokio::fs::File::create(&spool.0)
        .await
        .map_err(ApiError::internal)?;
    let mut body = req.into_body().into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the context: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            // The refusal goes out now; the rest of the upload is read and dropped, so the
            // client sees the answer rather than a broken pipe, and nothing more is kept.
            tokio::spawn(async move {
                let drain = async { while let Some(Ok(_)) = body.next().await {} };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(600), drain).await;
            });
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the build context is over {} MiB: leave large files out with .dockerignore (or raise the build-context-limit-mib setting)",
                    settings.build_context_limit_mib
                ),
            ));
        }
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    drop(file);
    let first = BuildInput {
        params: serde_json::to_vec(&params).map_err(ApiError::internal)?,
        context: Vec::new(),
    };
    let chunks = async_stream::stream! {
        // The stream owns the spool from here: it goes when the agent has read it, or when
        // the call is dropped part way.
        let spool = spool;
        yield first;
        if let Ok(mut f) = tokio::fs::File::open(&spool.0).await {
            let mut buf = vec![0u8; 1 << 20];
            while let Ok(n) = f.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                yield BuildInput { params: Vec::new(), context: buf[..n].to_vec() };
            }
        }
    };
    let stream = agent
        .builds()
        .build(chunks)
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(super::images::json_lines(stream))
}

/// `docker commit`: the container's changes as a new image.
pub async fn commit(
    State(sup): State<Supervisor>,
    Query(q): Query<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let config: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    if !(config.is_null() || config.is_object()) {
        return Err(ApiError::bad_request(
            "the commit body must be a JSON object",
        ));
    }
    let get = |k: &str| {
        q.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let container = get("container");
    if container.is_empty() {
        return Err(ApiError::bad_request("a container to commit is required"));
    }
    let params = json!({
        "container": container,
        "repo": get("repo"),
        "tag": get("tag"),
        "comment": get("comment"),
        "author": get("author"),
        "pause": !matches!(get("pause").as_str(), "0" | "false"),
        "changes": q.iter().filter(|(k, _)| k == "changes").map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        "config": config,
    });
    let resp = sup
        .agent()?
        .builds()
        .commit(berth_agent_proto::v1::JsonRequest {
            json: serde_json::to_vec(&params).map_err(ApiError::internal)?,
        })
        .await
        .map_err(status_error)?;
    Ok((
        StatusCode::CREATED,
        super::json_body(resp.into_inner().json),
    )
        .into_response())
}

/// `docker builder prune` (and the build cache part of `docker system prune`).
pub async fn prune(State(sup): State<Supervisor>) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .builds()
        .prune(berth_agent_proto::v1::Empty {})
        .await
        .map_err(status_error)?;
    Ok(super::json_body(resp.into_inner().json))
}

/// Removes the spooled context when the last holder (the handler, or the stream feeding the
/// agent) lets go, however the request ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_as_the_docker_cli_sends_them() {
        let q = vec![
            ("t".to_owned(), "app:1".to_owned()),
            ("t".to_owned(), "app:latest".to_owned()),
            (
                "buildargs".to_owned(),
                r#"{"A":"1","UNSET":null}"#.to_owned(),
            ),
            ("nocache".to_owned(), "1".to_owned()),
            ("rm".to_owned(), "1".to_owned()),
            ("extrahosts".to_owned(), "a:10.0.0.1,b:10.0.0.2".to_owned()),
            ("extrahosts".to_owned(), "c:host-gateway".to_owned()),
            ("cachefrom".to_owned(), r#"["app:1"]"#.to_owned()),
            ("networkmode".to_owned(), "none".to_owned()),
        ];
        let p = params(&q, &["http://m".into()], &[]).unwrap();
        assert_eq!(p["tags"], json!(["app:1", "app:latest"]));
        assert_eq!(p["build_args"], json!({"A": "1"}));
        assert_eq!(p["no_cache"], true);
        assert_eq!(p["mirrors"], json!(["http://m"]));
        assert_eq!(
            p["extra_hosts"],
            json!(["a:10.0.0.1", "b:10.0.0.2", "c:host-gateway"])
        );
        assert_eq!(p["cache_from"], json!(["app:1"]));
        assert_eq!(p["network_mode"], "none");
        let twice = vec![
            ("dockerfile".to_owned(), ".dockerfile.1f".to_owned()),
            ("dockerfile".to_owned(), "FROM busybox\n".to_owned()),
        ];
        assert_eq!(
            params(&twice, &[], &[]).unwrap()["dockerfile"],
            ".dockerfile.1f"
        );
        let bad = vec![("buildargs".to_owned(), "{".to_owned())];
        assert!(params(&bad, &[], &[]).is_err());
    }
}
