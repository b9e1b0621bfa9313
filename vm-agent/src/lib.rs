//! berth-agent's modules, as a library so fuzz targets and benchmarks reach the parsers the
//! binary (`main.rs`) runs in the guest: init, the gRPC services, containers and images.

pub mod build;
pub mod clock;
pub mod containers;
pub mod copy;
pub mod disk;
pub mod events;
pub mod images;
pub mod init;
pub mod modules;
pub mod net;
pub mod service;
pub mod space;
pub mod volumes;
