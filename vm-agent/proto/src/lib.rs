//! The gRPC protocol between the host engine and the guest agent: generated from
//! `proto/agent.proto`, shared by both sides. Owns nothing else.

/// The vsock port the agent's gRPC server listens on inside the guest.
pub const AGENT_PORT: u32 = 1024;

/// Generated messages and services of `berth.agent.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("berth.agent.v1");
}
