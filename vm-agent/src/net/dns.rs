//! The embedded DNS server of bridge networks. It listens on port 53 of the VM (each network's
//! gateway address is one of the VM's), answers A queries for the names of containers on the
//! asker's user-defined network (names, aliases, short IDs) and for `host.docker.internal`, and
//! relays every other query unchanged to the asker's `--dns` servers, as dockerd's resolver
//! does, or else to the VM's own resolver (passt, then the host's). Only the
//! question section is parsed; anything it cannot parse is relayed or dropped, never trusted.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Answers a name for a client: `Some(addresses)` when the name is ours (possibly none for the
/// asked type), `None` to relay upstream.
pub type Lookup = Arc<dyn Fn(Ipv4Addr, &str) -> Option<Vec<Ipv4Addr>> + Send + Sync>;
/// The servers a client's other queries go to: its own `--dns` servers, or none for the VM's.
pub type Upstreams = Arc<dyn Fn(Ipv4Addr) -> Vec<std::net::IpAddr> + Send + Sync>;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const TTL_SECS: u32 = 600;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// One parsed question.
#[derive(Debug, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lower case, no trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Bytes of the header plus the question, to echo in the answer.
    pub question_end: usize,
}

/// Parses a standard query with exactly one question; `None` for anything else.
pub fn parse_query(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if is_response || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended label types have no place in a question.
        if len > 63 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
        if pos > 12 + 255 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(pos + 2)?, *msg.get(pos + 3)?]);
    Some(Question {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        question_end: pos + 4,
    })
}

/// The answer to `q` (echoing `query`'s header and question) with `addrs` as A records when
/// the question asks for them; other types of a name we own get an empty NOERROR answer.
pub fn answer(query: &[u8], q: &Question, addrs: &[Ipv4Addr]) -> Vec<u8> {
    let wanted: &[Ipv4Addr] = if q.qtype == TYPE_A && q.qclass == CLASS_IN {
        addrs
    } else {
        &[]
    };
    let mut out = query[..q.question_end].to_vec();
    // QR, opcode 0, AA, RD copied from the query, RA; RCODE 0.
    let rd = query[2] & 0x01;
    out[2] = 0x84 | rd;
    out[3] = 0x80;
    out[6..8].copy_from_slice(&(wanted.len() as u16).to_be_bytes());
    out[8..12].fill(0);
    for ip in wanted {
        // A pointer to the question's name at offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// The VM's resolvers, from its `/etc/resolv.conf` (written by the DHCP hook).
fn upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

async fn relay(query: Vec<u8>, chosen: Vec<std::net::IpAddr>) -> Option<Vec<u8>> {
    let upstream = match chosen.first() {
        Some(ip) => SocketAddr::new(*ip, 53),
        None => *upstreams().first()?,
    };
    let sock = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    sock.send_to(&query, upstream).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        // Only the upstream's answer to this very query.
        if from == upstream && n >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

/// Serves DNS on `addr` until the socket fails.
pub async fn serve(addr: SocketAddr, lookup: Lookup, upstreams: Upstreams) -> std::io::Result<()> {
    let sock = Arc::new(UdpSocket::bind(addr).await?);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("dns: receive: {e}");
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let SocketAddr::V4(peer4) = peer else {
            continue;
        };
        let local = parse_query(&query)
            .and_then(|q| lookup(*peer4.ip(), &q.name).map(|addrs| answer(&query, &q, &addrs)));
        if let Some(reply) = local {
            let _ = sock.send_to(&reply, peer).await;
            continue;
        }
        if n < 12 {
            continue;
        }
        let sock = sock.clone();
        let chosen = upstreams(*peer4.ip());
        tokio::spawn(async move {
            match relay(query, chosen).await {
                Some(reply) => {
                    let _ = sock.send_to(&reply, peer).await;
                }
                None => tracing::debug!(%peer, "dns: no answer upstream"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn parses_a_query_and_answers_it() {
        let q = query(0xbeef, "Web.Local", TYPE_A);
        let parsed = parse_query(&q).unwrap();
        assert_eq!(parsed.name, "web.local");
        assert_eq!(parsed.id, 0xbeef);
        let a = answer(&q, &parsed, &[Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(&a[..2], &[0xbe, 0xef]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[172, 18, 0, 2]);
    }

    #[test]
    fn other_types_of_our_names_get_no_records() {
        let q = query(1, "web", 28);
        let parsed = parse_query(&q).unwrap();
        let a = answer(&q, &parsed, &[Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 0);
        assert_eq!(a.len(), q.len());
    }

    #[test]
    fn junk_is_not_a_query() {
        assert!(parse_query(&[]).is_none());
        assert!(parse_query(&[0; 11]).is_none());
        let mut q = query(1, "web", TYPE_A);
        q[2] |= 0x80; // a response
        assert!(parse_query(&q).is_none());
        let mut q = query(1, "web", TYPE_A);
        q[12] = 0xc0; // a pointer in the question
        assert!(parse_query(&q).is_none());
        let q = query(1, "web", TYPE_A);
        assert!(parse_query(&q[..q.len() - 1]).is_none());
        // A label running past the end.
        assert!(parse_query(&[0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'a']).is_none());
    }
}
