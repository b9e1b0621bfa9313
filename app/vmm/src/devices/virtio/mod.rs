//! virtio over MMIO: the [`VirtioDevice`] contract every device implements, the shared
//! [`DeviceCore`] state, the [`mmio`] transport, and one folder per device (rng, blk, vsock, net,
//! fs).
//!
//! Devices process their queues on the event-loop thread; the transport runs on vCPU threads
//! and only touches a device through its lock.

pub mod blk;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

#[cfg(any(test, fuzzing))]
pub mod test_utils;

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::interrupt::VirtioInterrupt;

pub use mmio::MmioTransport;

/// Feature bits shared by every device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device ids (virtio 1.2, 5).
pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;
pub const TYPE_VSOCK: u32 = 19;
pub const TYPE_FS: u32 = 26;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver set up {got} queues; the device needs {want}")]
    QueueCount { want: usize, got: usize },
    #[error("queue {0} is not ready or does not fit in guest memory")]
    BadQueue(usize),
    #[error("device backend: {0}")]
    Backend(String),
}

/// What the transport needs from a device. Most of it is the shared [`DeviceCore`]; a device
/// names its type and config space and overrides [`VirtioDevice::reset`] if it keeps more state.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    fn core(&self) -> &DeviceCore;
    fn core_mut(&mut self) -> &mut DeviceCore;
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes it; most devices ignore writes.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16] {
        &self.core().queue_max_sizes
    }
    fn avail_features(&self) -> u64 {
        self.core().avail_features
    }
    fn set_acked_features(&mut self, features: u64) {
        self.core_mut().acked_features = features;
    }
    fn interrupt(&self) -> Arc<VirtioInterrupt> {
        self.core().interrupt.clone()
    }
    /// One eventfd per queue, written when the driver notifies that queue.
    fn queue_events(&self) -> &[EventFd] {
        &self.core().queue_events
    }
    /// DRIVER_OK: the device takes its queues and starts.
    fn activate(&mut self, mem: GuestMemoryMmap, queues: Vec<Queue>) -> Result<(), ActivateError> {
        self.core_mut().activate(mem, queues)
    }
    /// Back to the state before the driver found the device; queues are dropped.
    fn reset(&mut self) {
        self.core_mut().reset();
    }
    fn is_activated(&self) -> bool {
        self.core().is_activated()
    }
    /// The device hit a driver error it cannot recover from (DEVICE_NEEDS_RESET).
    fn needs_reset(&self) -> bool {
        self.core().broken
    }
}

/// State every device keeps: features, queues, memory, events, interrupt, failure flag.
pub struct DeviceCore {
    pub avail_features: u64,
    pub acked_features: u64,
    pub queue_max_sizes: Vec<u16>,
    pub queues: Vec<Queue>,
    pub queue_events: Vec<EventFd>,
    pub interrupt: Arc<VirtioInterrupt>,
    pub mem: Option<GuestMemoryMmap>,
    pub broken: bool,
}

impl DeviceCore {
    pub fn new(avail_features: u64, queue_max_sizes: &[u16]) -> std::io::Result<Self> {
        let queue_events = queue_max_sizes
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<_>>()?;
        Ok(DeviceCore {
            avail_features: avail_features | VIRTIO_F_VERSION_1,
            acked_features: 0,
            queue_max_sizes: queue_max_sizes.to_vec(),
            queues: Vec::new(),
            queue_events,
            interrupt: Arc::new(VirtioInterrupt::new()?),
            mem: None,
            broken: false,
        })
    }

    /// Accepts the queues at DRIVER_OK after checking their number.
    pub fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        if queues.len() != self.queue_max_sizes.len() {
            return Err(ActivateError::QueueCount {
                want: self.queue_max_sizes.len(),
                got: queues.len(),
            });
        }
        self.queues = queues;
        self.mem = Some(mem);
        self.broken = false;
        Ok(())
    }

    pub fn reset(&mut self) {
        self.queues.clear();
        self.mem = None;
        self.acked_features = 0;
        self.broken = false;
        self.interrupt.reset();
        for evt in &self.queue_events {
            let _ = evt.read();
        }
    }

    pub fn is_activated(&self) -> bool {
        self.mem.is_some()
    }

    /// The driver broke the protocol: stop using the queues and ask for a reset.
    pub fn mark_broken(&mut self, why: &str) {
        if !self.broken {
            tracing::warn!("virtio device needs reset: {why}");
            self.broken = true;
            self.interrupt.signal_config_change();
        }
    }

    /// Whether queue `index` can be processed now.
    pub fn queue_usable(&self, index: usize) -> bool {
        !self.broken && self.mem.is_some() && self.queues.get(index).is_some_and(|q| q.ready())
    }
}

/// Copies `config[offset..]` into `data`; bytes past the end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(offset) = usize::try_from(offset) else {
        return;
    };
    if offset >= config.len() {
        return;
    }
    let n = data.len().min(config.len() - offset);
    data[..n].copy_from_slice(&config[offset..offset + n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_past_the_end_are_zero() {
        let mut out = [0xffu8; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut out);
        assert_eq!(out, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], u64::MAX, &mut out);
        assert_eq!(out, [0; 4]);
    }
}
