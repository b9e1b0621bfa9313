//! The virtio-blk device: configuration space, features, and request execution against the
//! [`DiskFile`]. Any request the guest gets wrong ends with an error status, never a panic.

use std::io::{Read, Write};

use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::{ByteValued, GuestMemoryMmap};

use super::backend::DiskFile;
use super::request::{
    DiscardSegment, RequestHeader, RequestKind, SECTOR_SIZE, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, byte_range,
};
use crate::devices::virtio::{DeviceCore, TYPE_BLOCK, VirtioDevice, read_config_bytes};

const QUEUE_SIZES: &[u16] = &[256];
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;
/// Limits advertised for discard and write-zeroes.
const MAX_DISCARD_SECTORS: u32 = 1 << 22; // 2 GiB
const MAX_DISCARD_SEGMENTS: u32 = 32;
/// Data moves through a bounce buffer of this size.
const CHUNK: usize = 128 * 1024;

pub struct Block {
    pub(super) core: DeviceCore,
    disk: DiskFile,
    config: Vec<u8>,
    bounce: Vec<u8>,
}

fn config_space(disk: &DiskFile) -> Vec<u8> {
    let mut c = vec![0u8; 60];
    let put32 =
        |c: &mut Vec<u8>, off: usize, v: u32| c[off..off + 4].copy_from_slice(&v.to_le_bytes());
    c[0..8].copy_from_slice(&(disk.size() / SECTOR_SIZE).to_le_bytes());
    put32(&mut c, 12, u32::from(QUEUE_SIZES[0]) - 2); // seg_max
    put32(&mut c, 20, SECTOR_SIZE as u32); // blk_size
    c[34..36].copy_from_slice(&1u16.to_le_bytes()); // num_queues
    put32(&mut c, 36, MAX_DISCARD_SECTORS);
    put32(&mut c, 40, MAX_DISCARD_SEGMENTS);
    put32(&mut c, 44, 1); // discard_sector_alignment
    put32(&mut c, 48, MAX_DISCARD_SECTORS); // max_write_zeroes_sectors
    put32(&mut c, 52, MAX_DISCARD_SEGMENTS);
    c[56] = 1; // write_zeroes_may_unmap
    c
}

impl Block {
    pub fn new(disk: DiskFile) -> std::io::Result<Self> {
        let mut features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
        if disk.read_only() {
            features |= VIRTIO_BLK_F_RO;
        } else {
            features |= VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
        }
        Ok(Block {
            core: DeviceCore::new(features, QUEUE_SIZES)?,
            config: config_space(&disk),
            disk,
            bounce: vec![0u8; CHUNK],
        })
    }

    pub fn disk(&self) -> &DiskFile {
        &self.disk
    }

    /// Executes every available request; returns how many were completed.
    pub fn process_queue(&mut self) -> usize {
        if !self.core.queue_usable(0) {
            return 0;
        }
        let mem = self.core.mem.clone().expect("usable queue has memory");
        let chains: Vec<_> = match self.core.queues[0].iter(&mem) {
            Ok(iter) => iter.collect(),
            Err(e) => {
                self.core.mark_broken(&format!("blk queue: {e}"));
                return 0;
            }
        };
        let mut done = 0;
        for chain in chains {
            let head = chain.head_index();
            let written = self.execute(&mem, chain);
            if let Err(e) = self.core.queues[0].add_used(&mem, head, written) {
                self.core.mark_broken(&format!("blk used ring: {e}"));
                break;
            }
            done += 1;
        }
        if done > 0 {
            self.core.interrupt.signal_used_queue();
        }
        done
    }

    /// Runs one request; returns the bytes written into device-writable buffers.
    fn execute(&mut self, mem: &GuestMemoryMmap, chain: DescriptorChain<&GuestMemoryMmap>) -> u32 {
        let (Ok(mut reader), Ok(mut writer)) = (
            Reader::new(mem, chain.clone()),
            Writer::<()>::new(mem, chain),
        ) else {
            // Buffers outside guest memory: there is nowhere safe to put a status.
            return 0;
        };
        let Some(data_len) = writer.available_bytes().checked_sub(1) else {
            return 0; // no status byte
        };
        let Ok(mut status_writer) = writer.split_at(data_len) else {
            return 0;
        };
        let (status, data_written) = match reader.read_obj::<RequestHeader>() {
            Ok(header) => self.run(header, &mut reader, &mut writer),
            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
        };
        if status_writer.write_obj(status).is_err() {
            return 0;
        }
        (data_written + 1) as u32
    }

    fn run(
        &mut self,
        header: RequestHeader,
        reader: &mut Reader<'_>,
        writer: &mut Writer<'_>,
    ) -> (u8, usize) {
        let kind = RequestKind::from_raw(header.kind);
        if kind.writes() && self.disk.read_only() {
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        let result = match kind {
            RequestKind::In => self.read(header.sector, writer),
            RequestKind::Out => self.write(header.sector, reader).map(|()| 0),
            RequestKind::Flush => self.disk.sync_data().map(|()| 0).map_err(|e| e.to_string()),
            RequestKind::GetId => {
                let n = writer.available_bytes().min(self.disk.id().len());
                writer
                    .write_all(&self.disk.id()[..n])
                    .map(|()| n)
                    .map_err(|e| e.to_string())
            }
            RequestKind::Discard | RequestKind::WriteZeroes => self
                .punch(reader, kind == RequestKind::WriteZeroes)
                .map(|()| 0),
            RequestKind::Unsupported(_) => return (VIRTIO_BLK_S_UNSUPP, 0),
        };
        match result {
            Ok(n) => (VIRTIO_BLK_S_OK, n),
            Err(why) => {
                tracing::debug!("blk: {kind:?} at sector {}: {why}", header.sector);
                (VIRTIO_BLK_S_IOERR, 0)
            }
        }
    }

    fn checked_range(&self, sector: u64, len: usize) -> Result<u64, String> {
        if !(len as u64).is_multiple_of(SECTOR_SIZE) {
            return Err(format!("length {len} is not a whole number of sectors"));
        }
        byte_range(sector, len as u64, self.disk.size())
            .map(|(start, _)| start)
            .ok_or_else(|| format!("{len} bytes at sector {sector} lie outside the disk"))
    }

    fn read(&mut self, sector: u64, writer: &mut Writer<'_>) -> Result<usize, String> {
        let len = writer.available_bytes();
        let mut offset = self.checked_range(sector, len)?;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.disk
                .read_at(&mut self.bounce[..n], offset)
                .map_err(|e| e.to_string())?;
            writer
                .write_all(&self.bounce[..n])
                .map_err(|e| e.to_string())?;
            offset += n as u64;
            done += n;
        }
        Ok(done)
    }

    fn write(&mut self, sector: u64, reader: &mut Reader<'_>) -> Result<(), String> {
        let len = reader.available_bytes();
        let mut offset = self.checked_range(sector, len)?;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            reader
                .read_exact(&mut self.bounce[..n])
                .map_err(|e| e.to_string())?;
            self.disk
                .write_at(&self.bounce[..n], offset)
                .map_err(|e| e.to_string())?;
            offset += n as u64;
            done += n;
        }
        Ok(())
    }

    fn punch(&mut self, reader: &mut Reader<'_>, zero: bool) -> Result<(), String> {
        let seg_size = std::mem::size_of::<DiscardSegment>();
        let count = reader.available_bytes() / seg_size;
        if count == 0 || count > MAX_DISCARD_SEGMENTS as usize {
            return Err(format!("{count} discard segments"));
        }
        let mut segments = Vec::with_capacity(count);
        for _ in 0..count {
            let mut seg = DiscardSegment::default();
            reader
                .read_exact(seg.as_mut_slice())
                .map_err(|e| e.to_string())?;
            if seg.num_sectors > MAX_DISCARD_SECTORS || seg.flags & !1 != 0 {
                return Err(format!("bad discard segment {seg:?}"));
            }
            let len = u64::from(seg.num_sectors) * SECTOR_SIZE;
            let start = self.checked_range(seg.sector, len as usize)?;
            segments.push((start, len));
        }
        for (start, len) in segments {
            self.disk
                .punch_hole(start, len, zero)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn core(&self) -> &DeviceCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut DeviceCore {
        &mut self.core
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
}
