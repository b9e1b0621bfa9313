//! The plain-TCP Docker API (`berth engine --insecure-tcp`) refuses what the VM sends it. Owns
//! the check of who opened each connection; serves nothing itself.
//!
//! The VM reaches the host's loopback through passt (that is what `host.docker.internal`
//! names), so without this check any container could drive the engine through the gateway
//! address (the pattern of CVE-2025-9074). A connection from another machine is served; one
//! from this machine is served only when its socket belongs to a process the engine can see
//! and that process is not passt. passt hides its descriptors from other processes of its
//! user, so what cannot be attributed is refused too.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// A TCP listener that drops connections coming from the VM's NIC.
pub struct NotFromVm {
    inner: TcpListener,
}

impl NotFromVm {
    pub fn new(inner: TcpListener) -> Self {
        NotFromVm { inner }
    }
}

impl axum::serve::Listener for NotFromVm {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut backoff = crate::limits::AcceptBackoff::new("the TCP API");
        loop {
            let (stream, peer) = backoff.retry(|| self.inner.accept()).await;
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            match local_owner(local, peer) {
                Owner::Remote => return (stream, peer),
                Owner::Process(_, comm) if !comm.starts_with("passt") => return (stream, peer),
                owner => {
                    tracing::warn!(
                        %peer,
                        ?owner,
                        "refused a TCP API connection: it comes from the VM, or from a process \
                         Berth cannot identify"
                    );
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Who holds the other end of a connection to `local` from `peer`.
#[derive(Debug, PartialEq)]
enum Owner {
    /// Not a socket of this machine.
    Remote,
    /// Process `pid`, named `comm`.
    Process(u32, String),
    /// A socket of this machine whose process cannot be seen.
    Unknown,
}

fn local_owner(local: SocketAddr, peer: SocketAddr) -> Owner {
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return Owner::Unknown;
    };
    match socket_inode(&text, peer, local) {
        None => Owner::Remote,
        Some(inode) => process_holding(inode).unwrap_or(Owner::Unknown),
    }
}

/// `/proc/net/tcp`'s form of an address: the IPv4 word or the four IPv6 words in host order,
/// in hex, then the port.
fn proc_form(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            let words: String = o
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            format!("{words}:{:04X}", a.port())
        }
    }
}

/// The inode of the socket in `table` whose own address is `own` and whose peer is `peer`.
fn socket_inode(table: &str, own: SocketAddr, peer: SocketAddr) -> Option<u64> {
    let (own, peer) = (proc_form(own), proc_form(peer));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&own.as_str()) && f.get(2) == Some(&peer.as_str()))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

fn process_holding(inode: u64) -> Option<Owner> {
    let wanted = format!("socket:[{inode}]");
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                let comm = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
                return Some(Owner::Process(pid, comm.trim().to_owned()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_proc_net_tcp_form() {
        let a: SocketAddr = "127.0.0.1:2375".parse().unwrap();
        assert_eq!(proc_form(a), "0100007F:0947");
        let b: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(proc_form(b), "00000000000000000000000001000000:0050");
    }

    #[tokio::test]
    async fn a_local_client_is_found_and_named() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let owner = local_owner(server.local_addr().unwrap(), peer);
        match owner {
            Owner::Process(pid, _) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert!(socket_inode(&text, "10.9.9.9:1".parse().unwrap(), addr).is_none());
    }
}
