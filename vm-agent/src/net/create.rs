//! `POST /networks/create`: a user-defined bridge network from a Docker create body (name,
//! driver, IPv4 and IPv6 IPAM config, options, labels), checked as dockerd checks it, stored,
//! and its bridge brought up.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::subnet::{self, Subnet};
use super::subnet6::Subnet6;
use super::{
    NetError, NetworkRecord, Networks, Result, UPLINK_SUBNET, link, network_attrs, valid_ifname,
};
use crate::containers::random_hex;

impl Networks {
    /// `POST /networks/create`: a user-defined bridge network. Returns its ID.
    pub fn create(&self, body: &serde_json::Value) -> Result<String> {
        let name = body["Name"].as_str().unwrap_or("");
        // dockerd takes any name but an empty one ("a b", ".x", "été"): a network's name is
        // only ever a key, never a path, an interface or a DNS name (those come from its ID).
        if name.is_empty() {
            return Err(NetError::Invalid(
                "invalid name: network name must not be empty".into(),
            ));
        }
        let driver = body["Driver"].as_str().filter(|d| !d.is_empty());
        match driver.unwrap_or("bridge") {
            "bridge" => {}
            "host" | "null" => {
                return Err(NetError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    driver.unwrap_or_default()
                )));
            }
            other => {
                return Err(NetError::NotFound(format!(
                    "plugin \"{other}\" not found: Berth has the bridge driver"
                )));
            }
        }
        let enable_ipv6 = body["EnableIPv6"].as_bool() == Some(true);
        // IPAM entries are IPv4 or IPv6 by their subnet (or gateway) address.
        let (configs6, configs): (Vec<_>, Vec<_>) = body["IPAM"]["Config"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .partition(|c| {
                [&c["Subnet"], &c["Gateway"]]
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| s.contains(':')))
            });
        if configs.len() > 1 {
            return Err(NetError::Invalid(
                "Berth supports one IPv4 subnet per network".into(),
            ));
        }
        if configs6.len() > 1 {
            return Err(NetError::Invalid(
                "Berth supports one IPv6 subnet per network".into(),
            ));
        }
        let wanted6 = configs6
            .first()
            .filter(|_| enable_ipv6)
            .map(|c| -> Result<(Option<Subnet6>, Option<Ipv6Addr>)> {
                let subnet = c["Subnet"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<Subnet6>().map_err(NetError::Invalid))
                    .transpose()?;
                let gateway = c["Gateway"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(|g| {
                        g.parse::<Ipv6Addr>().map_err(|_| {
                            NetError::Invalid(format!("invalid gateway address {g:?}"))
                        })
                    })
                    .transpose()?;
                Ok((subnet, gateway))
            })
            .transpose()?
            .unwrap_or_default();
        let wanted_subnet = configs
            .first()
            .and_then(|c| c["Subnet"].as_str())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<Subnet>().map_err(NetError::Invalid))
            .transpose()?;
        let wanted_gateway = configs
            .first()
            .and_then(|c| c["Gateway"].as_str())
            .filter(|s| !s.is_empty())
            .map(|g| {
                g.parse::<Ipv4Addr>()
                    .map_err(|_| NetError::Invalid(format!("invalid gateway address {g:?}")))
            })
            .transpose()?;
        let ip_range = configs
            .first()
            .and_then(|c| c["IPRange"].as_str())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<Subnet>().map_err(NetError::Invalid))
            .transpose()?;
        let aux_addresses: BTreeMap<String, String> = configs
            .first()
            .and_then(|c| c["AuxiliaryAddresses"].as_object())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let a = v.as_str().unwrap_or_default();
                        a.parse::<Ipv4Addr>()
                            .map(|_| (k.clone(), a.to_owned()))
                            .map_err(|_| {
                                NetError::Invalid(format!("invalid auxiliary address {a:?}"))
                            })
                    })
                    .collect::<Result<_>>()
            })
            .transpose()?
            .unwrap_or_default();
        if wanted_gateway.is_some() && wanted_subnet.is_none() {
            return Err(NetError::Invalid(
                "a gateway needs a subnet (--subnet) to belong to".into(),
            ));
        }

        let _g = self.lock.lock().unwrap();
        let all = self.all();
        if all.iter().any(|n| n.name == name) {
            return Err(NetError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let taken: Vec<Subnet> = all
            .iter()
            .filter_map(|n| n.subnet())
            .chain([UPLINK_SUBNET])
            .collect();
        let subnet = match wanted_subnet {
            Some(s) => {
                if taken.iter().any(|t| t.overlaps(&s)) {
                    return Err(NetError::Forbidden(
                        "Pool overlaps with other one on this address space".into(),
                    ));
                }
                s
            }
            None => subnet::default_pools()
                .find(|p| !taken.iter().any(|t| t.overlaps(p)))
                .ok_or_else(|| {
                    NetError::Forbidden(
                        "all predefined address pools have been fully subnetted".into(),
                    )
                })?,
        };
        if let Some(range) = ip_range
            && !(subnet.contains(range.addr) && range.prefix >= subnet.prefix)
        {
            return Err(NetError::Invalid(format!(
                "the ip-range {range} is not inside the subnet {subnet}"
            )));
        }
        let gateway = wanted_gateway.unwrap_or_else(|| subnet.nth(1).unwrap());
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(NetError::Invalid(format!(
                "the gateway {gateway} is not a host address of {subnet}"
            )));
        }
        let id = random_hex(32);
        let v6 = if enable_ipv6 {
            let subnet6 = wanted6.0.unwrap_or_else(|| Subnet6::unique_local(&id));
            let taken6 = all.iter().filter_map(|n| n.v6()).map(|(s, _)| s);
            if taken6.into_iter().any(|t| t.overlaps(&subnet6)) {
                return Err(NetError::Forbidden(
                    "Pool overlaps with other one on this address space".into(),
                ));
            }
            let gateway6 = wanted6.1.or_else(|| subnet6.nth(1)).unwrap_or(subnet6.addr);
            if !subnet6.contains(gateway6) || gateway6 == subnet6.addr {
                return Err(NetError::Invalid(format!(
                    "the gateway {gateway6} is not a host address of {subnet6}"
                )));
            }
            Some((subnet6, gateway6))
        } else {
            None
        };
        let str_map = |v: &serde_json::Value| -> HashMap<String, String> {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let options = str_map(&body["Options"]);
        let bridge = options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if !valid_ifname(&bridge) || link::link_exists(&bridge) {
            return Err(NetError::Invalid(format!(
                "bridge name {bridge:?} is taken or not a valid interface name"
            )));
        }
        let rec = NetworkRecord {
            id: id.clone(),
            name: name.to_owned(),
            driver: "bridge".into(),
            created: crate::clock::now(),
            subnet: Some(subnet.to_string()),
            gateway: Some(gateway.to_string()),
            bridge: bridge.clone(),
            internal: body["Internal"].as_bool().unwrap_or(false),
            attachable: body["Attachable"].as_bool().unwrap_or(false),
            labels: str_map(&body["Labels"]),
            options,
            user_ipam: wanted_subnet.is_some(),
            subnet6: v6.map(|(s, _)| s.to_string()),
            gateway6: v6.map(|(_, g)| g.to_string()),
            ip_range: ip_range.map(|r| r.to_string()),
            aux_addresses,
        };
        link::ensure_bridge(&bridge, gateway, &subnet, v6).map_err(NetError::Failed)?;
        if let Err(e) = self.save(&rec).and_then(|_| self.apply_rules()) {
            let _ = std::fs::remove_file(self.path(&id));
            let _ = link::delete_link(&bridge);
            return Err(e);
        }
        crate::events::emit("network", "create", &id, network_attrs(&rec));
        Ok(id)
    }
}
