//! `docker login`: checks credentials against a registry's `/v2/` the way dockerd's `/auth`
//! does (Basic, or a token from the Bearer realm), through the host's proxy. Nothing is kept:
//! the client stores the credentials and sends them with each pull.

use std::collections::HashMap;
use std::time::Duration;

use super::reference;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Registry(String),
}

/// The registry host a login names: Docker Hub for an empty server or its index URL.
pub fn registry_host(server: &str) -> String {
    let host = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = host
        .strip_suffix("/v1")
        .or(host.strip_suffix("/v2"))
        .unwrap_or(host);
    if host.is_empty() || host == "index.docker.io" || host == "docker.io" {
        "registry-1.docker.io".into()
    } else {
        host.to_owned()
    }
}

/// A `WWW-Authenticate` header as (scheme, parameters).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), params)
}

/// Checks `user`/`password` against the registry `server`.
pub async fn login(
    server: &str,
    user: &str,
    password: &str,
    insecure: &[String],
    proxy: Option<&str>,
) -> Result<(), LoginError> {
    let host = registry_host(server);
    let scheme = if reference::is_insecure(&host, insecure) {
        "http"
    } else {
        "https"
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60));
    if let Some(p) = proxy {
        builder = builder.proxy(
            reqwest::Proxy::all(p).map_err(|e| LoginError::Registry(format!("proxy {p}: {e}")))?,
        );
    }
    let client = builder
        .build()
        .map_err(|e| LoginError::Registry(e.to_string()))?;
    let url = format!("{scheme}://{host}/v2/");
    let unreachable = |e: reqwest::Error| LoginError::Registry(format!("Get \"{url}\": {e}"));
    let res = client.get(&url).send().await.map_err(unreachable)?;
    if res.status().is_success() {
        // A registry that asks for nothing accepts any login, as with dockerd.
        return Ok(());
    }
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .map(parse_challenge);
    let denied = |status: reqwest::StatusCode| {
        LoginError::Unauthorized(format!(
            "login attempt to {url} failed with status: {status}"
        ))
    };
    match challenge {
        Some((s, _)) if s == "basic" => {
            let res = client
                .get(&url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .map_err(unreachable)?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(denied(res.status()))
            }
        }
        Some((s, params)) if s == "bearer" => {
            let realm = params.get("realm").ok_or_else(|| {
                LoginError::Registry("the registry's challenge has no realm".into())
            })?;
            let mut query = vec![("account", user.to_owned())];
            if let Some(service) = params.get("service") {
                query.push(("service", service.clone()));
            }
            let token_url = reqwest::Url::parse_with_params(realm, &query)
                .map_err(|e| LoginError::Registry(format!("token realm {realm}: {e}")))?;
            let res = client
                .get(token_url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .map_err(|e| LoginError::Registry(format!("Get \"{realm}\": {e}")))?;
            match res.status() {
                s if s.is_success() => Ok(()),
                reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                    Err(LoginError::Unauthorized(format!(
                        "Get \"{url}\": unauthorized: incorrect username or password"
                    )))
                }
                s => Err(denied(s)),
            }
        }
        _ => Err(denied(res.status())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_hosts() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="a,b""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "a,b");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (s.as_str(), p["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        assert_eq!(registry_host(""), "registry-1.docker.io");
        assert_eq!(
            registry_host("https://index.docker.io/v1/"),
            "registry-1.docker.io"
        );
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
