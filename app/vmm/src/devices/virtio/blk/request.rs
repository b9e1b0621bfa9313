//! The virtio-blk request format (virtio 1.2, 5.2.6): header, discard/write-zeroes segments,
//! status codes. Parsing only; the device executes.

use vm_memory::ByteValued;

pub const SECTOR_SHIFT: u32 = 9;
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Length of the GET_ID answer.
pub const VIRTIO_BLK_ID_BYTES: usize = 20;

/// `struct virtio_blk_outhdr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHeader {
    pub kind: u32,
    pub ioprio: u32,
    pub sector: u64,
}

// SAFETY: plain old data of three integers with no padding; every bit pattern is valid.
unsafe impl ByteValued for RequestHeader {}

/// `struct virtio_blk_discard_write_zeroes`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscardSegment {
    pub sector: u64,
    pub num_sectors: u32,
    pub flags: u32,
}

// SAFETY: plain old data of three integers with no padding; every bit pattern is valid.
unsafe impl ByteValued for DiscardSegment {}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    Unsupported(u32),
}

impl RequestKind {
    pub fn from_raw(kind: u32) -> Self {
        match kind {
            VIRTIO_BLK_T_IN => RequestKind::In,
            VIRTIO_BLK_T_OUT => RequestKind::Out,
            VIRTIO_BLK_T_FLUSH => RequestKind::Flush,
            VIRTIO_BLK_T_GET_ID => RequestKind::GetId,
            VIRTIO_BLK_T_DISCARD => RequestKind::Discard,
            VIRTIO_BLK_T_WRITE_ZEROES => RequestKind::WriteZeroes,
            other => RequestKind::Unsupported(other),
        }
    }

    /// Whether the request changes the disk.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            RequestKind::Out | RequestKind::Discard | RequestKind::WriteZeroes
        )
    }
}

/// The byte range `sectors` sectors from `sector` covers, if it lies within `capacity` bytes.
pub fn byte_range(sector: u64, len: u64, capacity: u64) -> Option<(u64, u64)> {
    let start = sector.checked_mul(SECTOR_SIZE)?;
    let end = start.checked_add(len)?;
    (end <= capacity).then_some((start, len))
}

/// Parses a segment list (for fuzzing and the device): whole segments only.
pub fn parse_segments(bytes: &[u8]) -> Vec<DiscardSegment> {
    bytes
        .chunks_exact(std::mem::size_of::<DiscardSegment>())
        .map(|c| DiscardSegment::from_slice(c).copied().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_past_the_end_or_overflowing_are_refused() {
        assert_eq!(byte_range(0, 512, 1024), Some((0, 512)));
        assert_eq!(byte_range(1, 512, 1024), Some((512, 512)));
        assert_eq!(byte_range(2, 512, 1024), None);
        assert_eq!(byte_range(u64::MAX / 256, 512, u64::MAX), None);
        assert_eq!(byte_range(0, u64::MAX, 1024), None);
    }

    #[test]
    fn kinds_and_segments_parse() {
        assert_eq!(RequestKind::from_raw(13), RequestKind::WriteZeroes);
        assert_eq!(RequestKind::from_raw(99), RequestKind::Unsupported(99));
        let seg = DiscardSegment {
            sector: 8,
            num_sectors: 16,
            flags: 1,
        };
        let mut bytes = seg.as_slice().to_vec();
        bytes.push(0xff);
        assert_eq!(parse_segments(&bytes), vec![seg]);
    }
}
