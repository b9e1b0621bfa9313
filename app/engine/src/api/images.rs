//! `/images/...`: pull and import (`POST /images/create`), push (Docker's JSON progress
//! streams), save and load (tar streams), list, inspect, history, tag and remove, forwarded to
//! the agent, which keeps the images.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_agent_proto::v1::{
    ImageName, ListImagesRequest, LoadInput, PullRequest, PushRequest, RemoveImageRequest,
    SaveRequest, TagRequest,
};
use serde_json::json;
use tokio_stream::StreamExt;

use super::{ApiError, json_body, status_error};
use crate::vm::Supervisor;

/// Credentials from the `X-Registry-Auth` header (base64url JSON), as the docker CLI sends them.
pub(crate) fn registry_auth(headers: &HeaderMap) -> (String, String) {
    let Some(value) = headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()) else {
        return Default::default();
    };
    let decoded = base64_decode(value.trim());
    let v: serde_json::Value = serde_json::from_slice(&decoded).unwrap_or_default();
    (
        v["username"].as_str().unwrap_or_default().to_owned(),
        v["password"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Standard or URL-safe base64, padded or not.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// One line of Docker's pull stream for an agent progress message.
pub fn progress_line(id: &str, status: &str, current: u64, total: u64) -> serde_json::Value {
    let mut line = json!({ "status": status });
    if !id.is_empty() {
        line["id"] = json!(id);
    }
    if matches!(status, "Downloading" | "Extracting" | "Pushing") {
        line["progressDetail"] = json!({ "current": current, "total": total });
        if total > 0 {
            let width = 50;
            let done = ((current.min(total) as f64 / total as f64) * width as f64) as usize;
            let bar = format!(
                "[{}>{}]",
                "=".repeat(done.saturating_sub(1)),
                " ".repeat(width - done.max(1))
            );
            line["progress"] = json!(format!("{bar} {}/{}", human(current), human(total)));
        }
    } else {
        line["progressDetail"] = json!({});
    }
    line
}

fn error_line(message: &str) -> serde_json::Value {
    json!({ "errorDetail": { "message": message }, "error": message })
}

/// `POST /images/create`: a pull (`fromImage`), or an import of the body (`fromSrc=-`).
pub async fn create(
    State(sup): State<Supervisor>,
    Query(all): Query<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    let q: HashMap<String, String> = all.iter().cloned().collect();
    let headers = req.headers().clone();
    if let Some(src) = q.get("fromSrc").filter(|s| !s.is_empty()) {
        if src != "-" {
            return Err(ApiError::bad_request(
                "importing from a URL is not supported yet: download the file and import it from stdin",
            ));
        }
        let params = json!({
            "mode": "import",
            "repo": q.get("repo").cloned().unwrap_or_default(),
            "tag": q.get("tag").cloned().unwrap_or_default(),
            "message": q.get("message").cloned().unwrap_or_default(),
            // The docker CLI repeats `changes`; bollard joins them with newlines.
            "changes": all
                .iter()
                .filter(|(k, _)| k == "changes")
                .flat_map(|(_, v)| v.split('\n'))
                .filter(|c| !c.trim().is_empty())
                .collect::<Vec<_>>(),
        });
        return load_body(&sup, params, req).await;
    }
    let from = q.get("fromImage").cloned().unwrap_or_default();
    if from.is_empty() {
        return Err(ApiError::bad_request("fromImage or fromSrc is required"));
    }
    let tag = q.get("tag").cloned().unwrap_or_default();
    let reference = match tag.as_str() {
        "" => from.clone(),
        t if t.starts_with("sha256:") => format!("{from}@{t}"),
        t => format!("{from}:{t}"),
    };
    let settings = sup.settings()?;
    let (username, password) = registry_auth(&headers);
    let agent = sup.agent()?;
    let mut stream = agent
        .images()
        .pull(PullRequest {
            reference: reference.clone(),
            username,
            password,
            mirrors: settings.registry_mirrors.clone(),
            insecure_registries: settings.insecure_registries.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let familiar = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(&reference);
    let last = familiar.rsplit('/').next().unwrap_or(familiar);
    let shown = if last.contains(':') || last.contains('@') {
        familiar.to_owned()
    } else {
        format!("{familiar}:latest")
    };
    let body = async_stream(move |tx| async move {
        let mut downloaded = false;
        loop {
            match stream.next().await {
                Some(Ok(p)) => {
                    downloaded |= p.status == "Pull complete";
                    let line = progress_line(&p.id, &p.status, p.current, p.total);
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                Some(Err(status)) => {
                    let _ = tx.send(error_line(status.message())).await;
                    return;
                }
                None => break,
            }
        }
        let done = if downloaded {
            format!("Status: Downloaded newer image for {shown}")
        } else {
            format!("Status: Image is up to date for {shown}")
        };
        let _ = tx.send(json!({ "status": done })).await;
    });
    Ok(([("Content-Type", "application/json")], body).into_response())
}

/// `POST /images/{name}/push`: the local tag (or every tag of the repository, without one)
/// to its registry.
pub async fn push(
    sup: Supervisor,
    name: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = sup.settings()?;
    let (username, password) = registry_auth(&headers);
    let mut stream = sup
        .agent()?
        .images()
        .push(PushRequest {
            name,
            tag: q.get("tag").cloned().unwrap_or_default(),
            username,
            password,
            insecure_registries: settings.insecure_registries.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let body = async_stream(move |tx| async move {
        loop {
            let line = match stream.next().await {
                Some(Ok(p)) => {
                    let line = progress_line(&p.id, &p.status, p.current, p.total);
                    if tx.send(line).await.is_err() {
                        return;
                    }
                    // `tag: digest: sha256:... size: N` is followed by its aux line.
                    match p.status.split(' ').collect::<Vec<_>>()[..] {
                        [tag, "digest:", digest, "size:", size] if p.id.is_empty() => json!({
                            "progressDetail": {},
                            "aux": {
                                "Tag": tag.trim_end_matches(':'),
                                "Digest": digest,
                                "Size": size.parse::<u64>().unwrap_or(0),
                            },
                        }),
                        _ => continue,
                    }
                }
                Some(Err(status)) => error_line(status.message()),
                None => return,
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    Ok(([("Content-Type", "application/json")], body).into_response())
}

/// `GET /images/get?names=...` and `GET /images/{name}/get`: a tar of the images.
pub async fn save(sup: Supervisor, names: Vec<String>) -> Result<Response, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names to save"));
    }
    let stream = sup
        .agent()?
        .images()
        .save(SaveRequest { names })
        .await
        .map_err(status_error)?
        .into_inner();
    let body = Body::from_stream(stream.map(|chunk| {
        chunk
            .map(|c| axum::body::Bytes::from(c.data))
            .map_err(|s| std::io::Error::other(s.message().to_owned()))
    }));
    Ok(([("Content-Type", "application/x-tar")], body).into_response())
}

pub async fn save_many(
    State(sup): State<Supervisor>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let names = q
        .into_iter()
        .filter(|(k, _)| k == "names")
        .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|n| !n.is_empty())
        .collect();
    save(sup, names).await
}

/// `POST /images/load`: the images in the body's tar.
pub async fn load(State(sup): State<Supervisor>, req: Request) -> Result<Response, ApiError> {
    load_body(&sup, json!({ "mode": "load" }), req).await
}

/// Streams the request body to the agent's `Load` with `params`; answers its JSON lines.
async fn load_body(
    sup: &Supervisor,
    params: serde_json::Value,
    req: Request,
) -> Result<Response, ApiError> {
    let agent = sup.agent()?;
    let first = LoadInput {
        params: serde_json::to_vec(&params).map_err(ApiError::internal)?,
        data: Vec::new(),
    };
    let mut body = req.into_body().into_data_stream();
    let chunks = async_stream::stream! {
        yield first;
        while let Some(Ok(chunk)) = body.next().await {
            yield LoadInput { params: Vec::new(), data: chunk.to_vec() };
        }
    };
    let refused_archive = params["mode"] == "load";
    let stream = match agent.images().load(chunks).await {
        Ok(stream) => stream.into_inner(),
        // As dockerd: an archive `docker load` cannot read is a 200 whose stream is the
        // error (docker-py raises `ImageLoadError` from it, the CLI prints it).
        Err(s) if refused_archive && s.code() == tonic::Code::InvalidArgument => {
            let line = format!("{}\r\n", error_line(s.message()));
            return Ok(([("Content-Type", "application/json")], line).into_response());
        }
        Err(s) => return Err(status_error(s)),
    };
    Ok(json_lines(stream))
}

/// A response streaming the agent's JSON messages as Docker's JSON lines; a failure
/// part way is the last line, as dockerd's `error`.
pub fn json_lines(stream: tonic::Streaming<berth_agent_proto::v1::JsonResponse>) -> Response {
    let lines = stream.map(|m| {
        let line = match m {
            Ok(m) => m.json,
            Err(s) => serde_json::to_vec(&error_line(s.message())).unwrap_or_default(),
        };
        Ok::<_, std::convert::Infallible>([line, b"\r\n".to_vec()].concat())
    });
    (
        [("Content-Type", "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// A streaming body of JSON lines produced by `f` through a channel.
pub fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<serde_json::Value>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<serde_json::Value>(32);
    tokio::spawn(f(tx));
    let lines = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|v| Ok::<_, std::convert::Infallible>(format!("{v}\r\n")));
    Body::from_stream(lines)
}

/// `path.Match`-style globbing (`*`, `?`) as the docker CLI's reference filter uses; `*`
/// does not cross `/`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && t[0] != '/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// Whether an image summary passes the `reference` and `dangling` filters.
fn image_matches(img: &serde_json::Value, filters: &HashMap<String, Vec<String>>) -> bool {
    let tags: Vec<&str> = img["RepoTags"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    let dangling = tags.is_empty() || tags == ["<none>:<none>"];
    filters.iter().all(|(key, wanted)| match key.as_str() {
        "dangling" => wanted.iter().any(|w| (w == "true" || w == "1") == dangling),
        "reference" => wanted.iter().any(|w| {
            tags.iter().any(|t| {
                let repo = t.rsplit_once(':').map_or(*t, |(r, _)| r);
                glob(w, t) || glob(w, repo)
            })
        }),
        _ => true,
    })
}

pub async fn list(
    State(sup): State<Supervisor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = super::system::parse_filters(q.get("filters"))?;
    let resp = sup
        .agent()?
        .images()
        .list(ListImagesRequest { all: false })
        .await
        .map_err(status_error)?;
    let json = resp.into_inner().json;
    if filters.is_empty() {
        return Ok(json_body(json));
    }
    let all: Vec<serde_json::Value> = serde_json::from_slice(&json).map_err(ApiError::internal)?;
    let kept: Vec<_> = all
        .into_iter()
        .filter(|img| image_matches(img, &filters))
        .collect();
    Ok(axum::Json(kept).into_response())
}

pub async fn inspect(
    State(sup): State<Supervisor>,
    Path(name): Path<String>,
    version: super::ApiVersion,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .images()
        .inspect(ImageName { name })
        .await
        .map_err(status_error)?;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&resp.into_inner().json).map_err(ApiError::internal)?;
    super::defaults::image(&mut doc, version);
    Ok(axum::Json(doc).into_response())
}

pub async fn history(
    State(sup): State<Supervisor>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let resp = sup
        .agent()?
        .images()
        .history(ImageName { name })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

pub async fn tag(
    State(sup): State<Supervisor>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let repo = q.get("repo").cloned().unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::bad_request(
            "repository name must have at least one component",
        ));
    }
    sup.agent()?
        .images()
        .tag(TagRequest {
            source: name,
            repo,
            tag: q.get("tag").cloned().unwrap_or_default(),
        })
        .await
        .map_err(status_error)?;
    Ok(StatusCode::CREATED.into_response())
}

/// `docker image prune`: dangling images, or with the filter `dangling=false` (`-a`) every
/// image no container uses.
pub async fn prune(
    State(sup): State<Supervisor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = super::system::parse_filters(q.get("filters"))?;
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|d| d == "false" || d == "0"));
    let resp = sup
        .agent()?
        .images()
        .prune(berth_agent_proto::v1::PruneImagesRequest { all })
        .await
        .map_err(status_error)?;
    Ok(super::json_body(resp.into_inner().json))
}

/// `DELETE /images/{name}`: the name may contain slashes.
pub async fn remove_path(
    state: State<Supervisor>,
    Path(name): Path<String>,
    query: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    remove(state, Path(name), query).await
}

pub async fn remove(
    State(sup): State<Supervisor>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "1" || v == "true");
    let resp = sup
        .agent()?
        .images()
        .remove(RemoveImageRequest {
            name,
            force: flag("force"),
            no_prune: flag("noprune"),
        })
        .await
        .map_err(status_error)?;
    Ok(json_body(resp.into_inner().json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter_globs_like_the_docker_cli() {
        assert!(glob("busybox", "busybox"));
        assert!(glob("busy*", "busybox"));
        assert!(!glob("*", "127.0.0.1:5000/app"));
        assert!(glob("*/app", "127.0.0.1:5000/app"));
        let img = json!({"RepoTags": ["127.0.0.1:5000/app:1"]});
        let f = |k: &str, v: &str| HashMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(image_matches(&img, &f("reference", "127.0.0.1:5000/app:1")));
        assert!(image_matches(&img, &f("reference", "127.0.0.1:5000/app")));
        assert!(!image_matches(&img, &f("reference", "busybox")));
        assert!(!image_matches(&img, &f("dangling", "true")));
        assert!(image_matches(
            &json!({"RepoTags": []}),
            &f("dangling", "true")
        ));
    }

    #[test]
    fn auth_header_decodes_url_safe_base64() {
        let mut h = HeaderMap::new();
        // {"username":"u","password":"p?>"} in URL-safe base64 without padding.
        h.insert(
            "X-Registry-Auth",
            "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InA_PiJ9"
                .parse()
                .unwrap(),
        );
        assert_eq!(registry_auth(&h), ("u".into(), "p?>".into()));
        assert_eq!(
            registry_auth(&HeaderMap::new()),
            (String::new(), String::new())
        );
    }

    #[test]
    fn progress_lines_look_like_dockerd() {
        let l = progress_line("abc", "Downloading", 500, 1000);
        assert_eq!(l["progressDetail"]["total"], 1000);
        assert!(l["progress"].as_str().unwrap().ends_with("500B/1.0kB"));
        let l = progress_line("", "Digest: sha256:x", 0, 0);
        assert!(l.get("id").is_none());
    }
}
