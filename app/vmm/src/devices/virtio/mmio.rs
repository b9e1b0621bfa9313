//! The virtio-mmio transport (virtio 1.2, 4.2, version 2 registers): feature negotiation, the
//! device-status state machine, queue setup and notifications, interrupt status.
//!
//! It owns the queues until DRIVER_OK and hands copies to the device then; it never processes
//! a queue itself.

use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{ActivateError, VIRTIO_F_VERSION_1, VirtioDevice, status};
use crate::bus::BusDevice;
use crate::interrupt::VirtioInterrupt;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4854_5242; // "BRTH"
/// Where the device configuration space starts.
pub const CONFIG_SPACE_OFFSET: u64 = 0x100;
/// The QueueNotify register, for ioeventfd registration.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;

/// A device-status write that skips a step or clears bits without a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("device status {from:#x} cannot become {to:#x}")]
pub struct StatusError {
    pub from: u32,
    pub to: u32,
}

/// Checks a device-status change: bits only accumulate, each in its order, and 0 resets.
pub fn check_status_transition(from: u32, to: u32) -> Result<(), StatusError> {
    use status::*;
    let err = Err(StatusError { from, to });
    if to == 0 || (to & FAILED != 0 && to & from == from) {
        return Ok(());
    }
    if to & from != from {
        return err;
    }
    let needs = [
        (DRIVER, ACKNOWLEDGE),
        (FEATURES_OK, DRIVER),
        (DRIVER_OK, FEATURES_OK),
    ];
    for (bit, prerequisite) in needs {
        if to & bit != 0 && to & prerequisite == 0 {
            return err;
        }
    }
    Ok(())
}

/// One virtio-mmio window with its device.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<VirtioInterrupt>,
    queue_events: Vec<EventFd>,
    queues: Vec<Queue>,
    status: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    queue_select: u32,
}

impl MmioTransport {
    pub fn new(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
    ) -> std::io::Result<Self> {
        let (interrupt, queue_events, queues) = {
            let dev = device.lock().unwrap_or_else(|p| p.into_inner());
            let events = dev
                .queue_events()
                .iter()
                .map(EventFd::try_clone)
                .collect::<std::io::Result<Vec<_>>>()?;
            let queues = dev
                .queue_max_sizes()
                .iter()
                .map(|max| Queue::new(*max).expect("device queue sizes are powers of two"))
                .collect();
            (dev.interrupt(), events, queues)
        };
        Ok(MmioTransport {
            device,
            mem,
            interrupt,
            queue_events,
            queues,
            status: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            queue_select: 0,
        })
    }

    fn device(&self) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    /// The device-status register as the driver reads it.
    pub fn status(&self) -> u32 {
        let mut s = self.status;
        if self.device().needs_reset() {
            s |= status::DEVICE_NEEDS_RESET;
        }
        s
    }

    fn reset(&mut self) {
        self.device().reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.interrupt.reset();
    }

    fn activate(&mut self) -> Result<(), ActivateError> {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, q) in self.queues.iter().enumerate() {
            if !q.is_valid(&self.mem) {
                return Err(ActivateError::BadQueue(i));
            }
            queues.push(Queue::try_from(q.state()).map_err(|_| ActivateError::BadQueue(i))?);
        }
        self.device().activate(self.mem.clone(), queues)
    }

    fn write_status(&mut self, value: u32) {
        if let Err(e) = check_status_transition(self.status, value) {
            tracing::warn!("virtio-mmio: {e}; ignored");
            return;
        }
        if value == 0 {
            self.reset();
            return;
        }
        let added = value & !self.status;
        if added & status::FEATURES_OK != 0 {
            let offered = self.device().avail_features();
            let accepted = self.driver_features & offered;
            if accepted & VIRTIO_F_VERSION_1 == 0 {
                // A legacy driver: refuse FEATURES_OK, which the driver reads back as failure.
                self.status = value & !status::FEATURES_OK;
                return;
            }
            self.device().set_acked_features(accepted);
        }
        self.status = value;
        if added & status::DRIVER_OK != 0
            && let Err(e) = self.activate()
        {
            tracing::warn!("virtio-mmio: activating the device: {e}");
            self.status |= status::DEVICE_NEEDS_RESET;
            self.interrupt.signal_config_change();
        }
    }

    fn read_register(&self, offset: u64) -> u32 {
        let queue = self.queues.get(self.queue_select as usize);
        match offset {
            0x00 => MAGIC,
            0x04 => VERSION,
            0x08 => self.device().device_type(),
            0x0c => VENDOR_ID,
            0x10 => {
                let features = self.device().avail_features();
                match self.device_features_select {
                    0 => features as u32,
                    1 => (features >> 32) as u32,
                    _ => 0,
                }
            }
            0x34 => queue.map_or(0, |q| u32::from(q.max_size())),
            0x44 => queue.map_or(0, |q| u32::from(q.ready())),
            0x60 => self.interrupt.status(),
            // SHMLenLow/High and SHMBaseLow/High: no device here has a shared memory region,
            // which the spec says as a length of all ones. A driver that finds a zero length
            // instead tries to reserve a region at 0 and fails its probe (virtio-fs's DAX
            // window: "could not reserve region addr=0x0 len=0x0").
            0xb0 | 0xb4 | 0xb8 | 0xbc => u32::MAX,
            0x70 => self.status(),
            0xfc => 0, // config generation: the config never changes under the driver
            _ => 0,
        }
    }

    fn queue_setup_allowed(&self) -> bool {
        self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            0x14 => self.device_features_select = value,
            0x20 => {
                if self.status & status::DRIVER != 0 && self.status & status::FEATURES_OK == 0 {
                    match self.driver_features_select {
                        0 => {
                            self.driver_features =
                                (self.driver_features & !0xffff_ffff) | u64::from(value)
                        }
                        1 => {
                            self.driver_features =
                                (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                        }
                        _ => {}
                    }
                }
            }
            0x24 => self.driver_features_select = value,
            0x30 => self.queue_select = value,
            0x50 => {
                if let Some(evt) = self.queue_events.get(value as usize)
                    && let Err(e) = evt.write(1)
                {
                    tracing::warn!("virtio-mmio: queue notify: {e}");
                }
            }
            0x64 => self.interrupt.ack(value),
            0x70 => self.write_status(value),
            // Linux clears QueueReady as it deletes queues, after a reset too: nothing to do.
            0x44 if value == 0 && self.status & status::DRIVER_OK == 0 => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(false);
                }
            }
            0x38 | 0x44 | 0x80 | 0x84 | 0x90 | 0x94 | 0xa0 | 0xa4 => {
                if !self.queue_setup_allowed() {
                    tracing::warn!("virtio-mmio: queue register {offset:#x} written out of order");
                    return;
                }
                let Some(q) = self.selected_queue() else {
                    return;
                };
                match offset {
                    0x38 => q.set_size(value as u16),
                    0x44 => q.set_ready(value == 1),
                    0x80 => q.set_desc_table_address(Some(value), None),
                    0x84 => q.set_desc_table_address(None, Some(value)),
                    0x90 => q.set_avail_ring_address(Some(value), None),
                    0x94 => q.set_avail_ring_address(None, Some(value)),
                    0xa0 => q.set_used_ring_address(Some(value), None),
                    _ => q.set_used_ring_address(None, Some(value)),
                }
            }
            _ => tracing::debug!("virtio-mmio: write to unknown register {offset:#x}"),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE_OFFSET {
            self.device()
                .read_config(offset - CONFIG_SPACE_OFFSET, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_register(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE_OFFSET {
            self.device()
                .write_config(offset - CONFIG_SPACE_OFFSET, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.write_register(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::TYPE_RNG;
    use crate::devices::virtio::rng::Rng;
    use crate::devices::virtio::test_utils::{GuestQueue, test_memory};

    fn reg(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn set(t: &mut MmioTransport, offset: u64, v: u32) {
        t.write(offset, &v.to_le_bytes());
    }

    #[test]
    fn status_transitions_follow_the_spec_order() {
        use status::*;
        assert!(check_status_transition(0, ACKNOWLEDGE).is_ok());
        assert!(check_status_transition(0, DRIVER).is_err());
        assert!(check_status_transition(ACKNOWLEDGE | DRIVER, ACKNOWLEDGE).is_err());
        assert!(
            check_status_transition(ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER | DRIVER_OK)
                .is_err()
        );
        assert!(
            check_status_transition(ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER | FAILED).is_ok()
        );
        assert!(check_status_transition(7, 0).is_ok());
    }

    #[test]
    fn handshake_activates_the_device_and_notify_signals_the_queue() {
        let mem = test_memory();
        let rng = Arc::new(Mutex::new(Rng::new().unwrap()));
        let mut t = MmioTransport::new(mem.clone(), rng.clone()).unwrap();
        assert_eq!(reg(&mut t, 0), MAGIC);
        assert_eq!(reg(&mut t, 4), 2);
        assert_eq!(reg(&mut t, 8), TYPE_RNG);
        set(&mut t, 0x70, status::ACKNOWLEDGE);
        set(&mut t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
        set(&mut t, 0x14, 1);
        assert_eq!(reg(&mut t, 0x10), 1, "VERSION_1 offered");
        set(&mut t, 0x24, 1);
        set(&mut t, 0x20, 1);
        set(&mut t, 0x70, 0xb);
        assert_eq!(reg(&mut t, 0x70), 0xb);
        let q = GuestQueue::new(&mem, 0x1_0000, 16);
        set(&mut t, 0x30, 0);
        assert_eq!(reg(&mut t, 0x34), 256);
        set(&mut t, 0x38, 16);
        set(&mut t, 0x80, q.desc as u32);
        set(&mut t, 0x90, q.avail as u32);
        set(&mut t, 0xa0, q.used as u32);
        set(&mut t, 0x44, 1);
        set(&mut t, 0x70, 0xf);
        assert_eq!(reg(&mut t, 0x70), 0xf);
        assert!(rng.lock().unwrap().is_activated());
        set(&mut t, 0x50, 0);
        assert_eq!(rng.lock().unwrap().queue_events()[0].read().unwrap(), 1);
        set(&mut t, 0x70, 0);
        assert!(!rng.lock().unwrap().is_activated());
    }

    #[test]
    fn no_shared_memory_region_reads_as_length_all_ones() {
        let mem = test_memory();
        let rng = Arc::new(Mutex::new(Rng::new().unwrap()));
        let mut t = MmioTransport::new(mem, rng).unwrap();
        set(&mut t, 0xac, 0);
        for offset in [0xb0, 0xb4, 0xb8, 0xbc] {
            assert_eq!(reg(&mut t, offset), u32::MAX, "{offset:#x}");
        }
    }

    #[test]
    fn a_legacy_driver_without_version_1_is_refused() {
        let mem = test_memory();
        let rng = Arc::new(Mutex::new(Rng::new().unwrap()));
        let mut t = MmioTransport::new(mem, rng).unwrap();
        set(&mut t, 0x70, 1);
        set(&mut t, 0x70, 3);
        set(&mut t, 0x70, 0xb);
        assert_eq!(reg(&mut t, 0x70) & status::FEATURES_OK, 0);
    }

    #[test]
    fn queues_outside_memory_fail_activation_with_needs_reset() {
        let mem = test_memory();
        let rng = Arc::new(Mutex::new(Rng::new().unwrap()));
        let mut t = MmioTransport::new(mem, rng.clone()).unwrap();
        for s in [1, 3] {
            set(&mut t, 0x70, s);
        }
        set(&mut t, 0x24, 1);
        set(&mut t, 0x20, 1);
        set(&mut t, 0x70, 0xb);
        set(&mut t, 0x38, 16);
        set(&mut t, 0x80, 0xffff_0000);
        set(&mut t, 0x84, 0xffff);
        set(&mut t, 0x44, 1);
        set(&mut t, 0x70, 0xf);
        assert_ne!(reg(&mut t, 0x70) & status::DEVICE_NEEDS_RESET, 0);
        assert!(!rng.lock().unwrap().is_activated());
    }
}
