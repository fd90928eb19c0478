//! `iotdb-node`: the `iotdb-server` process. The ConfigNode role ([`confignode`]: nodes,
//! databases, region groups, partitions, placement, route snapshots, admin views), schema
//! regions ([`schema`]), the SQL front end ([`sql`]), and the DataNode role ([`datanode`])
//! that assembles runtime, network and storage, one shard per core; [`rpc`] serves IoTDB's
//! own client RPC (Thrift) beside the native protocol.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod confignode;
pub mod datanode;
pub mod format;
pub mod internal;
pub mod metrics;
pub mod rpc;
pub mod schema;
pub mod server;
pub mod sql;
