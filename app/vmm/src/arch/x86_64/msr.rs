//! The MSRs the boot vCPU starts with. Only MSRs in KVM's index list are sent; the caller
//! checks that `KVM_SET_MSRS` took all of them.

use kvm_bindings::{Msrs, kvm_msr_entry};

use crate::hypervisor::HypervisorError;

pub const MSR_IA32_TSC: u32 = 0x10;
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

/// One MSR and the value it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrEntry {
    pub index: u32,
    pub data: u64,
}

/// The boot MSRs, restricted to those in `supported` (KVM_GET_MSR_INDEX_LIST).
pub fn boot_entries(supported: &[u32]) -> Vec<MsrEntry> {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
    ]
    .into_iter()
    .filter(|(index, _)| supported.contains(index))
    .map(|(index, data)| MsrEntry { index, data })
    .collect()
}

/// The KVM form of `entries`.
pub fn to_kvm(entries: &[MsrEntry]) -> Result<Msrs, HypervisorError> {
    let raw: Vec<kvm_msr_entry> = entries
        .iter()
        .map(|e| kvm_msr_entry {
            index: e.index,
            data: e.data,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&raw).map_err(|e| HypervisorError::Ioctl {
        what: "building the MSR list",
        source: std::io::Error::other(format!("{e:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_supported_msrs_are_sent() {
        let entries = boot_entries(&[MSR_IA32_TSC, MSR_MTRR_DEF_TYPE, 0x1234]);
        assert_eq!(
            entries,
            vec![
                MsrEntry {
                    index: MSR_IA32_TSC,
                    data: 0
                },
                MsrEntry {
                    index: MSR_MTRR_DEF_TYPE,
                    data: MTRR_ENABLE | MTRR_TYPE_WRBACK
                },
            ]
        );
        assert_eq!(to_kvm(&entries).unwrap().as_slice().len(), 2);
    }
}
