//! IPv4 subnets for IPAM: parsing `172.18.0.0/16`, membership, overlap, and the pools user
//! networks get their subnets from when they name none (dockerd's defaults).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub const fn new(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Subnet {
            addr: Ipv4Addr::new(a, b, c, d),
            prefix,
        }
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `n`th address of the subnet (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.addr) + n))
    }

    /// The addresses hosts may use: all but the network and broadcast addresses.
    pub fn host_count(&self) -> u32 {
        let size = 1u64 << (32 - u32::from(self.prefix));
        size.saturating_sub(2).min(u64::from(u32::MAX)) as u32
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    /// `a.b.c.d/len` with no host bits set, as dockerd insists.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            format!("invalid subnet {s}: expected CIDR notation like 172.20.0.0/16")
        })?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("invalid subnet {s}: {addr} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("invalid subnet {s}: the prefix length must be 8 to 30"))?;
        let net = Subnet { addr, prefix };
        if u32::from(addr) & !net.mask() != 0 {
            return Err(format!(
                "invalid subnet {s}: it has host bits set (did you mean {}/{prefix}?)",
                Ipv4Addr::from(u32::from(addr) & net.mask())
            ));
        }
        Ok(net)
    }
}

/// The subnets user networks get when they name none, in order: 172.18/16 to 172.31/16, then
/// 192.168.0.0/20 steps, as dockerd's default address pools.
pub fn default_pools() -> impl Iterator<Item = Subnet> {
    (18..=31)
        .map(|b| Subnet::new(172, b, 0, 0, 16))
        .chain((0..16).map(|i| Subnet::new(192, 168, i * 16, 0, 20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidr_and_refuses_host_bits_and_junk() {
        let s: Subnet = "172.20.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "172.20.0.0/16");
        assert!(s.contains("172.20.255.1".parse().unwrap()));
        assert!(!s.contains("172.21.0.1".parse().unwrap()));
        assert_eq!(s.nth(1), Some("172.20.0.1".parse().unwrap()));
        assert_eq!(s.broadcast(), "172.20.255.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.host_count(), 65534);
        let e = "172.20.0.1/16".parse::<Subnet>().unwrap_err();
        assert!(e.contains("did you mean 172.20.0.0/16"), "{e}");
        assert!("172.20.0.0".parse::<Subnet>().is_err());
        assert!("172.20.0.0/33".parse::<Subnet>().is_err());
        assert!("fd00::/64".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap_either_way() {
        let big: Subnet = "10.0.0.0/8".parse().unwrap();
        let small: Subnet = "10.1.2.0/24".parse().unwrap();
        let other: Subnet = "10.1.3.0/24".parse().unwrap();
        assert!(big.overlaps(&small) && small.overlaps(&big));
        assert!(!small.overlaps(&other));
    }

    #[test]
    fn default_pools_start_after_the_default_bridge() {
        let mut pools = default_pools();
        assert_eq!(pools.next().unwrap().to_string(), "172.18.0.0/16");
        assert_eq!(default_pools().count(), 30);
    }
}
