//! The guest's NIC on the host side: `passt`, which turns the guest's Ethernet frames into
//! ordinary sockets of the user running Berth (no root, no tap device, no host routes). The guest
//! asks passt's DHCP server for its address; DNS queries to [`DNS_ADDR`] go to the host's
//! resolver, and any connection to the gateway address reaches the host's loopback, which
//! is what `host.docker.internal` names inside containers.

use tokio::process::Child;

use super::VmError;
use crate::host;
use crate::paths::Paths;

/// The guest's own address on its NIC, and the gateway that stands for the host. Fixed (not
/// copied from the host's interface) so that the guest's view never depends on the network the
/// host happens to be on, and chosen clear of the ranges Docker gives its bridge networks.
pub const GUEST_ADDR: &str = "192.168.127.2";
pub const GATEWAY_ADDR: &str = "192.168.127.1";
/// A /25: the DNS address below lies outside it, so the guest sends its queries through the
/// gateway (passt answers ARP for the gateway only) and passt relays them.
pub const PREFIX_LEN: u8 = 25;
/// The guest's DNS server: passt relays queries sent here to the host's resolver. Not the
/// gateway address, which passt maps to the host's loopback first.
pub const DNS_ADDR: &str = "192.168.127.254";
/// A locally administered unicast address.
pub const GUEST_MAC: &str = "5a:94:ef:e4:0c:ee";

/// passt's arguments: foreground, one client (it exits when qemu does), our socket path, the
/// fixed addressing, DNS forwarded from [`DNS_ADDR`] to the host's resolver, and no ports
/// forwarded into the guest (published ports travel over vsock).
pub fn passt_args(paths: &Paths) -> Vec<String> {
    [
        "--foreground",
        "--stderr",
        "--quiet",
        "--one-off",
        "--socket",
        &paths.passt_socket().display().to_string(),
        "--address",
        GUEST_ADDR,
        "--netmask",
        &PREFIX_LEN.to_string(),
        "--gateway",
        GATEWAY_ADDR,
        "--dns-forward",
        DNS_ADDR,
        "--tcp-ports",
        "none",
        "--udp-ports",
        "none",
        "--ipv4-only",
    ]
    .iter()
    .map(|s| s.to_string())
    // passt started by root would drop to `nobody`, who cannot bind in Berth's private run
    // directory: it runs as whoever runs Berth (passt confines itself either way).
    .chain([
        "--runas".to_owned(),
        format!("{}:{}", nix::unistd::geteuid(), nix::unistd::getegid()),
    ])
    .collect()
}

/// Starts passt and waits for its socket, so that qemu can connect at once.
pub fn spawn_passt(paths: &Paths) -> Result<Child, VmError> {
    let program = host::passt_program()?;
    let socket = paths.passt_socket();
    let _ = std::fs::remove_file(&socket);
    let mut child = super::qemu::spawn_logged(&program, passt_args(paths), &paths.vmm_log())?;
    super::qemu::wait_for_socket(&mut child, &socket, "passt", &paths.vmm_log())?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passt_gets_the_fixed_addressing_and_no_port_forwards() {
        let args = passt_args(&Paths::new("/tmp/bh")).join(" ");
        assert!(args.contains("--socket /tmp/bh/run/passt.sock"));
        assert!(args.contains("--address 192.168.127.2 --netmask 25 --gateway 192.168.127.1"));
        assert!(args.contains("--tcp-ports none --udp-ports none"));
        assert!(args.contains("--one-off"));
    }
}
