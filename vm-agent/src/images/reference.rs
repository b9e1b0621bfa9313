//! Image names as users write them: `busybox`, `busybox:1.36`, `127.0.0.1:5000/app@sha256:...`.
//! Normalizes them the way the docker CLI and dockerd do (Docker Hub by default, `library/` for
//! official images, `latest` when no tag) and back to the familiar short form for `RepoTags`.
//! Also owns the rule for which registries are spoken to over plain HTTP ([`is_insecure`]).

use std::net::IpAddr;
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

/// Splits `host[:port]`, `[v6]:port`, `[v6]` or a bare IPv6 address into the host (brackets
/// removed) and the port, if any.
pub fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => match tail.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => (registry, None),
            },
            None => (registry, None),
        };
    }
    match registry.split_once(':') {
        // Two colons or more without brackets: a bare IPv6 address, no port.
        Some((_, port)) if port.contains(':') => (registry, None),
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    }
}

/// Whether `host` (brackets removed) is the loopback network: `localhost`, an address in
/// 127.0.0.0/8, `::1` or `::ffff:127.x.y.z`. Addresses are parsed, never matched by prefix: a
/// name such as `127.evil.example` is whatever DNS says, so it is not loopback.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Whether a registry is plain HTTP: listed as insecure (by `host:port`, host, or, for an IP
/// address, a CIDR such as `10.0.0.0/8`, as dockerd's `insecure-registries`), or on the
/// loopback network (127.0.0.0/8, ::1 and localhost are insecure by default, as in dockerd).
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let registry = registry.to_ascii_lowercase();
    let (host, _) = split_host_port(&registry);
    if is_loopback(host) {
        return true;
    }
    let ip = host.parse::<IpAddr>().ok();
    insecure.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        let entry = entry
            .strip_prefix("http://")
            .or_else(|| entry.strip_prefix("https://"))
            .unwrap_or(&entry)
            .trim_end_matches('/');
        if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
            return in_cidr(ip, net, bits);
        }
        entry == registry || split_host_port(entry) == (host, None)
    })
}

/// Whether `ip` lies in the network `net/bits`; false when that is not a CIDR.
fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let Ok(bits) = bits.parse::<u32>() else {
        return false;
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net.parse::<IpAddr>()) {
        (IpAddr::V4(ip), Ok(IpAddr::V4(net))) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), Ok(IpAddr::V6(net))) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
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

    #[test]
    fn loopback_is_an_address_not_a_name_prefix() {
        for registry in [
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:443",
            "localhost",
            "LOCALHOST:5000",
            "[::1]",
            "[::1]:5000",
            "::1",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(is_insecure(registry, &[]), "{registry}");
        }
        for registry in [
            "127.evil.example",
            "127.evil.example:5000",
            "127.0.0.1.nip.io:5000",
            "localhost.evil.example",
            "[::2]:5000",
            "[::1]x:5000",
            "128.0.0.1:5000",
            "[::1.evil]:5000",
            "1.2.3.4",
        ] {
            assert!(!is_insecure(registry, &[]), "{registry}");
        }
    }

    #[test]
    fn hosts_ports_and_cidrs() {
        assert_eq!(split_host_port("[::1]:5000"), ("::1", Some("5000")));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("reg:5000"), ("reg", Some("5000")));
        assert_eq!(split_host_port("reg"), ("reg", None));
        // A listed host covers its every port; a listed host:port only that port.
        assert!(is_insecure("reg.lan:5000", &["reg.lan".into()]));
        assert!(!is_insecure("reg.lan:5001", &["reg.lan:5000".into()]));
        assert!(!is_insecure("reg.lan.evil:5000", &["reg.lan".into()]));
        assert!(is_insecure("[fd00::5]:5000", &["[fd00::5]:5000".into()]));
        assert!(is_insecure("[fd00::5]:5000", &["fd00::5".into()]));
        // CIDRs, as dockerd's insecure-registries, match addresses only.
        let lan = ["10.0.0.0/8".to_owned(), "fd00::/8".to_owned()];
        assert!(is_insecure("10.1.2.3:5000", &lan));
        assert!(is_insecure("[fd12::1]:5000", &lan));
        assert!(!is_insecure("11.1.2.3:5000", &lan));
        assert!(!is_insecure("10.evil.example:5000", &lan));
        assert!(is_insecure("1.2.3.4", &["0.0.0.0/0".into()]));
        assert!(!is_insecure("1.2.3.4", &["1.2.3.0/40".into()]));
    }
}
