//! IPv6 subnets of networks with `EnableIPv6`: parsing `fd00:1::/64`, membership, the
//! addresses endpoints get (the same host number as their IPv4 address, or the one asked for),
//! and the unique local /64 a network gets when it names none.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    /// The network address (host bits zero).
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet6) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `n`th address of the subnet (0 is the network address), if it holds that many.
    pub fn nth(&self, n: u128) -> Option<Ipv6Addr> {
        let host_bits = 128 - u32::from(self.prefix);
        (host_bits >= 128 || n < (1u128 << host_bits))
            .then(|| Ipv6Addr::from(u128::from(self.addr) + n))
    }

    /// A unique local /64 (`fdXX:XXXX:XXXX:XXXX::/64`) made from a network's ID, for a network
    /// that enables IPv6 without naming a subnet.
    pub fn unique_local(id_hex: &str) -> Subnet6 {
        let mut bits = 0xfdu128 << 120;
        for (i, c) in id_hex
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(14)
            .enumerate()
        {
            let nibble = u128::from(c.to_digit(16).unwrap_or(0));
            bits |= nibble << (116 - 4 * i);
        }
        Subnet6 {
            addr: Ipv6Addr::from(bits),
            prefix: 64,
        }
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet6 {
    type Err = String;

    /// `addr/prefix`; host bits must be zero, as dockerd requires of a subnet.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid IPv6 subnet {s:?}");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 126 {
            return Err(bad());
        }
        let subnet = Subnet6 { addr, prefix };
        if u128::from(addr) & !subnet.mask() != 0 {
            return Err(format!(
                "invalid subnet {s}: it should be {}/{prefix}",
                Ipv6Addr::from(u128::from(addr) & subnet.mask())
            ));
        }
        Ok(subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_hold_and_number_their_hosts() {
        let s: Subnet6 = "2001:389::/64".parse().unwrap();
        assert!(s.contains("2001:389::f00d".parse().unwrap()));
        assert!(!s.contains("2001:38a::1".parse().unwrap()));
        assert_eq!(s.nth(1), Some("2001:389::1".parse().unwrap()));
        assert_eq!(s.to_string(), "2001:389::/64");
        assert!("2001:389::1/64".parse::<Subnet6>().is_err());
        assert!("10.0.0.0/8".parse::<Subnet6>().is_err());
        let other: Subnet6 = "2001:389::/48".parse().unwrap();
        assert!(s.overlaps(&other));
    }

    #[test]
    fn a_network_without_a_subnet_gets_a_unique_local_one() {
        let s = Subnet6::unique_local("0123456789abcdef0123");
        assert_eq!(s.to_string(), "fd01:2345:6789:abcd::/64");
        assert_eq!(s.nth(2), Some("fd01:2345:6789:abcd::2".parse().unwrap()));
    }
}
