//! Container networks, as dockerd has them: the default `bridge` network, `host`, `none`, and
//! user-defined bridge networks with IPAM. Owns the network records on the data disk
//! (`networks/<id>.json`), each running container's attachment (`<container dir>/net.json`:
//! its namespace and one endpoint per network), address allocation, and the in-memory table of
//! live endpoints that the embedded DNS server ([`dns`]) answers from. A create body becomes a
//! network in `create`; addresses come from `ipam`. The links and rules themselves are made by
//! [`link`]; `/etc/hosts` and `/etc/resolv.conf` by [`files`]; Docker's JSON views by
//! [`docker`].

mod create;
pub mod dns;
pub mod docker;
pub mod files;
mod ipam;
pub mod link;
pub mod subnet;
pub mod subnet6;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bollard_stubs::models::EndpointSettings;
use serde::{Deserialize, Serialize};

use crate::containers::{ContainerRecord, ContainerStore, random_hex};
use crate::images::store::write_atomic;
use subnet::Subnet;
use subnet6::Subnet6;

/// The default bridge network's interface and subnet (dockerd's `docker0`, 172.17.0.0/16).
pub const DEFAULT_BRIDGE: &str = "berth0";
pub const DEFAULT_SUBNET: Subnet = Subnet::new(172, 17, 0, 0, 16);
/// The VM's own uplink subnet (passt's side): no container network may overlap it.
pub const UPLINK_SUBNET: Subnet = Subnet::new(192, 168, 127, 0, 24);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// dockerd answers these 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

type Result<T> = std::result::Result<T, NetError>;

fn failed(what: &str) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |e| NetError::Failed(format!("{what}: {e}"))
}

/// One network, as created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    /// Bridge networks only.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// The Linux bridge in the VM.
    pub bridge: String,
    pub internal: bool,
    pub attachable: bool,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub options: HashMap<String, String>,
    /// Whether the user chose the subnet (dockerd shows only chosen IPAM config as such).
    #[serde(default)]
    pub user_ipam: bool,
    /// `EnableIPv6`: the IPv6 subnet and gateway, beside the IPv4 ones.
    #[serde(default)]
    pub subnet6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    /// `IPRange`: the part of the subnet addresses are given from (none: all of it).
    #[serde(default)]
    pub ip_range: Option<String>,
    /// `AuxiliaryAddresses`: addresses kept out of allocation, by name.
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
}

impl NetworkRecord {
    pub fn builtin(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    fn subnet(&self) -> Option<Subnet> {
        self.subnet.as_deref().and_then(|s| s.parse().ok())
    }

    /// The IPv6 subnet and gateway of a network with `EnableIPv6`.
    pub fn v6(&self) -> Option<(Subnet6, Ipv6Addr)> {
        let subnet = self.subnet6.as_deref()?.parse().ok()?;
        let gateway = self.gateway6.as_deref()?.parse().ok()?;
        Some((subnet, gateway))
    }

    fn gateway_ip(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }
}

/// A running container's interface on one network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub network: String,
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub aliases: Vec<String>,
    pub host_veth: String,
    pub ifname: String,
    /// The endpoint's links (`container:alias`): names only it resolves, to that container.
    #[serde(default)]
    pub links: Vec<String>,
    /// On a network with IPv6: the address, its prefix length and the gateway.
    #[serde(default)]
    pub ip6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

/// Where a running container is on the network: its namespace (none for `host`) and endpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attachment {
    pub netns: Option<String>,
    pub sandbox_id: String,
    pub endpoints: Vec<Endpoint>,
}

/// What the DNS server knows of a running container.
#[derive(Debug, Clone)]
struct Live {
    names: Vec<String>,
    endpoints: Vec<Endpoint>,
    /// `--dns`: where the embedded server relays this container's other queries.
    dns: Vec<std::net::IpAddr>,
}

pub struct Networks {
    dir: PathBuf,
    /// Serializes every change to records, links, rules and allocations.
    lock: Mutex<()>,
    live: Mutex<HashMap<String, Live>>,
}

static NETWORKS: OnceLock<Networks> = OnceLock::new();

/// The networks, once [`init`] ran (the agent runs it at start; tests and helpers may not).
pub fn get() -> Option<&'static Networks> {
    NETWORKS.get()
}

/// A bridge interface name Berth will make: what `ip link` takes, without surprises.
fn valid_ifname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 15
}

/// A MAC address a client asked for (`MacAddress`), as `ip link` takes it; one that is not
/// six hex pairs, or is a multicast address, is refused as dockerd refuses it.
fn parse_mac(s: &str) -> Result<String> {
    let bad = || NetError::Invalid(format!("invalid MAC address {s}"));
    let octets: Vec<u8> = s
        .split([':', '-'])
        .map(|o| {
            (o.len() == 2)
                .then(|| u8::from_str_radix(o, 16).ok())
                .flatten()
                .ok_or_else(bad)
        })
        .collect::<Result<_>>()?;
    if octets.len() != 6 || octets[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(octets
        .iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The MAC dockerd derives from an IPv4 address: 02:42 then the address.
fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Opens the network store, creates the predefined networks the first time, brings up every
/// bridge and the rules, finds the endpoints of containers still running (the agent may have
/// restarted under them), and starts the uplink's DHCP and the DNS server in the background.
pub fn init(root: &Path, containers: &ContainerStore) -> Result<&'static Networks> {
    let dir = root.join("networks");
    std::fs::create_dir_all(&dir).map_err(failed("creating the network store"))?;
    let nets = Networks {
        dir,
        lock: Mutex::new(()),
        live: Mutex::new(HashMap::new()),
    };
    nets.ensure_predefined()?;
    let nets = NETWORKS.get_or_init(|| nets);
    {
        let _g = nets.lock.lock().unwrap();
        for n in nets.all() {
            if let (Some(subnet), Some(gw)) = (n.subnet(), n.gateway_ip())
                && let Err(e) = link::ensure_bridge(&n.bridge, gw, &subnet, n.v6())
            {
                tracing::error!(network = n.name, "bringing up the bridge: {e}");
            }
        }
        if let Err(e) = nets.apply_rules() {
            tracing::error!("network rules: {e}");
        }
    }
    for id in containers.ids() {
        let st = crate::containers::lifecycle::refresh(containers, &id);
        let dir = containers.dir(&id);
        if !st.status.is_live() {
            continue;
        }
        if let (Some(att), Ok(rec)) = (read_attachment(&dir), containers.record(&id)) {
            nets.register(&rec, &att);
        }
    }
    std::thread::spawn(|| match link::configure_uplink() {
        Ok(true) => tracing::info!("eth0 configured by DHCP"),
        Ok(false) => tracing::warn!("no eth0: containers have no way out of the VM"),
        Err(e) => tracing::error!("eth0: {e}"),
    });
    tokio::spawn(async move {
        let lookup: dns::Lookup = Arc::new(|client, name| nets.lookup(client, name));
        let upstreams: dns::Upstreams = Arc::new(|client| nets.upstreams(client));
        let addr = SocketAddr::from(([0, 0, 0, 0], 53));
        if let Err(e) = dns::serve(addr, lookup, upstreams).await {
            tracing::error!("embedded DNS server: {e}");
        }
    });
    Ok(nets)
}

fn write_attachment(container_dir: &Path, att: &Attachment) -> Result<()> {
    let data = serde_json::to_vec_pretty(att).expect("attachment serializes");
    write_atomic(&container_dir.join("net.json"), &data)
        .map_err(failed("writing the container's network state"))
}

fn read_attachment(container_dir: &Path) -> Option<Attachment> {
    let data = std::fs::read(container_dir.join("net.json")).ok()?;
    serde_json::from_slice(&data).ok()
}

impl Networks {
    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn save(&self, n: &NetworkRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(n).expect("network record serializes");
        write_atomic(&self.path(&n.id), &data).map_err(failed("writing a network record"))
    }

    /// Every network, oldest first.
    pub fn all(&self) -> Vec<NetworkRecord> {
        let mut out: Vec<NetworkRecord> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|d| serde_json::from_slice(&d).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a: &NetworkRecord, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
        out
    }

    /// A network by full ID, name, or unique ID prefix, as dockerd resolves them.
    pub fn find(&self, key: &str) -> Result<NetworkRecord> {
        let all = self.all();
        if let Some(n) = all.iter().find(|n| n.id == key || n.name == key) {
            return Ok(n.clone());
        }
        let matches: Vec<&NetworkRecord> = all
            .iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NetError::NotFound(format!("network {key} not found"))),
            _ => Err(NetError::Invalid(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                matches.len()
            ))),
        }
    }

    fn ensure_predefined(&self) -> Result<()> {
        let have: Vec<String> = self.all().into_iter().map(|n| n.name).collect();
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if have.iter().any(|n| n == name) {
                continue;
            }
            let is_bridge = driver == "bridge";
            let mut options = HashMap::new();
            if is_bridge {
                for (k, v) in [
                    ("com.docker.network.bridge.default_bridge", "true"),
                    ("com.docker.network.bridge.enable_icc", "true"),
                    ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                    ("com.docker.network.bridge.name", DEFAULT_BRIDGE),
                    ("com.docker.network.driver.mtu", "1500"),
                ] {
                    options.insert(k.to_owned(), v.to_owned());
                }
            }
            self.save(&NetworkRecord {
                id: random_hex(32),
                name: name.into(),
                driver: driver.into(),
                created: crate::clock::now(),
                subnet: is_bridge.then(|| DEFAULT_SUBNET.to_string()),
                gateway: is_bridge.then(|| DEFAULT_SUBNET.nth(1).unwrap().to_string()),
                bridge: if is_bridge {
                    DEFAULT_BRIDGE.into()
                } else {
                    String::new()
                },
                internal: false,
                attachable: false,
                labels: HashMap::new(),
                subnet6: None,
                gateway6: None,
                ip_range: None,
                aux_addresses: BTreeMap::new(),
                options,
                user_ipam: false,
            })?;
        }
        Ok(())
    }

    fn apply_rules(&self) -> Result<()> {
        let nets: Vec<link::RuleNet> = self
            .all()
            .into_iter()
            .filter_map(|n| {
                Some(link::RuleNet {
                    subnet: n.subnet()?,
                    bridge: n.bridge,
                    internal: n.internal,
                })
            })
            .collect();
        link::apply_ruleset(&nets).map_err(NetError::Failed)
    }

    /// Container IDs with a live endpoint on network `id`.
    fn live_on(&self, id: &str) -> Vec<String> {
        self.live
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.endpoints.iter().any(|e| e.network_id == id))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// `DELETE /networks/{id}`: refused for predefined networks and while containers run on it.
    pub fn remove(&self, key: &str) -> Result<()> {
        let _g = self.lock.lock().unwrap();
        let n = self.find(key)?;
        if n.builtin() {
            return Err(NetError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !self.live_on(&n.id).is_empty() {
            return Err(NetError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        std::fs::remove_file(self.path(&n.id)).map_err(failed("removing a network record"))?;
        if let Err(e) = link::delete_link(&n.bridge) {
            tracing::warn!(network = n.name, "deleting the bridge: {e}");
        }
        self.apply_rules()?;
        crate::events::emit("network", "destroy", &n.id, network_attrs(&n));
        Ok(())
    }

    /// `POST /networks/prune`: user networks no running container uses; their names.
    pub fn prune(&self, keep: impl Fn(&NetworkRecord) -> bool) -> Result<Vec<String>> {
        let candidates: Vec<NetworkRecord> = self
            .all()
            .into_iter()
            .filter(|n| !n.builtin() && !keep(n) && self.live_on(&n.id).is_empty())
            .collect();
        let mut removed = Vec::new();
        for n in candidates {
            match self.remove(&n.id) {
                Ok(()) => removed.push(n.name),
                Err(e) => tracing::warn!(network = n.name, "prune: {e}"),
            }
        }
        Ok(removed)
    }

    fn register(&self, rec: &ContainerRecord, att: &Attachment) {
        let mut names = vec![rec.name.to_ascii_lowercase(), rec.id[..12].to_owned()];
        if let Some(h) = rec.config.hostname.as_deref().filter(|h| !h.is_empty()) {
            names.push(h.to_ascii_lowercase());
        }
        self.live.lock().unwrap().insert(
            rec.id.clone(),
            Live {
                names,
                endpoints: att.endpoints.clone(),
                dns: files::dns_servers(&rec.host_config.dns.clone().unwrap_or_default())
                    .unwrap_or_default(),
            },
        );
    }

    /// The address of running container `id` on the network named `network`.
    pub fn address_on(&self, id: &str, network: &str) -> Option<Ipv4Addr> {
        self.live
            .lock()
            .unwrap()
            .get(id)?
            .endpoints
            .iter()
            .find(|e| e.network == network)
            .map(|e| e.ip)
    }

    /// The `--dns` servers of the container at `client`, if it has any.
    fn upstreams(&self, client: Ipv4Addr) -> Vec<std::net::IpAddr> {
        self.live
            .lock()
            .unwrap()
            .values()
            .find(|l| l.endpoints.iter().any(|e| e.ip == client))
            .map(|l| l.dns.clone())
            .unwrap_or_default()
    }

    /// The DNS answer for `name` asked by `client`: containers on the client's user-defined
    /// network by name, alias or short ID (or by the client's own links there), and the host's
    /// names; `None` to ask upstream.
    fn lookup(&self, client: Ipv4Addr, name: &str) -> Option<Vec<Ipv4Addr>> {
        if name == "host.docker.internal" || name == "gateway.docker.internal" {
            return Some(vec![files::HOST_GATEWAY]);
        }
        let live = self.live.lock().unwrap();
        let asker = live
            .values()
            .flat_map(|l| &l.endpoints)
            .find(|e| e.ip == client)?;
        let network = asker.network_id.clone();
        // A link's alias names its container, on this network, for the linking one alone.
        let target = asker.links.iter().find_map(|l| {
            let (container, alias) = l.split_once(':').unwrap_or((l, l));
            alias
                .eq_ignore_ascii_case(name)
                .then(|| container.trim_start_matches('/').to_ascii_lowercase())
        });
        let name = target.as_deref().unwrap_or(name);
        let mut found: Vec<Ipv4Addr> = live
            .values()
            .flat_map(|l| {
                l.endpoints
                    .iter()
                    .filter(|e| e.network_id == network && e.network != "bridge")
                    .filter(|e| {
                        l.names.iter().any(|n| n == name)
                            || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                    })
                    .map(|e| e.ip)
            })
            .collect();
        found.sort();
        (!found.is_empty()).then_some(found)
    }

    /// Plugs `netns` into network `n` as `ifname`.
    fn plug(
        &self,
        netns: &str,
        n: &NetworkRecord,
        cfg: &EndpointSettings,
        ifname: &str,
        default_route: bool,
    ) -> Result<Endpoint> {
        let (Some(subnet), Some(gateway)) = (n.subnet(), n.gateway_ip()) else {
            return Err(NetError::Invalid(format!(
                "network {} ({}) cannot take containers this way",
                n.name, n.driver
            )));
        };
        let wanted = cfg
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.as_deref())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| NetError::Invalid(format!("invalid IPv4 address {s:?}")))
            })
            .transpose()?;
        let mac = cfg
            .mac_address
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(parse_mac)
            .transpose()?;
        let ip = self.allocate(n, wanted)?;
        let ip6 = self.allocate6(n, cfg, u32::from(ip) - u32::from(subnet.addr))?;
        let host_veth = format!("veth{}", &random_hex(4)[..7]);
        let mac = mac.unwrap_or_else(|| mac_for(ip));
        link::ensure_bridge(&n.bridge, gateway, &subnet, n.v6()).map_err(NetError::Failed)?;
        link::add_veth(&link::Veth {
            host_name: &host_veth,
            bridge: &n.bridge,
            netns,
            ifname,
            mac: &mac,
            ip,
            prefix: subnet.prefix,
            default_gateway: default_route.then_some(gateway),
            ip6,
        })
        .map_err(NetError::Failed)?;
        Ok(Endpoint {
            network_id: n.id.clone(),
            network: n.name.clone(),
            endpoint_id: random_hex(32),
            ip,
            prefix: subnet.prefix,
            gateway,
            mac,
            aliases: cfg.aliases.clone().unwrap_or_default(),
            host_veth,
            ifname: ifname.to_owned(),
            links: cfg.links.clone().unwrap_or_default(),
            ip6,
        })
    }

    /// Gives a starting container its namespace and endpoints and writes its `/etc` files.
    pub fn attach(&self, rec: &ContainerRecord, dir: &Path) -> Result<Plan> {
        self.detach(&rec.id, dir);
        let mode = network_mode(&rec.host_config);
        let _g = self.lock.lock().unwrap();
        let mut att = Attachment {
            netns: None,
            sandbox_id: random_hex(32),
            endpoints: Vec::new(),
        };
        if mode != "host" {
            let ns = rec.id.clone();
            link::create_netns(&ns).map_err(NetError::Failed)?;
            att.netns = Some(ns);
        }
        let result = (|| -> Result<()> {
            if let Some(ns) = att.netns.clone() {
                for (i, (name, mut cfg)) in ordered_networks(rec).into_iter().enumerate() {
                    let n = self.find(&name)?;
                    // The container-wide MacAddress (before API 1.44) is the first network's.
                    if i == 0 && cfg.mac_address.as_deref().is_none_or(str::is_empty) {
                        cfg.mac_address = rec.config.mac_address.clone();
                    }
                    let ep = self.plug(&ns, &n, &cfg, &format!("eth{i}"), i == 0)?;
                    att.endpoints.push(ep);
                }
            }
            write_attachment(dir, &att)?;
            self.write_etc_files(rec, dir, &att)
        })();
        if let Err(e) = result {
            self.teardown(&att);
            let _ = std::fs::remove_file(dir.join("net.json"));
            return Err(e);
        }
        self.register(rec, &att);
        Ok(Plan {
            netns: att
                .netns
                .as_ref()
                .map(|ns| Path::new(link::NETNS_DIR).join(ns).display().to_string()),
            etc_files: ["hosts", "resolv.conf", "hostname"]
                .iter()
                .map(|f| (format!("/etc/{f}"), dir.join(f).display().to_string()))
                .collect(),
        })
    }

    fn write_etc_files(&self, rec: &ContainerRecord, dir: &Path, att: &Attachment) -> Result<()> {
        let hc = &rec.host_config;
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let first = att.endpoints.first();
        let hosts = files::hosts(
            &hostname,
            first.map(|e| e.ip),
            &hc.extra_hosts.clone().unwrap_or_default(),
        )
        .map_err(NetError::Invalid)?;
        // Every bridge network's containers ask the DNS server on their gateway: it names
        // containers on user networks and relays the rest from the VM, whose queries reach the
        // host's resolver by way of passt. On user networks `--dns` names the servers it relays
        // to, so container names still resolve; on the default bridge, as with dockerd, the
        // servers replace it.
        let embedded = first.map(|e| e.gateway);
        let dns = hc.dns.clone().unwrap_or_default();
        files::dns_servers(&dns).map_err(NetError::Invalid)?;
        let user_network = first.is_some_and(|e| e.network != "bridge");
        let resolv = files::resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            embedded,
            if user_network { &[] } else { &dns },
            &hc.dns_search.clone().unwrap_or_default(),
            &hc.dns_options.clone().unwrap_or_default(),
        )
        .map_err(NetError::Invalid)?;
        for (file, text) in [
            ("hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n")),
        ] {
            std::fs::write(dir.join(file), text).map_err(failed("writing /etc files"))?;
        }
        Ok(())
    }

    fn teardown(&self, att: &Attachment) {
        for ep in &att.endpoints {
            let _ = link::delete_link(&ep.host_veth);
        }
        if let Some(ns) = &att.netns {
            link::delete_netns(ns);
        }
    }

    /// Takes a stopped container off its networks (idempotent).
    pub fn detach(&self, id: &str, dir: &Path) {
        self.live.lock().unwrap().remove(id);
        if let Some(att) = read_attachment(dir) {
            let _g = self.lock.lock().unwrap();
            self.teardown(&att);
        }
        let _ = std::fs::remove_file(dir.join("net.json"));
    }

    /// `POST /networks/{id}/connect`: records the network in the container's config and, if it
    /// runs, plugs it in at once.
    pub fn connect(
        &self,
        store: &ContainerStore,
        network: &str,
        container: &str,
        cfg: EndpointSettings,
    ) -> Result<()> {
        let n = self.find(network)?;
        let id = store
            .resolve(container)
            .map_err(|e| NetError::NotFound(e.to_string()))?;
        let mut rec = store
            .record(&id)
            .map_err(|e| NetError::NotFound(e.to_string()))?;
        let mode = network_mode(&rec.host_config);
        if mode == "host" || mode == "none" || n.driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "container cannot be connected to network {} (its network mode is {mode})",
                n.name
            )));
        }
        check_endpoint_config(&n, &cfg)?;
        if rec.networks.contains_key(&n.name) {
            return Err(NetError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let dir = store.dir(&id);
        let st = crate::containers::lifecycle::refresh(store, &id);
        if st.status.is_live()
            && let Some(mut att) = read_attachment(&dir)
            && let Some(ns) = att.netns.clone()
        {
            let _g = self.lock.lock().unwrap();
            let ifname = format!("eth{}", att.endpoints.len());
            let ep = self.plug(&ns, &n, &cfg, &ifname, att.endpoints.is_empty())?;
            att.endpoints.push(ep);
            write_attachment(&dir, &att)?;
            self.register(&rec, &att);
        }
        rec.networks.insert(n.name.clone(), cfg);
        store
            .save_record(&rec)
            .map_err(|e| NetError::Failed(e.to_string()))?;
        crate::events::emit(
            "network",
            "connect",
            &n.id,
            [("container".to_owned(), id), ("name".to_owned(), n.name)].into(),
        );
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub fn disconnect(&self, store: &ContainerStore, network: &str, container: &str) -> Result<()> {
        let n = self.find(network)?;
        let id = store
            .resolve(container)
            .map_err(|e| NetError::NotFound(e.to_string()))?;
        let mut rec = store
            .record(&id)
            .map_err(|e| NetError::NotFound(e.to_string()))?;
        if rec.networks.remove(&n.name).is_none() {
            return Err(NetError::Forbidden(format!(
                "container {} is not connected to network {}",
                rec.name, n.name
            )));
        }
        let dir = store.dir(&id);
        if let Some(mut att) = read_attachment(&dir) {
            let _g = self.lock.lock().unwrap();
            if let Some(pos) = att.endpoints.iter().position(|e| e.network_id == n.id) {
                let ep = att.endpoints.remove(pos);
                let _ = link::delete_link(&ep.host_veth);
                write_attachment(&dir, &att)?;
                self.register(&rec, &att);
            }
        }
        store
            .save_record(&rec)
            .map_err(|e| NetError::Failed(e.to_string()))?;
        crate::events::emit(
            "network",
            "disconnect",
            &n.id,
            [("container".to_owned(), id), ("name".to_owned(), n.name)].into(),
        );
        Ok(())
    }

    /// Running containers' endpoints on network `id`: (container ID, name, endpoint).
    pub fn endpoints_on(
        &self,
        store: &ContainerStore,
        id: &str,
    ) -> Vec<(String, String, Endpoint)> {
        let mut out = Vec::new();
        for cid in self.live_on(id) {
            let Ok(rec) = store.record(&cid) else {
                continue;
            };
            if let Some(att) = read_attachment(&store.dir(&cid)) {
                for ep in att.endpoints.into_iter().filter(|e| e.network_id == id) {
                    out.push((cid.clone(), rec.name.clone(), ep));
                }
            }
        }
        out
    }
}

/// What a start needs from the network: the namespace to join (`None`: the VM's own) and the
/// files to bind over `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` (target, source).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub netns: Option<String>,
    pub etc_files: Vec<(String, String)>,
}

fn network_attrs(n: &NetworkRecord) -> BTreeMap<String, String> {
    [
        ("name".to_owned(), n.name.clone()),
        ("type".to_owned(), n.driver.clone()),
    ]
    .into()
}

/// The container's network mode as dockerd names it: `default` is `bridge`.
pub fn network_mode(hc: &bollard_stubs::models::HostConfig) -> String {
    match hc.network_mode.as_deref() {
        None | Some("") | Some("default") => "bridge".into(),
        Some(m) => m.to_owned(),
    }
}

/// The container's networks, the one its mode names first.
fn ordered_networks(rec: &ContainerRecord) -> Vec<(String, EndpointSettings)> {
    let mode = network_mode(&rec.host_config);
    let mut out: Vec<(String, EndpointSettings)> = rec
        .networks
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort_by_key(|(name, _)| *name != mode);
    out
}

fn check_endpoint_config(n: &NetworkRecord, cfg: &EndpointSettings) -> Result<()> {
    if let Some(mac) = cfg.mac_address.as_deref().filter(|m| !m.is_empty()) {
        parse_mac(mac)?;
    }
    if n.name == "bridge" {
        if cfg.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(NetError::Invalid(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        if cfg
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.as_deref())
            .is_some_and(|a| !a.is_empty())
        {
            return Err(NetError::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
    }
    Ok(())
}

/// At create: the networks a container joins, from its network mode and the body's
/// `NetworkingConfig.EndpointsConfig`. Unknown networks and unsupported modes are refused.
pub fn networks_for_create(
    mode: &str,
    endpoints: &HashMap<String, EndpointSettings>,
) -> Result<BTreeMap<String, EndpointSettings>> {
    let mut out = BTreeMap::new();
    if mode.starts_with("container:") {
        return Err(NetError::Invalid(format!(
            "network mode {mode} is not supported by Berth yet"
        )));
    }
    if mode == "host" || mode == "none" {
        return Ok(out);
    }
    let Some(nets) = get() else {
        // No network store (a helper process or a unit test): keep what was asked.
        out.insert(
            mode.to_owned(),
            endpoints.get(mode).cloned().unwrap_or_default(),
        );
        return Ok(out);
    };
    let primary = nets.find(mode)?;
    if primary.driver != "bridge" {
        return Err(NetError::Invalid(format!(
            "network {} cannot be used as a network mode",
            primary.name
        )));
    }
    // The docker CLI names the mode's own network `default` in EndpointsConfig.
    let is_primary = |key: &str| key == "default" || key == mode || key == primary.id;
    let cfg = endpoints
        .iter()
        .find(|(k, _)| is_primary(k))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    check_endpoint_config(&primary, &cfg)?;
    out.insert(primary.name.clone(), cfg);
    for (key, cfg) in endpoints {
        if is_primary(key) {
            continue;
        }
        let n = nets.find(key)?;
        if n.name == primary.name {
            continue;
        }
        if n.driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "container cannot be connected to network {} and {}",
                primary.name, n.name
            )));
        }
        check_endpoint_config(&n, cfg)?;
        out.insert(n.name.clone(), cfg.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses_as_dockerd_makes_them() {
        assert_eq!(mac_for(Ipv4Addr::new(172, 17, 0, 2)), "02:42:ac:11:00:02");
    }

    #[test]
    fn asked_macs_are_checked_and_normalised() {
        assert_eq!(parse_mac("92:D0:C6:0A:29:33").unwrap(), "92:d0:c6:0a:29:33");
        assert_eq!(parse_mac("92-d0-c6-0a-29-33").unwrap(), "92:d0:c6:0a:29:33");
        for bad in [
            "92:d0:c6:0a:29",
            "zz:d0:c6:0a:29:33",
            "01:00:5e:00:00:01",
            "9:d0:c6:0a:29:33",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bridge_names_are_plain_interface_names() {
        assert!(valid_ifname("br-my_1.x"));
        assert!(!valid_ifname("-br"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a-name-over-15ch"));
    }
}
