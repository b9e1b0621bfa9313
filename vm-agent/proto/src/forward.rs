//! The raw forward protocol of published ports (no gRPC framing): the engine opens one stream
//! per host connection (or per UDP peer) to the agent's [`PORT`] and sends one request line
//! naming the target; the agent answers `OK\n` or `ERR <reason>\n`, then relays.
//!
//! - `tcp <container> <port>`: the container's address on its first network; bytes both ways.
//! - `tcp-lo <container> <port>`: the container's loopback, inside its namespace.
//! - `udp <container> <port>`: datagrams both ways, each a [`write_datagram`] frame.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The agent's forward port on vsock.
pub const PORT: u32 = 1026;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    TcpLoopback,
    Udp,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::TcpLoopback => "tcp-lo",
            Kind::Udp => "udp",
        }
    }
}

/// The request line for `kind` to `container`'s `port`, with its `\n`.
pub fn request(kind: Kind, container: &str, port: u16) -> String {
    format!("{} {container} {port}\n", kind.word())
}

/// Parses a request line (without its `\n`).
pub fn parse_request(line: &str) -> Result<(Kind, String, u16), String> {
    let mut words = line.split_whitespace();
    let kind = match words.next() {
        Some("tcp") => Kind::Tcp,
        Some("tcp-lo") => Kind::TcpLoopback,
        Some("udp") => Kind::Udp,
        _ => return Err(format!("bad forward request {line:?}")),
    };
    match (words.next(), words.next(), words.next()) {
        (Some(id), Some(port), None) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(|p| (kind, id.to_owned(), p))
            .ok_or_else(|| format!("bad port {port}")),
        _ => Err(format!("bad forward request {line:?}")),
    }
}

/// Writes one datagram as a frame: a 2-byte big-endian length, then the payload (a UDP
/// payload always fits).
pub async fn write_datagram<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(data.len())
        .map_err(|_| std::io::Error::other("a datagram over 65535 bytes"))?;
    let mut frame = Vec::with_capacity(2 + data.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(data);
    w.write_all(&frame).await
}

/// Reads one frame into `buf` (65535 bytes suffice); returns the payload's length.
pub async fn read_datagram<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let n = usize::from(u16::from_be_bytes(len));
    let payload = buf
        .get_mut(..n)
        .ok_or_else(|| std::io::Error::other("a datagram frame larger than the buffer"))?;
    r.read_exact(payload).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        for kind in [Kind::Tcp, Kind::TcpLoopback, Kind::Udp] {
            let line = request(kind, "web", 80);
            assert_eq!(parse_request(line.trim_end()), Ok((kind, "web".into(), 80)));
        }
        assert!(parse_request("tcp web 0").is_err());
        assert!(parse_request("sctp web 53").is_err());
        assert!(parse_request("tcp web 80 extra").is_err());
        assert!(parse_request("").is_err());
    }

    #[tokio::test]
    async fn datagrams_keep_their_bounds() {
        let (mut a, mut b) = tokio::io::duplex(1 << 17);
        write_datagram(&mut a, b"one").await.unwrap();
        write_datagram(&mut a, b"").await.unwrap();
        write_datagram(&mut a, &[7u8; 65535]).await.unwrap();
        let mut buf = vec![0u8; 65535];
        assert_eq!(read_datagram(&mut b, &mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(read_datagram(&mut b, &mut buf).await.unwrap(), 0);
        assert_eq!(read_datagram(&mut b, &mut buf).await.unwrap(), 65535);
        assert!(write_datagram(&mut a, &[0u8; 65536]).await.is_err());
    }
}
