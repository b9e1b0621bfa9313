//! Devices the guest sees: legacy port-I/O devices ([`legacy`]) and virtio-mmio devices
//! ([`virtio`]). Each device owns its guest-visible state and its host backend; wiring them to
//! buses, interrupts and the event loop is the VMM's job.

pub mod legacy;
pub mod virtio;
