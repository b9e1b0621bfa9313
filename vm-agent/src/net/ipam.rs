//! Address management: the IPv4 address of a new endpoint (asked for, or the lowest free one
//! in the network's IP range, never the gateway or an auxiliary address) and its IPv6 address
//! on a network with IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};

use bollard_stubs::models::EndpointSettings;

use super::subnet::Subnet;
use super::{NetError, NetworkRecord, Networks, Result};

impl Networks {
    /// The lowest free host address of `n` (or `wanted`, if free).
    pub(super) fn allocate(&self, n: &NetworkRecord, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        let subnet = n
            .subnet()
            .ok_or_else(|| NetError::Failed(format!("network {} has no subnet", n.name)))?;
        let gateway = n.gateway_ip();
        let used: Vec<Ipv4Addr> = self
            .live
            .lock()
            .unwrap()
            .values()
            .flat_map(|l| l.endpoints.iter())
            .filter(|e| e.network_id == n.id)
            .map(|e| e.ip)
            .chain(n.aux_addresses.values().filter_map(|a| a.parse().ok()))
            .collect();
        if let Some(ip) = wanted {
            if !subnet.contains(ip) || ip == subnet.addr || ip == subnet.broadcast() {
                return Err(NetError::Invalid(format!(
                    "no configured subnet or ip-range contain the IP address {ip}"
                )));
            }
            if used.contains(&ip) || Some(ip) == gateway {
                return Err(NetError::Forbidden(format!(
                    "Address already in use: {ip} on network {}",
                    n.name
                )));
            }
            return Ok(ip);
        }
        // From the network's IPRange when it has one, else the whole subnet.
        let range = n
            .ip_range
            .as_deref()
            .and_then(|r| r.parse::<Subnet>().ok())
            .unwrap_or(subnet);
        (0..=range.host_count().saturating_add(1))
            .filter_map(|i| range.nth(i))
            .filter(|ip| subnet.contains(*ip) && *ip != subnet.addr && *ip != subnet.broadcast())
            .find(|ip| !used.contains(ip) && Some(*ip) != gateway)
            .ok_or_else(|| {
                NetError::Forbidden(format!("no available IPv4 addresses on network {}", n.name))
            })
    }

    /// The IPv6 address of a new endpoint on `n` (none without IPv6): the one asked for, or
    /// the same host number as its IPv4 address (`offset`).
    pub(super) fn allocate6(
        &self,
        n: &NetworkRecord,
        cfg: &EndpointSettings,
        offset: u32,
    ) -> Result<Option<(Ipv6Addr, u8, Ipv6Addr)>> {
        let Some((subnet6, gateway6)) = n.v6() else {
            return Ok(None);
        };
        let wanted = cfg
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv6_address.as_deref())
            .filter(|s| !s.is_empty());
        let ip6 = match wanted {
            Some(s) => {
                let ip6: Ipv6Addr = s
                    .parse()
                    .map_err(|_| NetError::Invalid(format!("invalid IPv6 address {s:?}")))?;
                if !subnet6.contains(ip6) || ip6 == gateway6 {
                    return Err(NetError::Invalid(format!(
                        "no configured subnet or ip-range contain the IP address {ip6}"
                    )));
                }
                let live = self.live.lock().unwrap();
                let taken = live.values().flat_map(|l| &l.endpoints).any(|e| {
                    e.network_id == n.id && e.ip6.is_some_and(|(other, _, _)| other == ip6)
                });
                if taken {
                    return Err(NetError::Forbidden(format!(
                        "Address already in use: {ip6}"
                    )));
                }
                ip6
            }
            None => {
                let mut ip6 = subnet6.nth(u128::from(offset)).ok_or_else(|| {
                    NetError::Failed(format!("network {} has no room for IPv6", n.name))
                })?;
                // The gateway a user placed on a low host number is skipped.
                if ip6 == gateway6 {
                    ip6 = subnet6
                        .nth(u128::from(u32::MAX) + u128::from(offset))
                        .unwrap_or(ip6);
                }
                ip6
            }
        };
        Ok(Some((ip6, subnet6.prefix, gateway6)))
    }
}
