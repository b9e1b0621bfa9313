//! The virtio-fs device: its config space (the mount tag), feature negotiation with the
//! backend, and the vhost-user setup of its queues at DRIVER_OK.

use std::os::fd::AsRawFd;
use std::path::Path;

use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::devices::virtio::{
    ActivateError, DeviceCore, TYPE_FS, VIRTIO_F_VERSION_1, VirtioDevice, read_config_bytes,
};

/// The high-priority queue and one request queue.
const QUEUE_SIZES: &[u16] = &[1024, 1024];
/// The tag field of the config space (virtio 1.2, 5.11.4).
const TAG_LEN: usize = 36;
/// vhost-user's own feature bit: the protocol features are negotiated.
const F_PROTOCOL_FEATURES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("the tag {0:?} must be 1 to 36 bytes")]
    Tag(String),
    #[error("connecting to the vhost-user backend at {path}: {source}")]
    Connect { path: String, source: vhost::Error },
    #[error("vhost-user backend: {0}")]
    Backend(#[from] vhost::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct Fs {
    pub(super) core: DeviceCore,
    config: Vec<u8>,
    backend: Frontend,
    /// The backend's virtio features.
    backend_features: u64,
    /// Written by the backend when it used buffers of queue i.
    pub(super) calls: Vec<EventFd>,
}

impl Fs {
    /// A device with mount tag `tag` whose backend listens on `socket`.
    pub fn new(tag: &str, socket: &Path) -> Result<Self, FsError> {
        if tag.is_empty() || tag.len() > TAG_LEN {
            return Err(FsError::Tag(tag.to_owned()));
        }
        let mut backend =
            Frontend::connect(socket, QUEUE_SIZES.len() as u64).map_err(|source| {
                FsError::Connect {
                    path: socket.display().to_string(),
                    source,
                }
            })?;
        backend.set_owner()?;
        let backend_features = backend.get_features()?;
        if backend_features & F_PROTOCOL_FEATURES != 0 {
            // None of the optional protocol features is needed; the negotiation must happen.
            backend.get_protocol_features()?;
            backend.set_protocol_features(VhostUserProtocolFeatures::empty())?;
        }
        let mut config = vec![0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&1u32.to_le_bytes());
        let calls = QUEUE_SIZES
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<_>>()?;
        Ok(Fs {
            // The ring features are the backend's to implement; VERSION_1 is all we offer.
            core: DeviceCore::new(backend_features & VIRTIO_F_VERSION_1, QUEUE_SIZES)?,
            config,
            backend,
            backend_features,
            calls,
        })
    }

    /// Hands guest memory and the queues to the backend.
    fn start_backend(&mut self, mem: &GuestMemoryMmap, queues: &[Queue]) -> Result<(), FsError> {
        let protocol = self.backend_features & F_PROTOCOL_FEATURES;
        self.backend
            .set_features(self.core.acked_features | protocol)?;
        let host = |addr: u64| -> Result<u64, FsError> {
            mem.get_host_address(GuestAddress(addr))
                .map(|p| p as u64)
                .map_err(|e| FsError::Io(std::io::Error::other(e.to_string())))
        };
        let mut regions = Vec::new();
        for region in mem.iter() {
            let file = region.file_offset().ok_or_else(|| {
                std::io::Error::other("guest memory is not file-backed: virtio-fs needs a memfd")
            })?;
            regions.push(VhostUserMemoryRegionInfo {
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host(region.start_addr().0)?,
                mmap_offset: file.start(),
                mmap_handle: file.file().as_raw_fd(),
            });
        }
        self.backend.set_mem_table(&regions)?;
        for (i, q) in queues.iter().enumerate() {
            self.backend.set_vring_num(i, q.size())?;
            let ring = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: host(q.desc_table())?,
                used_ring_addr: host(q.used_ring())?,
                avail_ring_addr: host(q.avail_ring())?,
                log_addr: None,
            };
            self.backend.set_vring_addr(i, &ring)?;
            self.backend.set_vring_base(i, q.next_avail())?;
            self.backend.set_vring_call(i, &self.calls[i])?;
            self.backend.set_vring_kick(i, &self.core.queue_events[i])?;
            if protocol != 0 {
                self.backend.set_vring_enable(i, true)?;
            }
        }
        Ok(())
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        TYPE_FS
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

    fn activate(&mut self, mem: GuestMemoryMmap, queues: Vec<Queue>) -> Result<(), ActivateError> {
        self.start_backend(&mem, &queues)
            .map_err(|e| ActivateError::Backend(e.to_string()))?;
        self.core.activate(mem, queues)
    }

    fn reset(&mut self) {
        if self.core.is_activated() {
            // GET_VRING_BASE stops each ring in the backend.
            for i in 0..QUEUE_SIZES.len() {
                if let Err(e) = self.backend.get_vring_base(i) {
                    tracing::warn!("virtio-fs: stopping queue {i}: {e}");
                }
            }
        }
        for call in &self.calls {
            let _ = call.read();
        }
        self.core.reset();
    }
}
