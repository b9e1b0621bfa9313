//! virtio-fs through a vhost-user backend (`virtiofsd`): the device hands its queues and the
//! guest's memory (one shared memfd, see [`crate::memory`]) to the backend process, which
//! serves FUSE requests on them directly; the VMM only forwards the backend's "used buffer"
//! signals as the device's interrupt.

mod device;
mod event_handler;
#[cfg(test)]
mod tests;

pub use device::{Fs, FsError};
