//! Images: names ([`reference`]), the store on the data disk ([`store`]), pulling
//! ([`pull`]), safe layer unpacking ([`unpack`]) and Docker's views of an image ([`docker`]).

pub mod docker;
pub mod login;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;
