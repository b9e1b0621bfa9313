//! The hypervisor seam: a [`Vm`] and its [`Vcpu`]s, and the [`VmExit`] a vCPU run returns.
//!
//! Only KVM ([`kvm`]) implements it today; the traits are kept to what one more backend
//! (Hypervisor.framework) would need. Nothing outside this module touches kvm-ioctls.

pub mod kvm;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use kvm::{Kvm, KvmVcpu, KvmVm};

/// Errors from the hypervisor backend; `what` names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("opening /dev/kvm: {0}")]
    Open(#[source] std::io::Error),
    #[error("KVM API version {0} is not supported (need 12)")]
    ApiVersion(i32),
    #[error("KVM lacks a required capability: {0}")]
    MissingCap(&'static str),
    #[error("{what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("KVM accepted {set} of {wanted} MSRs; the first it refused is {first_refused:#x}")]
    MsrsRefused {
        wanted: usize,
        set: usize,
        first_refused: u32,
    },
}

impl HypervisorError {
    pub(crate) fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Self {
        move |e| HypervisorError::Ioctl {
            what,
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    }
}

pub type Result<T> = std::result::Result<T, HypervisorError>;

/// Why a vCPU stopped running guest code.
#[derive(Debug)]
pub enum VmExit<'a> {
    /// `in` from an I/O port: fill `data`.
    IoIn { port: u16, data: &'a mut [u8] },
    /// `out` to an I/O port.
    IoOut { port: u16, data: &'a [u8] },
    /// A read from an address with no guest memory behind it: fill `data`.
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// A write to an address with no guest memory behind it.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// The guest executed HLT with interrupts it cannot wake from (only without an in-kernel
    /// irqchip; with one, KVM keeps halted vCPUs to itself).
    Hlt,
    /// Triple fault or similar: the guest is gone.
    Shutdown,
    /// The guest asked for a reset through the platform (KVM_SYSTEM_EVENT_RESET).
    SystemReset,
    /// The guest asked to power off through the platform (KVM_SYSTEM_EVENT_SHUTDOWN).
    SystemShutdown,
    /// The run was interrupted by a signal or an immediate-exit request: check for work.
    Interrupted,
    /// KVM could not enter the guest or hit an internal error; the text says which.
    Failed(String),
    /// Any other exit, named for the log.
    Unhandled(&'static str),
}

/// The x86 register state a vCPU starts from: either real mode at `cs:ip` (test guests) or
/// 64-bit long mode with paging (Linux).
#[derive(Debug, Clone)]
pub enum StartState {
    /// 16-bit real mode: CS base `cs << 4`, instruction pointer `ip`, stack pointer `sp`.
    RealMode { cs: u16, ip: u16, sp: u16 },
    /// 64-bit long mode, as the Linux 64-bit boot protocol wants it.
    LongMode(crate::arch::x86_64::regs::LongModeState),
}

/// A virtual machine: guest memory, interrupt routing and vCPU creation.
pub trait Vm: Send + Sync {
    /// Maps every region of `mem` into the guest, one memory slot per region.
    fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<()>;
    /// Creates vCPU number `index`.
    fn create_vcpu(&self, index: u8) -> Result<Box<dyn Vcpu>>;
    /// Writes to `evt` raise interrupt line `gsi` (edge).
    fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<()>;
    /// A 4-byte guest write of `value` to MMIO `addr` signals `evt` without leaving the kernel.
    fn register_ioevent(&self, evt: &EventFd, addr: u64, value: u32) -> Result<()>;
    /// Whether interrupts are routed by an in-kernel irqchip (else [`Vm::register_irqfd`]
    /// events are only recorded).
    fn has_irqchip(&self) -> bool;
}

/// One virtual CPU. It is created on, and must only be run from, one thread.
pub trait Vcpu: Send {
    /// Sets registers, CPUID and MSRs for `state`.
    fn configure(&mut self, state: &StartState) -> Result<()>;
    /// Runs guest code until the next exit.
    fn run(&mut self) -> Result<VmExit<'_>>;
    /// Makes the next (or current, if a signal interrupts it) [`Vcpu::run`] return
    /// [`VmExit::Interrupted`] at once; `false` clears the request.
    fn set_immediate_exit(&mut self, exit: bool);
}
