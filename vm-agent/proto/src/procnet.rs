//! Who holds the other end of a local TCP connection, from `/proc/net/tcp{,6}` and
//! `/proc/<pid>/fd`. The engine uses it to refuse API connections that come from the VM; the
//! agent uses it to serve its registry forwarder to its own sockets only.

use std::net::SocketAddr;
use std::path::Path;

/// `/proc/net/tcp`'s form of an address: the IPv4 word or the four IPv6 words in host order,
/// in hex, then the port.
pub fn proc_form(addr: SocketAddr) -> String {
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

/// The inode of the socket in `table` (the text of `/proc/net/tcp{,6}`) whose own address is
/// `own` and whose peer is `peer`.
pub fn socket_inode(table: &str, own: SocketAddr, peer: SocketAddr) -> Option<u64> {
    let (own, peer) = (proc_form(own), proc_form(peer));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&own.as_str()) && f.get(2) == Some(&peer.as_str()))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

/// The inode of this network namespace's socket at `own` connected to `peer`, if it is local.
pub fn local_socket_inode(own: SocketAddr, peer: SocketAddr) -> std::io::Result<Option<u64>> {
    let table = match own {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    Ok(socket_inode(&std::fs::read_to_string(table)?, own, peer))
}

/// Whether the process whose `/proc` directory is `proc_dir` holds socket `inode`.
pub fn holds_socket(proc_dir: &Path, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
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

    #[test]
    fn this_process_holds_its_own_client_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let inode = local_socket_inode(client.local_addr().unwrap(), addr)
            .unwrap()
            .expect("the client's socket is in the table");
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(holds_socket(Path::new("/proc/self"), inode));
        assert!(!holds_socket(Path::new("/proc/1"), inode) || std::process::id() == 1);
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert!(socket_inode(&text, "10.9.9.9:1".parse().unwrap(), addr).is_none());
    }
}
