//! The virtio-vsock device: the guest CID in config space, the rx/tx/event queues, and the
//! moves between the queues and the [`Muxer`]. A malformed packet is dropped, never fatal.

use std::io::{Read, Write};
use std::path::Path;

use virtio_queue::{QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::ByteValued;

use super::backend::Muxer;
use super::packet::{self, HEADER_SIZE, MAX_PAYLOAD};
use crate::devices::virtio::{DeviceCore, TYPE_VSOCK, VirtioDevice, read_config_bytes};

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
const QUEUE_SIZES: &[u16] = &[256, 256, 256];

pub struct Vsock {
    pub(super) core: DeviceCore,
    cid: u64,
    pub(super) muxer: Muxer,
}

impl Vsock {
    /// A device for guest `cid` whose host side listens on `uds_path`.
    pub fn new(cid: u64, uds_path: &Path) -> std::io::Result<Self> {
        Ok(Vsock {
            core: DeviceCore::new(0, QUEUE_SIZES)?,
            cid,
            muxer: Muxer::new(cid, uds_path)?,
        })
    }

    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// Moves every packet the guest queued on tx to the muxer; returns how many.
    pub fn process_tx(&mut self) -> usize {
        if !self.core.queue_usable(TX_QUEUE) {
            return 0;
        }
        let mem = self.core.mem.clone().expect("usable queue has memory");
        let chains: Vec<_> = match self.core.queues[TX_QUEUE].iter(&mem) {
            Ok(iter) => iter.collect(),
            Err(e) => {
                self.core.mark_broken(&format!("vsock tx queue: {e}"));
                return 0;
            }
        };
        let mut done = 0;
        for chain in chains {
            let head = chain.head_index();
            match Reader::new(&mem, chain) {
                Ok(mut reader) => {
                    let total = reader.available_bytes();
                    if total > HEADER_SIZE + MAX_PAYLOAD {
                        tracing::debug!("vsock: dropping a {total}-byte tx packet");
                    } else {
                        let mut bytes = vec![0u8; total];
                        if reader.read_exact(&mut bytes).is_ok() {
                            match packet::parse(&bytes) {
                                Ok(h) => {
                                    let len = h.len as usize;
                                    self.muxer
                                        .send_to_host(h, &bytes[HEADER_SIZE..HEADER_SIZE + len]);
                                }
                                Err(e) => tracing::debug!("vsock: dropping a tx packet: {e}"),
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("vsock: tx chain outside guest memory: {e}"),
            }
            if let Err(e) = self.core.queues[TX_QUEUE].add_used(&mem, head, 0) {
                self.core.mark_broken(&format!("vsock tx used ring: {e}"));
                break;
            }
            done += 1;
        }
        if done > 0 {
            self.core.interrupt.signal_used_queue();
        }
        done
    }

    /// Fills rx buffers with packets from the muxer; returns how many were delivered.
    pub fn process_rx(&mut self) -> usize {
        if !self.core.queue_usable(RX_QUEUE) {
            return 0;
        }
        let mem = self.core.mem.clone().expect("usable queue has memory");
        let mut done = 0;
        while self.muxer.has_rx() {
            let queue = &mut self.core.queues[RX_QUEUE];
            let Some(chain) = queue.pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            let mut written = 0u32;
            if let Ok(mut writer) = Writer::<()>::new(&mem, chain) {
                let room = writer.available_bytes();
                if room >= HEADER_SIZE {
                    match self.muxer.next_rx_packet(room - HEADER_SIZE) {
                        Some((h, payload)) => {
                            if writer.write_all(h.as_slice()).is_ok()
                                && writer.write_all(&payload).is_ok()
                            {
                                written = (HEADER_SIZE + payload.len()) as u32;
                            }
                        }
                        None => {
                            queue.go_to_previous_position();
                            break;
                        }
                    }
                }
            }
            if let Err(e) = self.core.queues[RX_QUEUE].add_used(&mem, head, written) {
                self.core.mark_broken(&format!("vsock rx used ring: {e}"));
                break;
            }
            done += 1;
        }
        if done > 0 {
            self.core.interrupt.signal_used_queue();
        }
        done
    }

    /// Host sockets are ready: handle them, then deliver what they produced.
    pub fn process_backend(&mut self) {
        self.muxer.process_events();
        self.process_rx();
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn core(&self) -> &DeviceCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut DeviceCore {
        &mut self.core
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }
    fn reset(&mut self) {
        self.muxer.reset();
        self.core.reset();
    }
}
