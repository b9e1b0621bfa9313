//! The protocol between the host engine and the guest agent, shared by both sides: the gRPC
//! services generated from `proto/agent.proto`, the vsock ports, the raw forward protocol of
//! published ports ([`forward`]), the per-boot key by which the agent proves itself to the
//! engine ([`auth`]), and the `.dockerignore` rules a build context is sent and unpacked by
//! ([`dockerignore`]).

/// The vsock port the agent's gRPC server listens on inside the guest.
pub const AGENT_PORT: u32 = 1024;

/// The host's vsock port the agent says hello on once it serves (reached at
/// `<hybrid socket>_1027` on the host). The engine dials the guest only after that: a hybrid
/// vsock connection from the host that arrives before the guest's driver is up can wedge
/// vhost-device-vsock.
pub const READY_PORT: u32 = 1027;
/// How a panic of the guest's init starts on the serial console (and in the kernel log), so
/// the host can name it when the guest dies at boot.
pub const INIT_PANIC_PREFIX: &str = "berth-init: panic:";

pub mod accept;
pub mod auth;
pub mod dockerignore;
pub mod forward;
pub mod procnet;
pub mod tarpath;

/// Generated messages and services of `berth.agent.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("berth.agent.v1");
}
