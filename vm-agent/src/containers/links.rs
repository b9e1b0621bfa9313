//! Legacy links (`--link child:alias`) on the default bridge, as dockerd keeps them: checked
//! and written as `/child:/parent/alias` at create, turned into the linking container's
//! `ALIAS_*` environment and `/etc/hosts` lines at each start (the child must be running
//! then), listed among the child's names, and removed with `DELETE /containers/parent/alias
//! ?link=1`. On user networks links are per-endpoint DNS aliases instead (see `net`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{ContainerError, ContainerRecord, ContainerStore, Status, lifecycle};

/// `(child, alias)` of one `HostConfig.Links` entry: `child:alias`, `child` (the alias is
/// the name), or the stored `/child:/parent/alias`.
pub fn parse(entry: &str) -> Result<(String, String), ContainerError> {
    let (child, alias) = entry.split_once(':').unwrap_or((entry, entry));
    let child = child.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or_default();
    if child.is_empty() || alias.is_empty() {
        return Err(ContainerError::Invalid(format!(
            "invalid link {entry:?}: expected name:alias"
        )));
    }
    Ok((child.to_owned(), alias.to_owned()))
}

/// The links of a container being created as dockerd stores them, each child checked to
/// exist (dockerd's words when one does not).
pub fn normalize(
    store: &ContainerStore,
    parent: &str,
    links: &[String],
) -> Result<Vec<String>, ContainerError> {
    links
        .iter()
        .map(|entry| {
            let (child, alias) = parse(entry)?;
            let id = store.resolve(&child).map_err(|_| {
                ContainerError::NotFound(format!(
                    "could not get container for {child}: No such container: {child}"
                ))
            })?;
            let name = store.record(&id)?.name;
            Ok(format!("/{name}:/{parent}/{alias}"))
        })
        .collect()
}

/// What a start adds for a container's links: environment, and `/etc/hosts` entries
/// (`name:address`).
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    pub env: Vec<String>,
    pub hosts: Vec<String>,
}

/// The environment and hosts entries `rec`'s links give it; `address` finds a running
/// container's address on the default bridge.
pub fn resolve(
    store: &ContainerStore,
    rec: &ContainerRecord,
    address: &dyn Fn(&str) -> Option<Ipv4Addr>,
) -> Result<Resolved, ContainerError> {
    let mut out = Resolved::default();
    for entry in rec.host_config.links.iter().flatten() {
        let (child, alias) = parse(entry)?;
        let not_running = || {
            ContainerError::Failed(format!(
                "Cannot link to a non running container: /{child} AS /{}/{alias}",
                rec.name
            ))
        };
        let id = store.resolve(&child).map_err(|_| not_running())?;
        if lifecycle::refresh(store, &id).status != Status::Running {
            return Err(not_running());
        }
        let child_rec = store.record(&id)?;
        let ip = address(&id).ok_or_else(not_running)?;
        out.env.extend(env(&rec.name, &alias, ip, &child_rec));
        let mut names = vec![alias.clone()];
        names.extend(child_rec.config.hostname.clone().filter(|h| !h.is_empty()));
        if alias != child_rec.name {
            names.push(child_rec.name.clone());
        }
        out.hosts
            .extend(names.into_iter().map(|n| format!("{n}:{ip}")));
    }
    Ok(out)
}

/// dockerd's link variables: `ALIAS_NAME`, `ALIAS_PORT` (the lowest port), per port
/// `ALIAS_PORT_<port>_<PROTO>` and its `_ADDR`, `_PORT`, `_PROTO`, and the child's own
/// environment as `ALIAS_ENV_*` (less HOME and PATH).
fn env(parent: &str, alias: &str, ip: Ipv4Addr, child: &ContainerRecord) -> Vec<String> {
    let prefix = alias.to_ascii_uppercase().replace('-', "_");
    let mut ports: BTreeSet<(u16, String)> = BTreeSet::new();
    let exposed = child.config.exposed_ports.iter().flat_map(|p| p.keys());
    let published = child
        .host_config
        .port_bindings
        .iter()
        .flat_map(|p| p.keys());
    for key in exposed.chain(published) {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        if let Ok(port) = port.parse::<u16>() {
            ports.insert((port, proto.to_ascii_lowercase()));
        }
    }
    let mut out = Vec::new();
    if let Some((port, proto)) = ports.first() {
        out.push(format!("{prefix}_PORT={proto}://{ip}:{port}"));
    }
    for (port, proto) in &ports {
        let var = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        out.push(format!("{var}={proto}://{ip}:{port}"));
        out.push(format!("{var}_ADDR={ip}"));
        out.push(format!("{var}_PORT={port}"));
        out.push(format!("{var}_PROTO={proto}"));
    }
    out.push(format!("{prefix}_NAME=/{parent}/{alias}"));
    for e in child.config.env.iter().flatten() {
        if let Some((k, v)) = e.split_once('=')
            && k != "HOME"
            && k != "PATH"
        {
            out.push(format!("{prefix}_ENV_{k}={v}"));
        }
    }
    out
}

/// The link names (`/parent/alias`) other containers know the container named `child` by.
pub fn names_of(records: &[ContainerRecord], child: &str) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| r.host_config.links.iter().flatten())
        .filter_map(|entry| {
            let (c, link) = entry.split_once(':')?;
            (c.trim_start_matches('/') == child && link.starts_with('/')).then(|| link.to_owned())
        })
        .collect()
}

/// `DELETE /containers/parent/alias?link=1`: takes the link off the parent's record.
pub fn remove(store: &ContainerStore, parent: &str, alias: &str) -> Result<(), ContainerError> {
    let id = store
        .resolve(parent)
        .map_err(|_| ContainerError::NotFound(format!("No such container: {parent}/{alias}")))?;
    let mut rec = store.record(&id)?;
    let links = rec.host_config.links.take().unwrap_or_default();
    let before = links.len();
    let kept: Vec<String> = links
        .into_iter()
        .filter(|l| parse(l).map_or(true, |(_, a)| a != alias))
        .collect();
    if kept.len() == before {
        return Err(ContainerError::NotFound(format!(
            "No such container: {parent}/{alias}"
        )));
    }
    rec.host_config.links = (!kept.is_empty()).then_some(kept);
    store.save_record(&rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn record(name: &str) -> ContainerRecord {
        crate::containers::test_record(&format!("{name}0000000000000000"), name)
    }

    #[test]
    fn link_entries_in_every_form_clients_send() {
        let p = |s| parse(s).unwrap();
        assert_eq!(p("db:alias"), ("db".into(), "alias".into()));
        assert_eq!(p("db"), ("db".into(), "db".into()));
        assert_eq!(p("/db:/web/alias"), ("db".into(), "alias".into()));
        assert!(parse(":x").is_err());
    }

    #[test]
    fn the_variables_dockerd_gives_a_linking_container() {
        let mut child = record("lc");
        child.config.env = Some(vec!["FOO=1".into(), "HOME=/x".into(), "PATH=/bin".into()]);
        child.config.exposed_ports = Some(HashMap::from([
            ("80/tcp".to_owned(), HashMap::new()),
            ("53/udp".to_owned(), HashMap::new()),
        ]));
        let env = env("lp", "db", Ipv4Addr::new(172, 17, 0, 2), &child);
        for want in [
            "DB_PORT=udp://172.17.0.2:53",
            "DB_PORT_53_UDP=udp://172.17.0.2:53",
            "DB_PORT_53_UDP_ADDR=172.17.0.2",
            "DB_PORT_80_TCP_PORT=80",
            "DB_PORT_80_TCP_PROTO=tcp",
            "DB_NAME=/lp/db",
            "DB_ENV_FOO=1",
        ] {
            assert!(env.contains(&want.to_owned()), "{want} in {env:?}");
        }
        assert!(
            !env.iter()
                .any(|e| e.starts_with("DB_ENV_HOME") || e.starts_with("DB_ENV_PATH"))
        );
    }

    #[test]
    fn a_child_is_known_by_its_link_names() {
        let mut parent = record("lp");
        parent.host_config.links = Some(vec!["/lc:/lp/db".into()]);
        let all = [parent, record("lc")];
        assert_eq!(names_of(&all, "lc"), ["/lp/db"]);
        assert!(names_of(&all, "lp").is_empty());
    }
}
