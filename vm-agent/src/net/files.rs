//! A container's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, written into its
//! directory at each start and bind-mounted over the image's, as dockerd does.

use std::net::Ipv4Addr;

/// The address inside the VM that reaches the host's loopback (passt maps its gateway there).
pub const HOST_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 1);
/// The VM's DNS server (passt relays it to the host's resolver), when DHCP named none yet.
pub const VM_DNS: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 254);

/// `/etc/hosts`: loopback names, `host.docker.internal`, `--add-host` entries (`name:ip`, with
/// `host-gateway` standing for the host), and the container's own address and hostname.
pub fn hosts(hostname: &str, own: Option<Ipv4Addr>, extra: &[String]) -> Result<String, String> {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    out.push_str(&format!(
        "{HOST_GATEWAY}\thost.docker.internal gateway.docker.internal\n"
    ));
    for entry in extra {
        let (name, addr) = entry
            .split_once(':')
            .or_else(|| entry.split_once('='))
            .ok_or_else(|| format!("invalid extra host {entry:?}: expected name:ip"))?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr = if addr == "host-gateway" {
            HOST_GATEWAY.to_string()
        } else {
            addr.parse::<std::net::IpAddr>()
                .map_err(|_| format!("invalid IP address in add-host: {addr:?}"))?
                .to_string()
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
            return Err(format!("invalid extra host {entry:?}: bad host name"));
        }
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    if let Some(ip) = own {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    Ok(out)
}

/// `--dns` values as addresses, or which one is not an address.
pub fn dns_servers(dns: &[String]) -> Result<Vec<std::net::IpAddr>, String> {
    dns.iter()
        .map(|d| {
            d.parse()
                .map_err(|_| format!("invalid DNS server address {d:?}"))
        })
        .collect()
}

/// `/etc/resolv.conf`: the user's `--dns` servers if any, else `embedded` (the network's DNS
/// server) or the VM's own servers; `--dns-search` and `--dns-option` lines.
pub fn resolv_conf(
    vm_resolv: &str,
    embedded: Option<Ipv4Addr>,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> Result<String, String> {
    let mut out = String::new();
    if !dns.is_empty() {
        for ip in dns_servers(dns)? {
            out.push_str(&format!("nameserver {ip}\n"));
        }
    } else if let Some(ip) = embedded {
        out.push_str(&format!("nameserver {ip}\n"));
    } else {
        let servers: Vec<&str> = vm_resolv
            .lines()
            .filter(|l| l.trim_start().starts_with("nameserver"))
            .collect();
        if servers.is_empty() {
            out.push_str(&format!("nameserver {VM_DNS}\n"));
        }
        for l in servers {
            out.push_str(l.trim());
            out.push('\n');
        }
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_the_host_the_container_and_extra_entries() {
        let h = hosts(
            "web",
            Some(Ipv4Addr::new(172, 18, 0, 2)),
            &["db:10.0.0.5".into(), "me:host-gateway".into()],
        )
        .unwrap();
        assert!(h.contains("192.168.127.1\thost.docker.internal"));
        assert!(h.contains("10.0.0.5\tdb\n"));
        assert!(h.contains("192.168.127.1\tme\n"));
        assert!(h.ends_with("172.18.0.2\tweb\n"));
        assert!(hosts("x", None, &["nocolon".into()]).is_err());
        assert!(hosts("x", None, &["a:not-an-ip".into()]).is_err());
    }

    #[test]
    fn resolv_conf_prefers_user_servers_then_the_embedded_one() {
        let vm = "nameserver 192.168.127.1\n";
        let r = resolv_conf(vm, None, &[], &[], &[]).unwrap();
        assert_eq!(r, "nameserver 192.168.127.1\n");
        let r = resolv_conf(vm, Some(Ipv4Addr::new(172, 18, 0, 1)), &[], &[], &[]).unwrap();
        assert_eq!(r, "nameserver 172.18.0.1\n");
        let r = resolv_conf(
            vm,
            Some(Ipv4Addr::new(172, 18, 0, 1)),
            &["9.9.9.9".into()],
            &["corp".into()],
            &["ndots:2".into()],
        )
        .unwrap();
        assert_eq!(r, "nameserver 9.9.9.9\nsearch corp\noptions ndots:2\n");
        assert!(resolv_conf(vm, None, &["bogus".into()], &[], &[]).is_err());
    }
}
