//! virtio-blk (device 2): a raw sparse file as the guest's disk. Reads, writes, flush
//! (fdatasync), discard and write-zeroes (punched holes, so the file shrinks), GET_ID; requests
//! outside the disk get an I/O-error status. The file is held under an exclusive lock.

mod backend;
mod device;
mod event_handler;
pub mod request;
#[cfg(test)]
mod tests;

pub use backend::{BlockError, DiskFile};
pub use device::Block;
