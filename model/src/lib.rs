//! The model every layer shares: IoTDB's data types ([`DataType`]), the typed ids of
//! nodes, region groups and shards ([`NodeId`], [`RegionGroupId`], [`ShardId`]) and the
//! one table of IoTDB status codes ([`StatusCode`]).
//!
//! This crate depends on nothing of ours, so `runtime`, `storage`, `net`, `consensus` and
//! `node` can all use the same types, and no layer converts one copy of a type into
//! another by number or by name. Everything here is a plain value, valid on any core.

#![forbid(unsafe_code)]

pub mod data_type;
pub mod id;
pub mod status;

pub use data_type::DataType;
pub use id::{NodeId, RegionGroupId, ShardId};
pub use status::StatusCode;
