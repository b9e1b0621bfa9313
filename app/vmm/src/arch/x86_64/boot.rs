//! The Linux x86 boot protocol: kernel (bzImage, or an ELF vmlinux) and initrd into guest
//! memory, the command line, and the zero page with its e820 map and RSDP pointer.
//!
//! It writes guest memory only; vCPU state comes from [`super::regs`].

use std::fs::File;
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Elf, KernelLoader, load_cmdline};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, EBDA_START, HIMEM_START, MMIO_GAP_END, MMIO_GAP_START,
    RSDP_START, ZERO_PAGE_START,
};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// The 64-bit entry point sits 0x200 bytes into a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the kernel {path}: not a bzImage ({bz:?}) nor an ELF vmlinux ({elf:?})")]
    Kernel {
        path: String,
        bz: linux_loader::loader::Error,
        elf: linux_loader::loader::Error,
    },
    #[error("the initrd ({size} bytes) does not fit in guest memory above the kernel")]
    InitrdTooBig { size: u64 },
    #[error("reading the initrd: {0}")]
    Initrd(#[source] vm_memory::GuestMemoryError),
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("writing the zero page: {0:?}")]
    ZeroPage(linux_loader::configurator::Error),
}

/// Where things landed, for the vCPU and the zero page.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// 64-bit entry point.
    pub entry: u64,
    /// First byte after the kernel image.
    pub end: u64,
    /// The setup header of a bzImage (defaults for an ELF kernel).
    pub header: linux_loader::loader::bootparam::setup_header,
}

/// Loads a bzImage (or, failing that, an ELF vmlinux) at 1 MiB.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, BootError> {
    let open = || {
        File::open(path).map_err(|source| BootError::Open {
            path: path.display().to_string(),
            source,
        })
    };
    let bz = match BzImage::load(mem, Some(GuestAddress(HIMEM_START)), &mut open()?, None) {
        Ok(result) => {
            return Ok(LoadedKernel {
                entry: result.kernel_load.raw_value() + BZIMAGE_64BIT_ENTRY_OFFSET,
                end: result.kernel_end,
                header: result.setup_header.unwrap_or_default(),
            });
        }
        Err(e) => e,
    };
    match Elf::load(mem, None, &mut open()?, Some(GuestAddress(HIMEM_START))) {
        Ok(result) => Ok(LoadedKernel {
            entry: result.kernel_load.raw_value(),
            end: result.kernel_end,
            header: Default::default(),
        }),
        Err(elf) => Err(BootError::Kernel {
            path: path.display().to_string(),
            bz,
            elf,
        }),
    }
}

/// Loads the initrd as high as the kernel allows below the MMIO gap; returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    path: &Path,
) -> Result<(u64, u64), BootError> {
    let mut file = File::open(path).map_err(|source| BootError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| BootError::Open {
            path: path.display().to_string(),
            source,
        })?
        .len();
    let low_end = mem.last_addr().raw_value().min(MMIO_GAP_START - 1) + 1;
    let max = match kernel.header.initrd_addr_max {
        0 => low_end,
        m => low_end.min(u64::from(m) + 1),
    };
    let addr = max
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel.end)
        .ok_or(BootError::InitrdTooBig { size })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(BootError::Initrd)?;
    Ok((addr, size))
}

/// The e820 map for guest memory: low RAM, the reserved EBDA/BIOS area (which holds the ACPI
/// tables), RAM from 1 MiB to the gap, RAM above 4 GiB.
pub fn e820_map(mem: &GuestMemoryMmap) -> Vec<boot_e820_entry> {
    let end = mem.last_addr().raw_value() + 1;
    let entry = |addr: u64, size: u64, kind: u32| boot_e820_entry {
        addr,
        size,
        r#type: kind,
    };
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    let low_end = end.min(MMIO_GAP_START);
    map.push(entry(HIMEM_START, low_end - HIMEM_START, E820_RAM));
    if end > MMIO_GAP_END {
        map.push(entry(MMIO_GAP_END, end - MMIO_GAP_END, E820_RAM));
    }
    map
}

/// Writes the command line and the zero page.
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    cmdline: &str,
    initrd: Option<(u64, u64)>,
) -> Result<(), BootError> {
    let cmd = Cmdline::try_from(cmdline, CMDLINE_MAX_SIZE)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmd)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;

    let mut params = boot_params {
        hdr: kernel.header,
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline.len() as u32 + 1;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    params.acpi_rsdp_addr = RSDP_START;
    let map = e820_map(mem);
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        *slot = *entry;
    }
    params.e820_entries = map.len() as u8;

    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(BootError::ZeroPage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    #[test]
    fn e820_leaves_the_bios_area_reserved() {
        let map = e820_map(&mem(64 << 20));
        assert_eq!(map.len(), 3);
        assert_eq!((map[1].addr, map[1].r#type), (EBDA_START, E820_RESERVED));
        assert_eq!(map[2].addr + map[2].size, 64 << 20);
    }

    #[test]
    fn zero_page_points_at_cmdline_initrd_and_rsdp() {
        let mem = mem(64 << 20);
        let kernel = LoadedKernel {
            entry: HIMEM_START + 0x200,
            end: 0x40_0000,
            header: Default::default(),
        };
        write_boot_params(&mem, &kernel, "console=ttyS0", Some((0x100_0000, 0x1000))).unwrap();
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ params.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ params.hdr.ramdisk_image }, 0x100_0000);
        assert_eq!({ params.acpi_rsdp_addr }, RSDP_START);
        let mut text = [0u8; 14];
        mem.read_slice(&mut text, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&text, b"console=ttyS0\0");
    }

    #[test]
    fn garbage_is_not_a_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            load_kernel(&mem(16 << 20), &path),
            Err(BootError::Kernel { .. })
        ));
    }
}
