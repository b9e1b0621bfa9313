//! Interrupt lines from devices to the guest: an [`IrqLine`] is an eventfd that KVM turns into
//! an edge on one IOAPIC pin (irqfd); [`VirtioInterrupt`] adds the virtio-mmio status bits.

use std::sync::atomic::{AtomicU32, Ordering};

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// The used-buffer bit of the virtio-mmio InterruptStatus register.
pub const VIRTIO_INT_VRING: u32 = 1;
/// The configuration-change bit.
pub const VIRTIO_INT_CONFIG: u32 = 2;

/// One interrupt line, raised by writing its eventfd.
#[derive(Debug)]
pub struct IrqLine {
    evt: EventFd,
}

impl IrqLine {
    pub fn new() -> std::io::Result<Self> {
        Ok(IrqLine {
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// The eventfd to register with the hypervisor as an irqfd.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }

    /// Raises the line. A full counter means an edge is already pending, which is enough.
    pub fn trigger(&self) -> std::io::Result<()> {
        match self.evt.write(1) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// How many edges were raised since the last call (for tests without an irqchip).
    pub fn take_count(&self) -> u64 {
        self.evt.read().unwrap_or(0)
    }
}

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        IrqLine::trigger(self)
    }
}

/// The interrupt of one virtio device: InterruptStatus bits plus its line.
#[derive(Debug)]
pub struct VirtioInterrupt {
    status: AtomicU32,
    line: IrqLine,
}

impl VirtioInterrupt {
    pub fn new() -> std::io::Result<Self> {
        Ok(VirtioInterrupt {
            status: AtomicU32::new(0),
            line: IrqLine::new()?,
        })
    }

    pub fn line(&self) -> &IrqLine {
        &self.line
    }

    /// Tells the driver that used rings moved.
    pub fn signal_used_queue(&self) {
        self.status.fetch_or(VIRTIO_INT_VRING, Ordering::SeqCst);
        if let Err(e) = self.line.trigger() {
            tracing::warn!("raising a virtio interrupt: {e}");
        }
    }

    /// Tells the driver that the configuration (or the device status) changed.
    pub fn signal_config_change(&self) {
        self.status.fetch_or(VIRTIO_INT_CONFIG, Ordering::SeqCst);
        if let Err(e) = self.line.trigger() {
            tracing::warn!("raising a virtio interrupt: {e}");
        }
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// A write to InterruptACK clears the written bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Clears everything (device reset).
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits_set_and_ack() {
        let irq = VirtioInterrupt::new().unwrap();
        irq.signal_used_queue();
        irq.signal_config_change();
        assert_eq!(irq.status(), 3);
        assert_eq!(irq.line().take_count(), 2);
        irq.ack(VIRTIO_INT_VRING);
        assert_eq!(irq.status(), VIRTIO_INT_CONFIG);
    }
}
