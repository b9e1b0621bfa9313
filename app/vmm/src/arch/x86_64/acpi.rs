//! ACPI tables for a hardware-reduced platform: RSDP, XSDT, FADT, MADT and a DSDT that names
//! every virtio-mmio device as `LNRO0005` (Debian's kernel finds virtio-mmio only this way) and
//! the COM1 UART as `PNP0501`.
//!
//! A hardware-reduced guest has no legacy PIC, so Linux maps no ISA interrupt by itself: a
//! device the DSDT does not describe with its interrupt cannot get one. Without COM1 here the
//! kernel still prints through the UART (polled), but opening `/dev/console` fails to start the
//! port, and every write to it then fails with EIO: the guest's init dies on its first line.
//!
//! Tables are built with the acpi_tables crate and written between [`RSDP_START`] and
//! [`ACPI_TABLES_END`], a range the e820 map reserves.

use acpi_tables::aml::{
    Device, EISAName, IO, Interrupt, Memory32Fixed, Name, One, Package, Path, ResourceTemplate,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    ACPI_PM_PORT, ACPI_TABLES_END, APIC_START, I8042_PORT, IOAPIC_START, RSDP_START, SERIAL_IRQ,
    SERIAL_PORT,
};

const OEM_ID: [u8; 6] = *b"BERTH ";
const OEM_REVISION: u32 = 1;
/// The value of `_S5_` and of SLP_TYP the guest writes to power off.
pub const S5_SLEEP_TYPE: u8 = 5;
/// SLP_EN in the sleep control register.
pub const SLEEP_ENABLE: u8 = 1 << 5;
/// The i8042 command that pulses the CPU reset line; also the FADT reset value.
pub const I8042_RESET_VALUE: u8 = 0xfe;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;
/// There is no CMOS RTC: without this flag Linux probes ports 0x70/0x71 and spends seconds of
/// every boot before it calls the RTC broken (the guest's clock is kvm-clock, set by the host).
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// One virtio-mmio device as the DSDT describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDeviceInfo {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables ({0} bytes) do not fit below 1 MiB")]
    TooBig(u64),
    #[error("writing ACPI tables: {0}")]
    Write(#[source] vm_memory::GuestMemoryError),
}

struct Bytes8(Vec<u8>);

impl AmlSink for Bytes8 {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }
}

fn aml_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut sink = Bytes8(Vec::new());
    table.to_aml_bytes(&mut sink);
    sink.0
}

/// COM1 as a `PNP0501` UART: its eight I/O ports and its edge-triggered interrupt.
fn com1(table: &mut Sdt) {
    let io = IO::new(SERIAL_PORT, SERIAL_PORT, 8, 8);
    let irq = Interrupt::new(true, true, false, false, SERIAL_IRQ);
    let crs = ResourceTemplate::new(vec![&io, &irq]);
    let hid = EISAName::new("PNP0501");
    let uid = 0u32;
    let hid = Name::new("_HID".into(), &hid);
    let uid = Name::new("_UID".into(), &uid);
    let crs = Name::new("_CRS".into(), &crs);
    Device::new(Path::new("\\_SB_.COM1"), vec![&hid, &uid, &crs]).to_aml_bytes(table);
}

/// The DSDT: COM1, one `LNRO0005` device per virtio-mmio window, and `_S5_` for poweroff.
pub fn dsdt(devices: &[MmioDeviceInfo]) -> Vec<u8> {
    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, *b"BERTHDSD", OEM_REVISION);
    com1(&mut table);
    for (i, dev) in devices.iter().enumerate() {
        let mem = Memory32Fixed::new(true, dev.base as u32, dev.size as u32);
        // Consumer, edge-triggered, active-high, exclusive: how virtio-mmio irqfds behave.
        let irq = Interrupt::new(true, true, false, false, dev.irq);
        let crs = ResourceTemplate::new(vec![&mem, &irq]);
        let hid: &'static str = "LNRO0005";
        let uid = i as u32;
        let hid = Name::new("_HID".into(), &hid);
        let uid = Name::new("_UID".into(), &uid);
        let cca = Name::new("_CCA".into(), &One {});
        let crs = Name::new("_CRS".into(), &crs);
        let path = Path::new(&format!("\\_SB_.V{i:03X}"));
        Device::new(path, vec![&hid, &uid, &cca, &crs]).to_aml_bytes(&mut table);
    }
    let s5_type = S5_SLEEP_TYPE;
    Name::new("_S5_".into(), &Package::new(vec![&s5_type])).to_aml_bytes(&mut table);
    table.update_checksum();
    table.as_slice().to_vec()
}

/// The FADT of a hardware-reduced platform with a sleep-control register for poweroff and
/// the i8042 command port as its reset register.
pub fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let io = |port: u16| {
        GAS::new(
            AddressSpace::SystemIo,
            8,
            0,
            AccessSize::ByteAccess,
            u64::from(port),
        )
    };
    let mut builder = FADTBuilder::new(OEM_ID, *b"BERTHFAC", OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    builder.iapc_boot_arch =
        (IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT).into();
    builder.sleep_control_reg = io(ACPI_PM_PORT);
    builder.sleep_status_reg = io(ACPI_PM_PORT + 1);
    builder.reset_reg = io(I8042_PORT + 4);
    builder.reset_value = I8042_RESET_VALUE;
    builder.hypervisor_vendor_identity = u64::from_le_bytes(*b"BERTHVMM").into();
    aml_bytes(&builder.finalize())
}

/// The MADT: one local APIC per vCPU and the IOAPIC.
pub fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"BERTHAPI",
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    for cpu in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, IOAPIC_START as u32, 0));
    aml_bytes(&madt)
}

fn align8(addr: u64) -> u64 {
    (addr + 7) & !7
}

/// Writes all tables; returns the RSDP address.
pub fn write_tables(
    mem: &GuestMemoryMmap,
    vcpus: u8,
    devices: &[MmioDeviceInfo],
) -> Result<u64, AcpiError> {
    let mut next = align8(RSDP_START + Rsdp::len() as u64);
    let mut place = |bytes: &[u8]| -> Result<u64, AcpiError> {
        let addr = next;
        next = align8(addr + bytes.len() as u64);
        if next > ACPI_TABLES_END {
            return Err(AcpiError::TooBig(next - RSDP_START));
        }
        mem.write_slice(bytes, GuestAddress(addr))
            .map_err(AcpiError::Write)?;
        Ok(addr)
    };
    let dsdt_addr = place(&dsdt(devices))?;
    let fadt_addr = place(&fadt(dsdt_addr))?;
    let madt_addr = place(&madt(vcpus))?;
    let mut xsdt = XSDT::new(OEM_ID, *b"BERTHXSD", OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place(&aml_bytes(&xsdt))?;
    let rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    mem.write_slice(&rsdp, GuestAddress(RSDP_START))
        .map_err(AcpiError::Write)?;
    Ok(RSDP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(table: &[u8]) -> bool {
        table.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn dsdt_names_each_virtio_device_with_its_window_and_irq() {
        let devs = [
            MmioDeviceInfo {
                base: 0xd000_0000,
                size: 0x1000,
                irq: 5,
            },
            MmioDeviceInfo {
                base: 0xd000_1000,
                size: 0x1000,
                irq: 6,
            },
        ];
        let table = dsdt(&devs);
        assert_eq!(&table[..4], b"DSDT");
        assert_eq!(u32_at(&table, 4) as usize, table.len());
        assert!(checksum_ok(&table));
        let hits = table.windows(8).filter(|w| w == b"LNRO0005").count();
        assert_eq!(hits, 2);
        assert!(table.windows(4).any(|w| w == b"V001"));
        assert!(table.windows(4).any(|w| w == 0xd000_1000u32.to_le_bytes()));
        assert!(table.windows(4).any(|w| w == b"_S5_"));
    }

    #[test]
    fn dsdt_describes_com1_with_its_ports_and_interrupt() {
        let table = dsdt(&[]);
        assert!(checksum_ok(&table));
        assert!(table.windows(4).any(|w| w == b"COM1"));
        // EISAID("PNP0501"), as the DWord AML stores it.
        let pnp0501: [u8; 4] = [0x41, 0xd0, 0x05, 0x01];
        assert!(table.windows(4).any(|w| w == pnp0501), "no PNP0501 id");
        // The I/O port descriptor: 16-bit decode, 0x3f8..0x3f8, alignment 8, length 8.
        let io = [0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x08, 0x08];
        assert!(table.windows(8).any(|w| w == io), "no COM1 I/O descriptor");
        // The extended interrupt descriptor naming IRQ 4.
        let irq = [0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00];
        assert!(table.windows(9).any(|w| w == irq), "no COM1 interrupt");
    }

    #[test]
    fn tables_chain_from_rsdp_to_fadt_and_dsdt() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let devs = [MmioDeviceInfo {
            base: 0xd000_0000,
            size: 0x1000,
            irq: 5,
        }];
        let rsdp_addr = write_tables(&mem, 2, &devs).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let mut head = [0u8; 52];
        mem.read_slice(&mut head, GuestAddress(xsdt_addr)).unwrap();
        assert_eq!(&head[..4], b"XSDT");
        assert_eq!(u32_at(&head, 4), 36 + 16);
        let fadt_addr = u64::from_le_bytes(head[36..44].try_into().unwrap());
        let mut fadt = vec![0u8; 276];
        mem.read_slice(&mut fadt, GuestAddress(fadt_addr)).unwrap();
        assert_eq!(&fadt[..4], b"FACP");
        assert!(checksum_ok(&fadt[..u32_at(&fadt, 4) as usize]));
        assert_ne!(u32_at(&fadt, 112) & (1 << 20), 0, "hardware-reduced flag");
        let boot_arch = u16::from_le_bytes(fadt[109..111].try_into().unwrap());
        assert_ne!(boot_arch & (1 << 5), 0, "no CMOS RTC");
        let dsdt_addr = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(dsdt_addr)).unwrap();
        assert_eq!(&sig, b"DSDT");
        let madt_addr = u64::from_le_bytes(head[44..52].try_into().unwrap());
        mem.read_slice(&mut sig, GuestAddress(madt_addr)).unwrap();
        assert_eq!(&sig, b"APIC");
    }
}
