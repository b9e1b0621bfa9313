//! Guest RAM: one memfd holding every range of the address map, mapped shared, so a
//! vhost-user backend can map the same pages later.
//!
//! This module creates memory; it does not decide the address map (that is `arch`).

use std::fs::File;
use std::os::fd::FromRawFd;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memfd_create for guest memory: {0}")]
    Memfd(#[source] std::io::Error),
    #[error("sizing guest memory to {size} bytes: {source}")]
    Size {
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("mapping guest memory: {0}")]
    Map(#[source] vm_memory::mmap::FromRangesError),
    #[error("guest memory must be a positive number of 4 KiB pages, not {0} bytes")]
    BadSize(u64),
}

fn memfd(name: &str) -> Result<File, MemoryError> {
    let name = std::ffi::CString::new(name).expect("memfd name has no NUL");
    // SAFETY: `name` is a valid NUL-terminated string; the call has no other inputs.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Guest memory for `ranges` (guest address, length), backed by one memfd in that order.
pub fn create_guest_memory(ranges: &[(u64, u64)]) -> Result<GuestMemoryMmap, MemoryError> {
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    if total == 0 || ranges.iter().any(|r| r.1 == 0 || !r.1.is_multiple_of(4096)) {
        return Err(MemoryError::BadSize(total));
    }
    let file = memfd("berth-guest-ram")?;
    file.set_len(total).map_err(|source| MemoryError::Size {
        size: total,
        source,
    })?;
    let file = std::sync::Arc::new(file);
    let mut offset = 0;
    let regions: Vec<_> = ranges
        .iter()
        .map(|&(addr, len)| {
            let region = (
                GuestAddress(addr),
                len as usize,
                Some(FileOffset::from_arc(file.clone(), offset)),
            );
            offset += len;
            region
        })
        .collect();
    GuestMemoryMmap::from_ranges_with_files(regions).map_err(MemoryError::Map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn ranges_share_one_memfd_at_consecutive_offsets() {
        let mem = create_guest_memory(&[(0, 1 << 20), (4 << 20, 1 << 20)]).unwrap();
        assert_eq!(mem.num_regions(), 2);
        let offsets: Vec<u64> = mem
            .iter()
            .map(|r| r.file_offset().unwrap().start())
            .collect();
        assert_eq!(offsets, vec![0, 1 << 20]);
        mem.write_obj(0xdead_beef_u32, GuestAddress(4 << 20))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(4 << 20)).unwrap(),
            0xdead_beef
        );
        assert!(mem.write_obj(1u8, GuestAddress(2 << 20)).is_err());
    }

    #[test]
    fn zero_and_unaligned_sizes_are_refused() {
        assert!(matches!(
            create_guest_memory(&[(0, 0)]),
            Err(MemoryError::BadSize(_))
        ));
        assert!(create_guest_memory(&[(0, 4097)]).is_err());
    }
}
