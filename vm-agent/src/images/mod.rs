//! Images: names ([`reference`]), the store on the data disk ([`store`]), pulling
//! ([`pull`]) and pushing ([`push`]), what a registry holds ([`distribution`]), save, load and
//! import ([`archive`]), safe layer
//! unpacking ([`unpack`]) and Docker's views of an image ([`docker`]).

pub mod archive;
pub mod distribution;
pub mod docker;
pub mod login;
pub mod pull;
pub mod push;
pub mod reference;
pub mod store;
pub mod unpack;
