//! virtio-rng (device 4): one queue the driver fills with writable buffers, which the device
//! fills with bytes from the host's entropy source.

mod backend;
mod device;
mod event_handler;
#[cfg(test)]
mod tests;

pub use backend::{EntropySource, OsEntropy};
pub use device::Rng;
