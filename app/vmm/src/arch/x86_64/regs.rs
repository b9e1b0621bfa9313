//! Long-mode entry for the boot vCPU: the GDT and identity page tables written into guest
//! memory, and the segment, control and general registers that go with them.
//!
//! It only describes state; the hypervisor backend loads it into a vCPU.

use kvm_bindings::{kvm_lapic_state, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    ZERO_PAGE_START,
};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// One segment register as the boot vCPU sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
}

/// Everything the boot vCPU needs to start in 64-bit mode at the kernel's entry point.
#[derive(Debug, Clone)]
pub struct LongModeState {
    pub rip: u64,
    pub rsp: u64,
    pub rsi: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub idt_base: u64,
    pub idt_limit: u16,
    pub cr3: u64,
    pub code: Segment,
    pub data: Segment,
    pub tss: Segment,
}

/// Errors writing the boot tables.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("writing the {what} into guest memory: {source}")]
    Write {
        what: &'static str,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// A GDT entry from flags, base and limit (the layout of the SDM, Vol. 3A, 3.4.5).
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0x0000_f0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

/// Decodes GDT entry number `index` back into the segment register it loads.
pub fn segment_from_gdt(entry: u64, index: u8) -> Segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    Segment {
        base,
        // With 4 KiB granularity the limit counts pages.
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
    }
}

/// Writes the GDT, an empty IDT and page tables identity-mapping the first GiB with 2 MiB
/// pages, and returns the state that enters the kernel at `entry`.
pub fn write_long_mode_tables(
    mem: &GuestMemoryMmap,
    entry: u64,
) -> Result<LongModeState, RegsError> {
    let gdt = [
        gdt_entry(0, 0, 0),            // null
        gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
        gdt_entry(0xc093, 0, 0xfffff), // data
        gdt_entry(0x808b, 0, 0xfffff), // TSS
    ];
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(BOOT_GDT_START + i as u64 * 8))
            .map_err(|source| RegsError::Write {
                what: "GDT",
                source,
            })?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|source| RegsError::Write {
            what: "IDT",
            source,
        })?;

    let page_tables = |source| RegsError::Write {
        what: "page tables",
        source,
    };
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))
        .map_err(page_tables)?;
    mem.write_obj(PDE_START | 0x03, GuestAddress(PDPTE_START))
        .map_err(page_tables)?;
    for i in 0..512u64 {
        // Present, writable, 2 MiB page.
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + i * 8))
            .map_err(page_tables)?;
    }

    Ok(LongModeState {
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        gdt_base: BOOT_GDT_START,
        gdt_limit: (gdt.len() * 8 - 1) as u16,
        idt_base: BOOT_IDT_START,
        idt_limit: 7,
        cr3: PML4_START,
        code: segment_from_gdt(gdt[1], 1),
        data: segment_from_gdt(gdt[2], 2),
        tss: segment_from_gdt(gdt[3], 3),
    })
}

fn to_kvm_segment(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: u8::from(s.present == 0),
        padding: 0,
    }
}

/// Loads `lm` into KVM's register structures.
pub fn apply_long_mode(lm: &LongModeState, sregs: &mut kvm_sregs, regs: &mut kvm_regs) {
    let code = to_kvm_segment(&lm.code);
    let data = to_kvm_segment(&lm.data);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = to_kvm_segment(&lm.tss);
    sregs.gdt.base = lm.gdt_base;
    sregs.gdt.limit = lm.gdt_limit;
    sregs.idt.base = lm.idt_base;
    sregs.idt.limit = lm.idt_limit;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
    sregs.cr3 = lm.cr3;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;

    regs.rflags = 0x2;
    regs.rip = lm.rip;
    regs.rsp = lm.rsp;
    regs.rbp = lm.rsp;
    regs.rsi = lm.rsi;
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &lapic.regs[offset..offset + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().iter().enumerate() {
        lapic.regs[offset + i] = *byte as _;
    }
}

/// LINT0 delivers ExtINT (the PIC) and LINT1 delivers NMIs, as on a PC.
pub fn set_lint(lapic: &mut kvm_lapic_state) {
    let with_mode = |reg: u32, mode: u32| (reg & !0x700) | (mode << 8);
    let lvt0 = lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(lapic, APIC_LVT0, with_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, with_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_the_segments_linux_expects() {
        let code = segment_from_gdt(gdt_entry(0xa09b, 0, 0xfffff), 1);
        assert_eq!(code.selector, 8);
        assert_eq!(
            (code.l, code.db, code.g, code.present, code.s),
            (1, 0, 1, 1, 1)
        );
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(gdt_entry(0xc093, 0, 0xfffff), 2);
        assert_eq!((data.l, data.db, data.type_), (0, 1, 0x3));
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let lm = write_long_mode_tables(&mem, 0x100200).unwrap();
        assert_eq!(lm.cr3, PML4_START);
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4 & !0xfff, PDPTE_START);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
        let mut sregs = kvm_sregs::default();
        let mut regs = kvm_regs::default();
        apply_long_mode(&lm, &mut sregs, &mut regs);
        assert_eq!(regs.rip, 0x100200);
        assert_ne!(sregs.efer & EFER_LMA, 0);
    }

    #[test]
    fn lint_modes_are_extint_and_nmi() {
        let mut lapic = kvm_lapic_state::default();
        set_lint(&mut lapic);
        assert_eq!((lapic_reg(&lapic, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!((lapic_reg(&lapic, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }
}
