//! The guest physical address map. Every fixed address the VMM writes to or decodes lives
//! here so nothing overlaps by accident.

/// GDT for the boot vCPU.
pub const BOOT_GDT_START: u64 = 0x500;
/// An empty IDT (interrupts stay off until the kernel loads its own).
pub const BOOT_IDT_START: u64 = 0x520;
/// Linux's zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, PDPT, PD.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// Start of the EBDA; RAM below it is usable, from here to 1 MiB is reserved.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables: the RSDP first (Linux scans 0xe0000..0x100000 for it), the rest after it.
pub const RSDP_START: u64 = 0xe0000;
pub const ACPI_TABLES_END: u64 = 0x10_0000;
/// Where the kernel is loaded (1 MiB, the protected-mode default).
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit hole below 4 GiB where MMIO devices, the IOAPIC and the LAPIC live.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// virtio-mmio windows: one per device, 4 KiB apart.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// IOAPIC and local APIC windows (in-kernel devices).
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const APIC_START: u64 = 0xfee0_0000;
/// Legacy interrupt lines: COM1 on 4, virtio devices from 5 up to the last IOAPIC pin.
pub const SERIAL_IRQ: u32 = 4;
pub const VIRTIO_IRQ_FIRST: u32 = 5;
pub const IRQ_LAST: u32 = 23;
/// COM1 and the i8042 controller.
pub const SERIAL_PORT: u16 = 0x3f8;
pub const I8042_PORT: u16 = 0x60;
/// The ACPI sleep-control/status and reset register (hardware-reduced ACPI).
pub const ACPI_PM_PORT: u16 = 0x600;
/// A guest writing to this port ends a test guest with the value written (test guests only).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The guest RAM ranges for `size` bytes of memory: below the MMIO gap, then above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// The MMIO window of virtio device number `index`.
pub fn virtio_mmio_base(index: usize) -> u64 {
    VIRTIO_MMIO_START + index as u64 * VIRTIO_MMIO_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guests_get_one_range_and_big_ones_skip_the_gap() {
        assert_eq!(ram_ranges(512 << 20), vec![(0, 512 << 20)]);
        let big = ram_ranges(4 << 30);
        assert_eq!(big[0], (0, MMIO_GAP_START));
        assert_eq!(big[1], (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START));
        assert!(virtio_mmio_base(8) + VIRTIO_MMIO_SIZE < IOAPIC_START);
    }
}
