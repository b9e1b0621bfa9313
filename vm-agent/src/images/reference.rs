//! Image names as users write them: `busybox`, `busybox:1.36`, `127.0.0.1:5000/app@sha256:...`.
//! Normalizes them the way the docker CLI and dockerd do (Docker Hub by default, `library/` for
//! official images, `latest` when no tag) and back to the familiar short form for `RepoTags`.

use std::str::FromStr;

pub use oci_client::Reference;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, thiserror::Error)]
#[error("invalid reference format: {input:?}: {reason}")]
pub struct BadReference {
    pub input: String,
    pub reason: String,
}

/// Parses a user-written image name.
pub fn parse(input: &str) -> Result<Reference, BadReference> {
    let bad = |reason: String| BadReference {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() || input != input.trim() {
        return Err(bad("empty or padded with spaces".into()));
    }
    if input.chars().any(|c| c.is_ascii_uppercase()) && !input.contains('@') {
        // dockerd: "repository name must be lowercase"; only the tag may have capitals.
        let name = match input.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => input,
        };
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase".into()));
        }
    }
    Reference::from_str(input).map_err(|e| bad(e.to_string()))
}

/// `repo` without the registry when it is Docker Hub, and without `library/` for official images.
pub fn familiar_repository(r: &Reference) -> String {
    if r.registry() == DOCKER_HUB {
        r.repository()
            .strip_prefix("library/")
            .unwrap_or(r.repository())
            .to_owned()
    } else {
        format!("{}/{}", r.registry(), r.repository())
    }
}

/// `busybox:latest`, `127.0.0.1:5000/app:v1`: how `RepoTags` shows a tagged reference.
pub fn familiar_tag(r: &Reference) -> Option<String> {
    r.tag().map(|t| format!("{}:{t}", familiar_repository(r)))
}

/// `busybox@sha256:...`: how `RepoDigests` shows a pulled manifest.
pub fn familiar_digest(r: &Reference, digest: &str) -> String {
    format!("{}@{digest}", familiar_repository(r))
}

/// Whether a registry is plain HTTP: listed as insecure, or on the loopback network
/// (127.0.0.0/8 and localhost are insecure by default, as in dockerd).
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost"
        || host.starts_with("127.")
        || host == "[::1]"
        || insecure.iter().any(|i| {
            let i = i
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            i == registry || i == host
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        let r = parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(familiar_tag(&r).unwrap(), "busybox:latest");
        let r = parse("user/app:1.0").unwrap();
        assert_eq!(familiar_tag(&r).unwrap(), "user/app:1.0");
    }

    #[test]
    fn other_registries_keep_their_host() {
        let r = parse("127.0.0.1:5000/test/multi:v2").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(familiar_tag(&r).unwrap(), "127.0.0.1:5000/test/multi:v2");
        assert_eq!(
            familiar_digest(&r, "sha256:ab"),
            "127.0.0.1:5000/test/multi@sha256:ab"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(parse("").is_err());
        assert!(parse("BusyBox").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("busybox:Latest").is_ok());
    }

    #[test]
    fn loopback_is_insecure_by_default() {
        assert!(is_insecure("127.0.0.1:5000", &[]));
        assert!(is_insecure("localhost:5000", &[]));
        assert!(!is_insecure("registry.example.com", &[]));
        assert!(is_insecure("reg.lan:5000", &["reg.lan:5000".into()]));
        assert!(is_insecure(
            "reg.lan:5000",
            &["http://reg.lan:5000/".into()]
        ));
    }
}
