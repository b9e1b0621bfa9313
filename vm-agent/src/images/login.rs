//! `docker login`: checks credentials against a registry's `/v2/` the way dockerd's `/auth`
//! does (Basic, or a token from the Bearer realm), through the host's proxy. Nothing is kept:
//! the client stores the credentials and sends them with each pull.
//!
//! Owns where the credentials may go ([`check_credential_target`]): anywhere over HTTPS (Docker
//! Hub's token realm, auth.docker.io, is another host than its registry), over plain HTTP only
//! to the registry's own host when that registry is insecure (configured, or loopback).
//! Redirects cannot carry them further: reqwest drops `Authorization` when a redirect changes
//! the scheme, host or port.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::reference;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Registry(String),
}

/// Whether the credentials of a login to `registry` (`host[:port]`, as [`registry_host`]
/// gives it) may be sent to `target`. Over HTTPS, yes, wherever it is: a Bearer realm is often
/// another host (Docker Hub's is auth.docker.io) and the docker CLI sends them there too. Over
/// plain HTTP only when `target` is on the registry's own host (any port) and that registry is
/// spoken to over HTTP anyway: listed in `insecure` or on the loopback network. Anything else
/// is refused with the reason.
pub fn check_credential_target(
    target: &reqwest::Url,
    registry: &str,
    insecure: &[String],
) -> Result<(), LoginError> {
    let refuse = |why: &str| {
        Err(LoginError::Registry(format!(
            "refusing to send the credentials for {registry} to {target}: {why}"
        )))
    };
    match target.scheme() {
        "https" => return Ok(()),
        "http" => {}
        _ => return refuse("not an http(s) URL"),
    }
    let (host, _) = reference::split_host_port(registry);
    let target_host = target.host_str().unwrap_or("");
    let target_host = target_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(target_host);
    let same_host = match (target_host.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), Err(_)) => target_host.eq_ignore_ascii_case(host),
        _ => false,
    };
    if !same_host {
        return refuse("plain HTTP to a host other than the registry's");
    }
    if !reference::is_insecure(registry, insecure) {
        return refuse(
            "plain HTTP to a registry that is neither loopback nor listed in insecure-registries",
        );
    }
    Ok(())
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
            let target = reqwest::Url::parse(&url)
                .map_err(|e| LoginError::Registry(format!("registry URL {url}: {e}")))?;
            check_credential_target(&target, &host, insecure)?;
            if scheme == "http" && !reference::is_loopback(reference::split_host_port(&host).0) {
                tracing::warn!(
                    registry = host,
                    "sending credentials over plain HTTP: the registry is listed in insecure-registries"
                );
            }
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
            check_credential_target(&token_url, &host, insecure)?;
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

    fn allowed(target: &str, registry: &str, insecure: &[&str]) -> bool {
        let insecure: Vec<String> = insecure.iter().map(|s| s.to_string()).collect();
        let url = reqwest::Url::parse(target).unwrap();
        match check_credential_target(&url, registry, &insecure) {
            Ok(()) => true,
            Err(LoginError::Registry(m)) => {
                assert!(m.contains("refusing") && m.contains(registry), "{m}");
                false
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn credentials_go_over_https_anywhere() {
        // Docker Hub: the realm is another host, over HTTPS, as the docker CLI does it.
        assert!(allowed(
            "https://auth.docker.io/token?service=registry.docker.io",
            "registry-1.docker.io",
            &[]
        ));
        assert!(allowed(
            "https://registry-1.docker.io/v2/",
            "registry-1.docker.io",
            &[]
        ));
        assert!(allowed(
            "https://auth.example.com/token",
            "127.0.0.1:5000",
            &[]
        ));
    }

    #[test]
    fn plain_http_only_to_an_insecure_registrys_own_host() {
        // Loopback and configured-insecure registries, and realms on their own host.
        assert!(allowed("http://127.0.0.1:5000/v2/", "127.0.0.1:5000", &[]));
        assert!(allowed(
            "http://127.0.0.1:5001/token",
            "127.0.0.1:5000",
            &[]
        ));
        assert!(allowed("http://localhost:5000/v2/", "localhost:5000", &[]));
        assert!(allowed("http://[::1]:5000/token", "[::1]:5000", &[]));
        assert!(allowed(
            "http://reg.lan:5000/v2/",
            "reg.lan:5000",
            &["reg.lan:5000"]
        ));
        assert!(allowed(
            "http://REG.lan/token",
            "reg.lan:5000",
            &["reg.lan:5000"]
        ));
        // Basic over plain HTTP to a host that is not loopback and not configured.
        assert!(!allowed(
            "http://registry.example.com/v2/",
            "registry.example.com",
            &[]
        ));
        assert!(!allowed(
            "http://127.evil.example:5000/v2/",
            "127.evil.example:5000",
            &[]
        ));
        // A plain-HTTP realm elsewhere: another host, even from a loopback or insecure registry.
        assert!(!allowed(
            "http://auth.docker.io/token",
            "registry-1.docker.io",
            &[]
        ));
        assert!(!allowed("http://evil.example/token", "127.0.0.1:5000", &[]));
        assert!(!allowed(
            "http://10.0.0.9/token",
            "reg.lan:5000",
            &["reg.lan:5000"]
        ));
        assert!(!allowed(
            "http://127.0.0.2:5000/token",
            "127.0.0.1:5000",
            &[]
        ));
        // The registry's own host, but the registry is not insecure.
        assert!(!allowed("http://reg.example/token", "reg.example", &[]));
        // Neither HTTP nor HTTPS.
        assert!(!allowed("ftp://127.0.0.1/token", "127.0.0.1:5000", &[]));
    }
}
