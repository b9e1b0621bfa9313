//! CPUID for a vCPU: KVM's supported set passed through, with this vCPU's APIC id and
//! topology filled in and the hypervisor bit and KVM's hypervisor leaves set.

use kvm_bindings::{CpuId, kvm_cpuid_entry2};

const HYPERVISOR_BIT: u32 = 1 << 31;
const HTT_BIT: u32 = 1 << 28;
const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// Adjusts KVM's supported CPUID for vCPU `index` of `count`.
pub fn patch(cpuid: &mut CpuId, index: u8, count: u8) {
    let mut has_signature = false;
    for entry in cpuid.as_mut_slice() {
        patch_entry(entry, index, count);
        has_signature |= entry.function == KVM_SIGNATURE_LEAF;
    }
    if !has_signature {
        // A full list cannot take more entries; the guest then just sees no hypervisor leaf.
        let _ = cpuid.push(kvm_cpuid_entry2 {
            function: KVM_SIGNATURE_LEAF,
            eax: KVM_SIGNATURE_LEAF + 1,
            ebx: KVM_SIGNATURE[0],
            ecx: KVM_SIGNATURE[1],
            edx: KVM_SIGNATURE[2],
            ..Default::default()
        });
    }
}

fn patch_entry(entry: &mut kvm_cpuid_entry2, index: u8, count: u8) {
    match entry.function {
        1 => {
            // EBX: APIC id [31:24], logical processors [23:16], CLFLUSH line in 8-byte units.
            entry.ebx = (u32::from(index) << 24) | (u32::from(count) << 16) | (8 << 8);
            entry.ecx |= HYPERVISOR_BIT;
            if count > 1 {
                entry.edx |= HTT_BIT;
            } else {
                entry.edx &= !HTT_BIT;
            }
        }
        // Extended topology: EDX is the x2APIC id.
        0xb | 0x1f => entry.edx = u32::from(index),
        KVM_SIGNATURE_LEAF => {
            entry.ebx = KVM_SIGNATURE[0];
            entry.ecx = KVM_SIGNATURE[1];
            entry.edx = KVM_SIGNATURE[2];
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_one_carries_the_apic_id_and_hypervisor_bit() {
        let mut cpuid = CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: 1,
            ebx: 0xffff_ffff,
            ..Default::default()
        }])
        .unwrap();
        patch(&mut cpuid, 3, 4);
        let leaf1 = cpuid.as_slice()[0];
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_ne!(leaf1.ecx & HYPERVISOR_BIT, 0);
        let sig = cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == KVM_SIGNATURE_LEAF)
            .unwrap();
        let mut text = Vec::new();
        for r in [sig.ebx, sig.ecx, sig.edx] {
            text.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&text[..9], b"KVMKVMKVM");
    }
}
