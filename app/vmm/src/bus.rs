//! Address dispatch for vCPU exits: a [`Bus`] maps port-I/O or MMIO ranges to devices.
//!
//! The bus owns only the map; devices own their state behind their own lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device that answers reads and writes in one address range. `offset` is relative to the
/// range's base.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap { base: u64, len: u64 },
    #[error("a bus range cannot be empty")]
    Empty,
}

struct Entry {
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// Port-I/O or MMIO address space.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `base..base+len`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty);
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        let before = self.ranges.range(..end).next_back();
        if let Some((b, e)) = before
            && b + e.len > base
        {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, Entry { len, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Entry)> {
        let (base, entry) = self.ranges.range(..=addr).next_back()?;
        (addr - base < entry.len).then_some((*base, entry))
    }

    /// Dispatches a read; `false` if nothing lives at `addr` (the caller fills the data).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((base, entry)) = self.find(addr) else {
            return false;
        };
        let mut dev = entry.device.lock().unwrap_or_else(|p| p.into_inner());
        dev.read(addr - base, data);
        true
    }

    /// Dispatches a write; `false` if nothing lives at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((base, entry)) = self.find(addr) else {
            return false;
        };
        let mut dev = entry.device.lock().unwrap_or_else(|p| p.into_inner());
        dev.write(addr - base, data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u64, Vec<u8>)>);

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_and_refuses_overlaps() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        assert!(bus.insert(0x3f0, 9, dev.clone()).is_err());
        assert!(bus.insert(0x3ff, 1, dev.clone()).is_err());
        bus.insert(0x400, 1, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(!bus.read(0x3f7, &mut b));
        assert!(!bus.write(0x401, &[1]));
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().unwrap().0, vec![(0, vec![b'x'])]);
    }
}
