//! The vCPU run loop: one thread per vCPU runs guest code and dispatches port-I/O and MMIO
//! exits to the buses until the VM is asked to exit.
//!
//! A vCPU thread is kicked out of `KVM_RUN` with [`KICK_SIGNAL`]; the loop never blocks on
//! anything else.

use std::sync::{Arc, Once};

use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

use crate::bus::Bus;
use crate::hypervisor::{StartState, Vcpu, VmExit};
use crate::vmm::{ExitReason, ExitSignal};

/// The signal that interrupts a vCPU thread inside `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn ignore_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process, so the signal interrupts `KVM_RUN`
/// instead of killing the process.
pub fn install_kick_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(kick_signal(), ignore_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// What one vCPU thread runs.
pub struct VcpuRunner {
    pub index: u8,
    pub vcpu: Box<dyn Vcpu>,
    pub start: StartState,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exit: Arc<ExitSignal>,
}

impl VcpuRunner {
    /// Runs until the VM exits; the reason ends up in the [`ExitSignal`].
    pub fn run(mut self) {
        if let Err(e) = self.vcpu.configure(&self.start) {
            self.exit.request(ExitReason::Error(format!(
                "configuring vCPU {}: {e}",
                self.index
            )));
            return;
        }
        while !self.exit.is_requested() {
            if let Some(reason) = self.step() {
                self.exit.request(reason);
            }
        }
    }

    /// Runs guest code to the next exit and handles it; returns a reason to stop the VM.
    fn step(&mut self) -> Option<ExitReason> {
        let exit = match self.vcpu.run() {
            Ok(exit) => exit,
            Err(e) => return Some(ExitReason::Error(format!("vCPU {}: {e}", self.index))),
        };
        match exit {
            VmExit::IoIn { port, data } => {
                if !self.pio.read(u64::from(port), data) {
                    data.fill(0xff);
                }
            }
            VmExit::IoOut { port, data } => {
                self.pio.write(u64::from(port), data);
            }
            VmExit::MmioRead { addr, data } => {
                if !self.mmio.read(addr, data) {
                    data.fill(0xff);
                }
            }
            VmExit::MmioWrite { addr, data } => {
                self.mmio.write(addr, data);
            }
            VmExit::Hlt => return Some(ExitReason::Halted),
            VmExit::Shutdown | VmExit::SystemReset => return Some(ExitReason::Reset),
            VmExit::SystemShutdown => return Some(ExitReason::Poweroff),
            VmExit::Interrupted => {}
            VmExit::Failed(why) => return Some(ExitReason::Error(why)),
            VmExit::Unhandled(what) => {
                return Some(ExitReason::Error(format!(
                    "vCPU {}: unhandled exit: {what}",
                    self.index
                )));
            }
        }
        None
    }
}
