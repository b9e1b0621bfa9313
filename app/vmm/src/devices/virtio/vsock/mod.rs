//! virtio-vsock (device 19) in userspace, speaking Firecracker's hybrid Unix-socket protocol:
//! the host connects to `<uds>` and writes `CONNECT <port>\n`, gets `OK <host port>\n`, then
//! the stream is a guest connection; a guest connection to host port P is made to `<uds>_P`.
//! Streams use virtio-vsock credit flow control; connections to absent ports get RST.

mod backend;
mod connection;
mod device;
mod event_handler;
pub mod packet;
#[cfg(test)]
mod tests;

pub use backend::Muxer;
pub use device::Vsock;
