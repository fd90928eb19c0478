//! The cluster roles as processes: `iotdb-server confignode` and `iotdb-server datanode`,
//! their registration, identities, heartbeats and the control messages between them.
//!
//! ```text
//!   iotdb-server confignode ◄──register / ConfigRequest + mirror delta── iotdb-server datanode
//!     (confignode_service)   ──heartbeat{delta} every heartbeat_interval──►   (link on shard 0,
//!                                                                              config_access)
//! ```
//!
//! A DataNode keeps a mirror of the ConfigNode state (`datanode::config_access`), kept
//! current by the deltas every answer and heartbeat carry, so routing needs no round trip.

pub mod confignode_service;
pub mod identity;
pub mod link;
pub mod protocol;
pub mod registration;
pub mod replicated;
