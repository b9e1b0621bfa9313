//! KVM behind the [`Vm`]/[`Vcpu`] seam: opens `/dev/kvm`, creates the VM with its in-kernel
//! irqchip and PIT, maps guest memory and turns `KVM_RUN` exits into [`VmExit`]s.
//!
//! CPUID and MSR contents come from `arch::x86_64`; this file only moves them into KVM.

use std::sync::{Arc, Mutex};

use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN, MsrList, kvm_pit_config, kvm_userspace_memory_region,
};
use kvm_ioctls::{Cap, IoEventAddress, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{HypervisorError, Result, StartState, Vcpu, Vm, VmExit};
use crate::arch::x86_64::{cpuid, msr, regs};

/// Where KVM puts its TSS and identity map on Intel: three pages just below the IOAPIC hole.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// An open `/dev/kvm`.
pub struct Kvm {
    kvm: kvm_ioctls::Kvm,
}

impl Kvm {
    /// Opens `/dev/kvm` and checks the API version and the capabilities Berth needs.
    pub fn new() -> Result<Self> {
        let kvm = kvm_ioctls::Kvm::new()
            .map_err(|e| HypervisorError::Open(std::io::Error::from_raw_os_error(e.errno())))?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(HypervisorError::ApiVersion(version));
        }
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
            (Cap::Pit2, "KVM_CAP_PIT2"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(HypervisorError::MissingCap(name));
            }
        }
        Ok(Kvm { kvm })
    }

    /// Creates a VM with `vcpus` vCPUs; `irqchip` adds the in-kernel PIC, IOAPIC, LAPICs
    /// and PIT (tests of bare guests may leave it out).
    pub fn create_vm(&self, vcpus: u8, irqchip: bool) -> Result<KvmVm> {
        let fd = self
            .kvm
            .create_vm()
            .map_err(HypervisorError::ioctl("KVM_CREATE_VM"))?;
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(HypervisorError::ioctl("KVM_SET_TSS_ADDR"))?;
        fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
            .map_err(HypervisorError::ioctl("KVM_SET_IDENTITY_MAP_ADDR"))?;
        if irqchip {
            fd.create_irq_chip()
                .map_err(HypervisorError::ioctl("KVM_CREATE_IRQCHIP"))?;
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            fd.create_pit2(pit)
                .map_err(HypervisorError::ioctl("KVM_CREATE_PIT2"))?;
        }
        let supported_cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(HypervisorError::ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        let msr_list = self
            .kvm
            .get_msr_index_list()
            .map_err(HypervisorError::ioctl("KVM_GET_MSR_INDEX_LIST"))?;
        Ok(KvmVm {
            fd: Arc::new(fd),
            vcpus,
            irqchip,
            supported_cpuid,
            msr_list,
            memory: Mutex::new(None),
        })
    }
}

/// A KVM virtual machine.
pub struct KvmVm {
    fd: Arc<VmFd>,
    vcpus: u8,
    irqchip: bool,
    supported_cpuid: CpuId,
    msr_list: MsrList,
    /// Keeps the mappings handed to KVM alive as long as the VM.
    memory: Mutex<Option<GuestMemoryMmap>>,
}

impl Vm for KvmVm {
    fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<()> {
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|_| HypervisorError::MissingCap("a host mapping for guest memory"))?;
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: `host` points at a live mapping of `region.len()` bytes owned by `mem`;
            // a clone of `mem` is stored in `self.memory` below, so the mapping outlives the
            // VM's use of it.
            unsafe { self.fd.set_user_memory_region(region_desc) }
                .map_err(HypervisorError::ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        *self.memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(mem.clone());
        Ok(())
    }

    fn create_vcpu(&self, index: u8) -> Result<Box<dyn Vcpu>> {
        let fd = self
            .fd
            .create_vcpu(u64::from(index))
            .map_err(HypervisorError::ioctl("KVM_CREATE_VCPU"))?;
        Ok(Box::new(KvmVcpu {
            fd,
            index,
            vcpus: self.vcpus,
            irqchip: self.irqchip,
            supported_cpuid: self.supported_cpuid.clone(),
            msr_list: self.msr_list.as_slice().to_vec(),
        }))
    }

    fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<()> {
        if !self.irqchip {
            // Without an irqchip KVM has nowhere to route the line; the eventfd just counts.
            return Ok(());
        }
        self.fd
            .register_irqfd(evt, gsi)
            .map_err(HypervisorError::ioctl("KVM_IRQFD"))
    }

    fn register_ioevent(&self, evt: &EventFd, addr: u64, value: u32) -> Result<()> {
        self.fd
            .register_ioevent(evt, &IoEventAddress::Mmio(addr), value)
            .map_err(HypervisorError::ioctl("KVM_IOEVENTFD"))
    }

    fn has_irqchip(&self) -> bool {
        self.irqchip
    }
}

/// A KVM vCPU.
pub struct KvmVcpu {
    fd: VcpuFd,
    index: u8,
    vcpus: u8,
    irqchip: bool,
    supported_cpuid: CpuId,
    msr_list: Vec<u32>,
}

impl KvmVcpu {
    fn set_cpuid(&self) -> Result<()> {
        let mut cpuid = self.supported_cpuid.clone();
        cpuid::patch(&mut cpuid, self.index, self.vcpus);
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(HypervisorError::ioctl("KVM_SET_CPUID2"))
    }

    fn set_boot_msrs(&self) -> Result<()> {
        let entries = msr::boot_entries(&self.msr_list);
        let msrs = msr::to_kvm(&entries)?;
        let set = self
            .fd
            .set_msrs(&msrs)
            .map_err(HypervisorError::ioctl("KVM_SET_MSRS"))?;
        if set != entries.len() {
            return Err(HypervisorError::MsrsRefused {
                wanted: entries.len(),
                set,
                first_refused: entries[set].index,
            });
        }
        Ok(())
    }
}

impl Vcpu for KvmVcpu {
    fn configure(&mut self, state: &StartState) -> Result<()> {
        self.set_cpuid()?;
        let mut sregs = self
            .fd
            .get_sregs()
            .map_err(HypervisorError::ioctl("KVM_GET_SREGS"))?;
        let mut kregs = kvm_bindings::kvm_regs {
            rflags: 0x2,
            ..Default::default()
        };
        match state {
            StartState::RealMode { cs, ip, sp } => {
                sregs.cs.base = u64::from(*cs) << 4;
                sregs.cs.selector = *cs;
                kregs.rip = u64::from(*ip);
                kregs.rsp = u64::from(*sp);
            }
            StartState::LongMode(lm) => {
                self.set_boot_msrs()?;
                let fpu = kvm_bindings::kvm_fpu {
                    fcw: 0x37f,
                    mxcsr: 0x1f80,
                    ..Default::default()
                };
                self.fd
                    .set_fpu(&fpu)
                    .map_err(HypervisorError::ioctl("KVM_SET_FPU"))?;
                regs::apply_long_mode(lm, &mut sregs, &mut kregs);
            }
        }
        self.fd
            .set_sregs(&sregs)
            .map_err(HypervisorError::ioctl("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(&kregs)
            .map_err(HypervisorError::ioctl("KVM_SET_REGS"))?;
        if self.irqchip {
            let mut lapic = self
                .fd
                .get_lapic()
                .map_err(HypervisorError::ioctl("KVM_GET_LAPIC"))?;
            regs::set_lint(&mut lapic);
            self.fd
                .set_lapic(&lapic)
                .map_err(HypervisorError::ioctl("KVM_SET_LAPIC"))?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<VmExit<'_>> {
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                return Ok(VmExit::Interrupted);
            }
            Err(e) => return Err(HypervisorError::ioctl("KVM_RUN")(e)),
        };
        Ok(match exit {
            VcpuExit::IoIn(port, data) => VmExit::IoIn { port, data },
            VcpuExit::IoOut(port, data) => VmExit::IoOut { port, data },
            VcpuExit::MmioRead(addr, data) => VmExit::MmioRead { addr, data },
            VcpuExit::MmioWrite(addr, data) => VmExit::MmioWrite { addr, data },
            VcpuExit::Hlt => VmExit::Hlt,
            VcpuExit::Shutdown => VmExit::Shutdown,
            VcpuExit::Intr => VmExit::Interrupted,
            VcpuExit::SystemEvent(kind, _) if kind == KVM_SYSTEM_EVENT_RESET => VmExit::SystemReset,
            VcpuExit::SystemEvent(kind, _) if kind == KVM_SYSTEM_EVENT_SHUTDOWN => {
                VmExit::SystemShutdown
            }
            VcpuExit::FailEntry(reason, cpu) => VmExit::Failed(format!(
                "KVM could not enter the guest on cpu {cpu} (hardware reason {reason:#x})"
            )),
            VcpuExit::InternalError => VmExit::Failed("KVM internal error".into()),
            VcpuExit::Exception => VmExit::Unhandled("exception"),
            VcpuExit::Unknown => VmExit::Unhandled("unknown"),
            VcpuExit::IrqWindowOpen => VmExit::Unhandled("irq window open"),
            VcpuExit::Debug(_) => VmExit::Unhandled("debug"),
            _ => VmExit::Unhandled("other"),
        })
    }

    fn set_immediate_exit(&mut self, exit: bool) {
        self.fd.set_kvm_immediate_exit(u8::from(exit));
    }
}
