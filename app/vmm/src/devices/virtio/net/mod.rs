//! virtio-net (device 1): the guest's Ethernet NIC, its frames carried to and from `passt` over
//! a Unix stream socket in qemu's `-netdev stream` framing (a 4-byte big-endian length, then the
//! frame). One rx and one tx queue; the MAC and the link state in config space; mergeable rx
//! buffers, so frames as large as passt's 65520-byte MTU reach a Linux guest in page-sized
//! pieces. No checksum or segmentation offloads: frames cross as the guest and passt build them.

mod backend;
mod device;
mod event_handler;
#[cfg(test)]
mod tests;

pub use backend::{FrameStream, MAX_FRAME};
pub use device::{NET_HDR_LEN, Net};
