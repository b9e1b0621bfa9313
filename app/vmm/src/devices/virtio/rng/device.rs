//! The virtio-rng device state and its queue processing.

use std::io::Write;

use virtio_queue::{QueueOwnedT, QueueT, Writer};

use super::backend::{EntropySource, OsEntropy};
use crate::devices::virtio::{DeviceCore, TYPE_RNG, VirtioDevice};

const QUEUE_SIZES: &[u16] = &[256];
/// At most this many bytes per buffer, so one huge buffer cannot stall the loop.
const MAX_FILL: usize = 64 * 1024;

pub struct Rng {
    pub(super) core: DeviceCore,
    source: Box<dyn EntropySource>,
}

impl Rng {
    pub fn new() -> std::io::Result<Self> {
        Self::with_source(Box::new(OsEntropy))
    }

    pub fn with_source(source: Box<dyn EntropySource>) -> std::io::Result<Self> {
        Ok(Rng {
            core: DeviceCore::new(0, QUEUE_SIZES)?,
            source,
        })
    }

    /// Fills every available buffer; returns how many chains were used.
    pub fn process_queue(&mut self) -> usize {
        if !self.core.queue_usable(0) {
            return 0;
        }
        let mem = self.core.mem.clone().expect("usable queue has memory");
        let queue = &mut self.core.queues[0];
        let chains: Vec<_> = match queue.iter(&mem) {
            Ok(iter) => iter.collect(),
            Err(e) => {
                self.core.mark_broken(&format!("rng queue: {e}"));
                return 0;
            }
        };
        let mut used = 0;
        let mut buf = vec![0u8; MAX_FILL];
        for chain in chains {
            let head = chain.head_index();
            let written = match Writer::new(&mem, chain) {
                Ok(mut w) => {
                    let n = w.available_bytes().min(MAX_FILL);
                    match self.source.fill(&mut buf[..n]) {
                        Ok(()) => w.write_all(&buf[..n]).map(|_| n).unwrap_or(0),
                        Err(e) => {
                            tracing::warn!("rng: entropy source: {e}");
                            0
                        }
                    }
                }
                // A chain with buffers outside guest memory: used with nothing written.
                Err(_) => 0,
            };
            if let Err(e) = self.core.queues[0].add_used(&mem, head, written as u32) {
                self.core.mark_broken(&format!("rng used ring: {e}"));
                break;
            }
            used += 1;
        }
        if used > 0 {
            self.core.interrupt.signal_used_queue();
        }
        used
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }
    fn core(&self) -> &DeviceCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut DeviceCore {
        &mut self.core
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
}
