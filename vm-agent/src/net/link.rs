//! The guest's side of the wire: eth0 from passt's DHCP, one Linux bridge per network, a
//! network namespace per container with a veth into each of its networks, and the nftables
//! ruleset (masquerade out of eth0, isolation between networks). Links and namespaces are made
//! with iproute2's `ip -batch`, rules with `nft -f` (one atomic replacement of Berth's table).

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use super::subnet::Subnet;
use super::subnet6::Subnet6;

const IP: &str = "/usr/sbin/ip";
const NFT: &str = "/usr/sbin/nft";
const UDHCPC_HOOK: &str = "/etc/berth/udhcpc.sh";
/// The VM's uplink, the NIC passt serves.
pub const UPLINK: &str = "eth0";
/// Where `ip netns` keeps its namespaces; crun joins a container's from here.
pub const NETNS_DIR: &str = "/run/netns";

/// Runs `program args` with `stdin` fed in; a failure carries its stderr.
fn run(program: &str, args: &[&str], stdin: &str) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip [-n netns] -batch -` over `commands`, one per line.
pub fn ip_batch(netns: Option<&str>, commands: &[String]) -> Result<(), String> {
    if commands.is_empty() {
        return Ok(());
    }
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    run(IP, &args, &(commands.join("\n") + "\n"))
}

/// Asks passt's DHCP server for eth0's address, route and DNS servers (busybox udhcpc runs the
/// hook that applies them). No NIC (the builtin VMM has none yet) is not an error: containers
/// then have no way out, which `docker info` and the logs say.
pub fn configure_uplink() -> Result<bool, String> {
    if !std::path::Path::new("/sys/class/net").join(UPLINK).exists() {
        return Ok(false);
    }
    run(
        "/bin/udhcpc",
        &[
            "-i",
            UPLINK,
            "-s",
            UDHCPC_HOOK,
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "1",
            "-A",
            "1",
        ],
        "",
    )?;
    // The host names the resolver its NIC relays (`berth.dns=`): DHCP names the host's own
    // resolvers, whose answers passt sends back from that relay address.
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(dns) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("berth.dns="))
        .and_then(|d| d.parse::<std::net::Ipv4Addr>().ok())
    {
        std::fs::write("/etc/resolv.conf", format!("nameserver {dns}\n"))
            .map_err(|e| format!("writing /etc/resolv.conf: {e}"))?;
    }
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| format!("enabling IPv4 forwarding: {e}"))?;
    Ok(true)
}

/// Whether link `name` exists in the VM's namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Creates bridge `name` with `gateway/prefix` (and the IPv6 gateway, on a network with IPv6)
/// unless it exists, and brings it up.
pub fn ensure_bridge(
    name: &str,
    gateway: Ipv4Addr,
    subnet: &Subnet,
    v6: Option<(Subnet6, Ipv6Addr)>,
) -> Result<(), String> {
    if link_exists(name) {
        return Ok(());
    }
    let mut commands = vec![
        format!("link add {name} type bridge"),
        format!("addr add {gateway}/{} dev {name}", subnet.prefix),
    ];
    if let Some((subnet6, gateway6)) = v6 {
        // No duplicate address detection: the address is the network's own.
        commands.push(format!(
            "addr add {gateway6}/{} dev {name} nodad",
            subnet6.prefix
        ));
    }
    commands.push(format!("link set {name} up"));
    ip_batch(None, &commands)
}

pub fn delete_link(name: &str) -> Result<(), String> {
    if !link_exists(name) {
        return Ok(());
    }
    ip_batch(None, &[format!("link del {name}")])
}

/// A new network namespace `name` under [`NETNS_DIR`] with its loopback up.
pub fn create_netns(name: &str) -> Result<(), String> {
    delete_netns(name);
    ip_batch(None, &[format!("netns add {name}")])?;
    ip_batch(Some(name), &["link set lo up".to_owned()])
}

/// Removes namespace `name`; its veths go with it once no process is left in it.
pub fn delete_netns(name: &str) {
    if std::path::Path::new(NETNS_DIR).join(name).exists() {
        let _ = ip_batch(None, &[format!("netns del {name}")]);
    }
}

/// One container's interface on one network.
#[derive(Debug, Clone)]
pub struct Veth<'a> {
    pub host_name: &'a str,
    pub bridge: &'a str,
    pub netns: &'a str,
    /// `eth0`, `eth1`, ... inside the container.
    pub ifname: &'a str,
    pub mac: &'a str,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway, for the container's first network only.
    pub default_gateway: Option<Ipv4Addr>,
    /// On a network with IPv6: the address, its prefix length and the gateway.
    pub ip6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

/// Plugs a veth pair between the bridge and the container's namespace and configures its end.
pub fn add_veth(v: &Veth) -> Result<(), String> {
    ip_batch(
        None,
        &[
            format!(
                "link add {} type veth peer name {} address {} netns {}",
                v.host_name, v.ifname, v.mac, v.netns
            ),
            format!("link set {} master {} up", v.host_name, v.bridge),
        ],
    )?;
    let mut inside = vec![
        format!("addr add {}/{} dev {}", v.ip, v.prefix, v.ifname),
        format!("link set {} up", v.ifname),
    ];
    if let Some(gw) = v.default_gateway {
        inside.push(format!("route add default via {gw} dev {}", v.ifname));
    }
    if let Some((ip6, prefix6, gw6)) = v.ip6 {
        inside.push(format!("addr add {ip6}/{prefix6} dev {} nodad", v.ifname));
        if v.default_gateway.is_some() {
            inside.push(format!("route add ::/0 via {gw6} dev {}", v.ifname));
        }
    }
    let result = ip_batch(Some(v.netns), &inside);
    if result.is_err() {
        let _ = delete_link(v.host_name);
    }
    result
}

/// What the ruleset needs to know of one bridge network.
#[derive(Debug, Clone)]
pub struct RuleNet {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// Berth's nftables table: traffic from a network may go out of the uplink (masqueraded to
/// the VM's address, which passt turns into the host's sockets) unless the network is internal,
/// and may stay on its own bridge; replies come back; everything else forwarded is dropped,
/// which is what keeps networks apart. Applied as one transaction.
pub fn ruleset(nets: &[RuleNet]) -> String {
    let mut nat = String::new();
    let mut fwd = String::new();
    for n in nets {
        fwd.push_str(&format!(
            "    iifname \"{b}\" oifname \"{b}\" accept\n",
            b = n.bridge
        ));
        if !n.internal {
            fwd.push_str(&format!(
                "    iifname \"{}\" oifname \"{UPLINK}\" accept\n",
                n.bridge
            ));
            nat.push_str(&format!(
                "    ip saddr {} oifname \"{UPLINK}\" masquerade\n",
                n.subnet
            ));
        }
    }
    format!(
        "table ip berth {{}}\ndelete table ip berth\ntable ip berth {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{nat}  }}\n  chain forward {{\n    type filter hook forward priority filter; policy drop;\n    ct state established,related accept\n{fwd}  }}\n}}\n"
    )
}

pub fn apply_ruleset(nets: &[RuleNet]) -> Result<(), String> {
    run(NFT, &["-f", "-"], &ruleset(nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_outside_networks_and_keeps_internal_ones_in() {
        let rules = ruleset(&[
            RuleNet {
                bridge: "berth0".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
                internal: false,
            },
            RuleNet {
                bridge: "br-0123456789ab".into(),
                subnet: "172.18.0.0/16".parse().unwrap(),
                internal: true,
            },
        ]);
        assert!(rules.contains("ip saddr 172.17.0.0/16 oifname \"eth0\" masquerade"));
        assert!(!rules.contains("172.18.0.0/16"));
        assert!(rules.contains("iifname \"br-0123456789ab\" oifname \"br-0123456789ab\" accept"));
        assert!(!rules.contains("iifname \"br-0123456789ab\" oifname \"eth0\""));
        assert!(rules.contains("policy drop"));
        // The table is replaced whole: created if missing, deleted, written again.
        assert!(rules.starts_with("table ip berth {}\ndelete table ip berth\n"));
    }
}
