//! The virtio-vsock packet header (virtio 1.2, 5.10.6) and the hybrid-socket handshake line.
//! Parsing only: nothing here does I/O.

use vm_memory::ByteValued;

/// The host's CID.
pub const HOST_CID: u64 = 2;
pub const HEADER_SIZE: usize = 44;
pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

/// Largest payload accepted from or sent to the guest in one packet.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// `struct virtio_vsock_hdr`, little-endian on the wire (x86 hosts only, like the crate).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub kind: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

// SAFETY: packed plain old data made only of integers; every bit pattern is valid.
unsafe impl ByteValued for Header {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("a vsock header needs {HEADER_SIZE} bytes, got {0}")]
    Short(usize),
    #[error("payload length {0} is over the {MAX_PAYLOAD}-byte limit")]
    TooLong(u32),
    #[error("the packet claims {claimed} payload bytes but carries {carried}")]
    Truncated { claimed: u32, carried: usize },
}

/// Parses the header at the start of `bytes` and checks the payload length against what
/// follows it.
pub fn parse(bytes: &[u8]) -> Result<Header, PacketError> {
    let head = bytes
        .get(..HEADER_SIZE)
        .ok_or(PacketError::Short(bytes.len()))?;
    let header = *Header::from_slice(head).ok_or(PacketError::Short(bytes.len()))?;
    let len = header.len;
    if len as usize > MAX_PAYLOAD {
        return Err(PacketError::TooLong(len));
    }
    let carried = bytes.len() - HEADER_SIZE;
    if (len as usize) > carried {
        return Err(PacketError::Truncated {
            claimed: len,
            carried,
        });
    }
    Ok(header)
}

/// Parses a handshake line `CONNECT <port>\n` (without the newline).
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let port = text.strip_prefix("CONNECT ")?;
    let port = port.strip_suffix('\r').unwrap_or(port);
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_44_bytes_and_round_trips() {
        assert_eq!(std::mem::size_of::<Header>(), HEADER_SIZE);
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 1000,
            dst_port: 52,
            len: 4,
            kind: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 7,
        };
        let mut bytes = h.as_slice().to_vec();
        bytes.extend_from_slice(b"ping");
        assert_eq!(parse(&bytes), Ok(h));
        assert_eq!(
            parse(&bytes[..46]),
            Err(PacketError::Truncated {
                claimed: 4,
                carried: 2
            })
        );
        assert_eq!(parse(&bytes[..10]), Err(PacketError::Short(10)));
    }

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Some(1024));
        assert_eq!(parse_connect(b"CONNECT 1024\r"), Some(1024));
        assert_eq!(parse_connect(b"CONNECT "), None);
        assert_eq!(parse_connect(b"CONNECT -1"), None);
        assert_eq!(parse_connect(b"CONNECT 99999999999"), None);
        assert_eq!(parse_connect(b"connect 1"), None);
    }
}
