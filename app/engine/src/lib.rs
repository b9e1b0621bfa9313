//! Berth's host engine, a library: where Berth keeps its files ([`paths`], [`settings`]), what
//! the host can run ([`host`]), the VM backends and their supervisor ([`vm`]), the client of the
//! guest agent ([`agent`]), the engine's API socket ([`api`]) and the health report ([`doctor`]).
//! The desktop app and the `berth` CLI both embed it.

pub mod agent;
pub mod api;
pub mod doctor;
pub mod host;
pub mod limits;
pub mod paths;
pub mod ports;
pub mod ports_udp;
pub mod proxy;
pub mod published;
pub mod settings;
pub mod shares;
pub mod vm;

/// The engine's version, reported by the API and `berth doctor`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
