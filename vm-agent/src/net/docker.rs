//! Docker Engine API views of networks: the network document of `docker network inspect` and
//! `ls`, and a container's `NetworkSettings`.

use std::collections::HashMap;

use bollard_stubs::models::{EndpointSettings, NetworkSettings};
use serde_json::{Value, json};

use super::{Attachment, Endpoint, NetworkRecord, Networks, network_mode, read_attachment};
use crate::containers::{ContainerRecord, ContainerStore};

/// The network document; `containers` fills its `Containers` map (inspect does, list not).
pub fn network_json(nets: &Networks, n: &NetworkRecord, store: Option<&ContainerStore>) -> Value {
    let mut config = Vec::new();
    if let Some(subnet) = &n.subnet {
        let mut entry =
            json!({ "Subnet": subnet, "Gateway": n.gateway.clone().unwrap_or_default() });
        if let Some(range) = &n.ip_range {
            entry["IPRange"] = json!(range);
        }
        if !n.aux_addresses.is_empty() {
            entry["AuxiliaryAddresses"] = json!(n.aux_addresses);
        }
        config.push(entry);
    }
    if let (Some(subnet), Some(gateway)) = (&n.subnet6, &n.gateway6) {
        config.push(json!({ "Subnet": subnet, "Gateway": gateway }));
    }
    let mut containers = serde_json::Map::new();
    if let Some(store) = store {
        for (cid, name, ep) in nets.endpoints_on(store, &n.id) {
            containers.insert(
                cid,
                json!({
                    "Name": name,
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                    "IPv6Address": ep.ip6.map(|(ip, prefix, _)| format!("{ip}/{prefix}")).unwrap_or_default(),
                }),
            );
        }
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": n.subnet6.is_some(),
        "IPAM": { "Driver": "default", "Options": null, "Config": config },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}

fn endpoint_settings(
    rec: &ContainerRecord,
    cfg: &EndpointSettings,
    n: Option<&NetworkRecord>,
    ep: Option<&Endpoint>,
) -> EndpointSettings {
    let mut s = cfg.clone();
    s.network_id = Some(n.map(|n| n.id.clone()).unwrap_or_default());
    s.endpoint_id = Some(ep.map(|e| e.endpoint_id.clone()).unwrap_or_default());
    s.gateway = Some(ep.map(|e| e.gateway.to_string()).unwrap_or_default());
    s.ip_address = Some(ep.map(|e| e.ip.to_string()).unwrap_or_default());
    s.ip_prefix_len = Some(ep.map(|e| i64::from(e.prefix)).unwrap_or(0));
    // Not plugged in: the address asked for, if any, as dockerd shows it before a start.
    s.mac_address = Some(
        ep.map(|e| e.mac.clone())
            .or_else(|| cfg.mac_address.clone())
            .unwrap_or_default(),
    );
    let ip6 = ep.and_then(|e| e.ip6);
    s.ipv6_gateway = Some(ip6.map(|(_, _, gw)| gw.to_string()).unwrap_or_default());
    s.global_ipv6_address = Some(ip6.map(|(ip, _, _)| ip.to_string()).unwrap_or_default());
    s.global_ipv6_prefix_len = Some(ip6.map_or(0, |(_, prefix, _)| i64::from(prefix)));
    if s.aliases.is_none() && ep.is_some_and(|e| e.network != "bridge") {
        s.aliases = Some(Vec::new());
    }
    // The names other containers on a user network resolve it by (API 1.44's DNSNames):
    // its name, its short ID, then its aliases, as dockerd lists them.
    if n.is_some_and(|n| !matches!(n.name.as_str(), "bridge" | "host" | "none")) {
        let mut names = vec![rec.name.clone(), rec.id[..12.min(rec.id.len())].to_owned()];
        for a in s.aliases.iter().flatten() {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        s.dns_names = Some(names);
    }
    s
}

/// `NetworkSettings` of a container: an entry per network it belongs to, with addresses while
/// it runs; the top-level address fields describe the default bridge, as dockerd's do.
pub fn network_settings(
    rec: &ContainerRecord,
    dir: &std::path::Path,
    running: bool,
) -> NetworkSettings {
    let att: Attachment = if running {
        read_attachment(dir).unwrap_or_default()
    } else {
        Attachment::default()
    };
    // One read of the network records for all of the container's networks.
    let records = super::get().map(|n| n.all()).unwrap_or_default();
    let find = |name: &str| records.iter().find(|n| n.name == name).cloned();
    let mut networks: HashMap<String, EndpointSettings> = HashMap::new();
    let mode = network_mode(&rec.host_config);
    if mode == "host" || mode == "none" {
        networks.insert(
            mode.clone(),
            endpoint_settings(
                rec,
                &EndpointSettings::default(),
                find(&mode).as_ref(),
                None,
            ),
        );
    }
    for (name, cfg) in &rec.networks {
        let ep = att.endpoints.iter().find(|e| &e.network == name);
        networks.insert(
            name.clone(),
            endpoint_settings(rec, cfg, find(name).as_ref(), ep),
        );
    }
    let bridge = att.endpoints.iter().find(|e| e.network == "bridge");
    NetworkSettings {
        bridge: Some(String::new()),
        sandbox_id: Some(att.sandbox_id.clone()),
        hairpin_mode: Some(false),
        link_local_ipv6_address: Some(String::new()),
        link_local_ipv6_prefix_len: Some(0),
        ports: Some(HashMap::new()),
        sandbox_key: Some(
            att.netns
                .as_ref()
                .map(|ns| format!("{}/{ns}", super::link::NETNS_DIR))
                .unwrap_or_default(),
        ),
        secondary_ip_addresses: None,
        secondary_ipv6_addresses: None,
        endpoint_id: Some(bridge.map(|e| e.endpoint_id.clone()).unwrap_or_default()),
        gateway: Some(bridge.map(|e| e.gateway.to_string()).unwrap_or_default()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ip_address: Some(bridge.map(|e| e.ip.to_string()).unwrap_or_default()),
        ip_prefix_len: Some(bridge.map(|e| i64::from(e.prefix)).unwrap_or(0)),
        ipv6_gateway: Some(String::new()),
        mac_address: Some(bridge.map(|e| e.mac.clone()).unwrap_or_default()),
        networks: Some(networks),
    }
}

/// The address the engine's port forwarder should reach the container at: its first endpoint.
pub fn container_ip(dir: &std::path::Path) -> Option<std::net::Ipv4Addr> {
    read_attachment(dir)?.endpoints.first().map(|e| e.ip)
}
