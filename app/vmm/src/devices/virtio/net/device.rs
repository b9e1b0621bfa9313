//! The virtio-net device: MAC and link status in config space, the rx and tx queues, and the
//! moves between the queues and the [`FrameStream`]. A malformed chain from the driver is used
//! and dropped, never fatal; a stream error takes the link down.

use std::io::{Read, Write};

use virtio_queue::{QueueOwnedT, QueueT, Reader, Writer};
use vmm_sys_util::epoll::EventSet;

use super::backend::{FrameStream, MAX_FRAME};
use crate::devices::virtio::{DeviceCore, TYPE_NET, VirtioDevice, read_config_bytes};

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
const QUEUE_SIZES: &[u16] = &[256, 256];

/// Feature bits (virtio 1.2, 5.1.3).
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// `status` in config space: the link is up.
const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// `struct virtio_net_hdr` with `num_buffers`, as every virtio 1.x driver uses it.
pub const NET_HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: usize = 10;

pub struct Net {
    pub(super) core: DeviceCore,
    mac: [u8; 6],
    pub(super) stream: FrameStream,
    /// What passt's socket is registered for in the device loop.
    pub(super) watching: EventSet,
}

impl Net {
    /// A NIC with address `mac` whose frames travel over `stream`.
    pub fn new(mac: [u8; 6], stream: FrameStream) -> std::io::Result<Self> {
        Ok(Net {
            core: DeviceCore::new(
                VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_STATUS,
                QUEUE_SIZES,
            )?,
            mac,
            stream,
            watching: EventSet::empty(),
        })
    }

    fn mergeable(&self) -> bool {
        self.core.acked_features & VIRTIO_NET_F_MRG_RXBUF != 0
    }

    /// The stream failed: say so once, drop it, and tell the driver the link is down.
    pub(super) fn stream_failed(&mut self, e: &dyn std::fmt::Display) {
        if self.stream.is_connected() {
            self.stream.close();
        }
        tracing::warn!("net: the link to passt is down: {e}");
        if self.core.is_activated() {
            self.core.interrupt.signal_config_change();
        }
    }

    /// Moves the guest's frames from tx to the stream while it has room; returns how many
    /// chains were used. Frames sent while the link is down are dropped.
    pub fn process_tx(&mut self) -> usize {
        if !self.core.queue_usable(TX_QUEUE) {
            return 0;
        }
        let mem = self.core.mem.clone().expect("usable queue has memory");
        let mut done = 0;
        let mut frame = Vec::with_capacity(NET_HDR_LEN + MAX_FRAME);
        while self.stream.can_queue() {
            let queue = &mut self.core.queues[TX_QUEUE];
            let chain = match queue.iter(&mem) {
                Ok(mut iter) => iter.next(),
                Err(e) => {
                    self.core.mark_broken(&format!("net tx queue: {e}"));
                    break;
                }
            };
            let Some(chain) = chain else {
                break;
            };
            let head = chain.head_index();
            match Reader::new(&mem, chain) {
                Ok(mut reader) => {
                    let total = reader.available_bytes();
                    if total <= NET_HDR_LEN || total > NET_HDR_LEN + MAX_FRAME {
                        tracing::debug!("net: dropping a {total}-byte tx chain");
                    } else {
                        frame.resize(total, 0);
                        if reader.read_exact(&mut frame).is_ok() {
                            self.stream.queue_frame(&frame[NET_HDR_LEN..]);
                        }
                    }
                }
                Err(e) => tracing::debug!("net: tx chain outside guest memory: {e}"),
            }
            if let Err(e) = self.core.queues[TX_QUEUE].add_used(&mem, head, 0) {
                self.core.mark_broken(&format!("net tx used ring: {e}"));
                break;
            }
            done += 1;
        }
        if done > 0 {
            self.core.interrupt.signal_used_queue();
        }
        if self.stream.wants_write()
            && let Err(e) = self.stream.flush()
        {
            self.stream_failed(&e);
        }
        done
    }

    /// Hands complete frames from the stream to rx buffers while the driver has buffers for
    /// them; returns how many frames were delivered.
    pub fn process_rx(&mut self) -> usize {
        if !self.core.queue_usable(RX_QUEUE) {
            return 0;
        }
        let mem = self.core.mem.clone().expect("usable queue has memory");
        let mergeable = self.mergeable();
        let mut delivered = 0;
        let mut used_any = false;
        loop {
            let frame = match self.stream.peek_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.stream_failed(&e);
                    break;
                }
            };
            let need = NET_HDR_LEN + frame.len();
            let queue = &mut self.core.queues[RX_QUEUE];
            // Take chains until they hold the frame (one chain unless buffers merge).
            let mut chains = Vec::new();
            let mut room = 0;
            while room < need && (mergeable || chains.is_empty()) {
                let Some(chain) = queue.pop_descriptor_chain(&mem) else {
                    break;
                };
                let head = chain.head_index();
                match Writer::<()>::new(&mem, chain) {
                    Ok(w) => {
                        room += w.available_bytes();
                        chains.push((head, w));
                    }
                    // Buffers outside guest memory: used with nothing written.
                    Err(_) => {
                        if let Err(e) = queue.add_used(&mem, head, 0) {
                            self.core.mark_broken(&format!("net rx used ring: {e}"));
                            return delivered;
                        }
                        used_any = true;
                    }
                }
            }
            if room < need {
                if !mergeable && !chains.is_empty() {
                    // A single buffer too small for this frame: drop the frame, keep the buffer.
                    tracing::debug!("net: dropping a {}-byte frame too big for rx", frame.len());
                    queue.go_to_previous_position();
                    self.stream.consume_frame();
                    continue;
                }
                // Wait for the driver to post more buffers.
                for _ in 0..chains.len() {
                    queue.go_to_previous_position();
                }
                break;
            }
            let mut header = [0u8; NET_HDR_LEN];
            header[NUM_BUFFERS_OFFSET..].copy_from_slice(&(chains.len() as u16).to_le_bytes());
            let mut parts = [&header[..], frame];
            let mut used = Vec::with_capacity(chains.len());
            for (head, mut w) in chains {
                let mut written = 0usize;
                for part in parts.iter_mut() {
                    let n = part.len().min(w.available_bytes());
                    if n == 0 {
                        continue;
                    }
                    if w.write_all(&part[..n]).is_err() {
                        break;
                    }
                    written += n;
                    *part = &part[n..];
                }
                used.push((head, written as u32));
            }
            for (head, len) in used {
                if let Err(e) = self.core.queues[RX_QUEUE].add_used(&mem, head, len) {
                    self.core.mark_broken(&format!("net rx used ring: {e}"));
                    return delivered;
                }
            }
            used_any = true;
            self.stream.consume_frame();
            delivered += 1;
        }
        if used_any {
            self.core.interrupt.signal_used_queue();
        }
        delivered
    }

    /// The socket is readable: take what it has and deliver what can be delivered.
    pub fn process_stream_in(&mut self) {
        if let Err(e) = self.stream.fill() {
            self.stream_failed(&e);
        }
        self.process_rx();
    }

    /// The socket is writable: flush, then take more frames from the guest.
    pub fn process_stream_out(&mut self) {
        if let Err(e) = self.stream.flush() {
            self.stream_failed(&e);
        }
        self.process_tx();
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }
    fn core(&self) -> &DeviceCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut DeviceCore {
        &mut self.core
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config: mac[6], status (le16).
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        let status = if self.stream.is_connected() {
            VIRTIO_NET_S_LINK_UP
        } else {
            0
        };
        config[6..].copy_from_slice(&status.to_le_bytes());
        read_config_bytes(&config, offset, data);
    }
}
