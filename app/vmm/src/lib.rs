//! Berth's builtin VMM: KVM vCPUs, guest memory, Linux boot, ACPI tables and the devices the
//! guest sees (serial console, i8042 reset, virtio-mmio rng, blk, vsock and net).
//!
//! The crate owns everything between `/dev/kvm` and the guest. It must not know about the
//! engine, the agent or Docker: the engine runs it as `berth vmm` and talks to the guest only
//! through the hybrid-vsock Unix socket and the serial log.

#![cfg(target_os = "linux")]

pub mod arch;
pub mod bus;
pub mod devices;
pub mod event_loop;
pub mod hypervisor;
pub mod interrupt;
pub mod memory;
pub mod vcpu;
pub mod vmm;

pub use vmm::{ExitReason, Vmm, VmmConfig, VmmError};
