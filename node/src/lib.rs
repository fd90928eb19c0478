//! iotdb-server: the ConfigNode and DataNode roles, routing and query
//! execution.
//!
//! Modules so far:
//! - [`sql`]: the IoTDB SQL (tree model) parser producing a typed AST that
//!   the query layer maps onto the engine.
//! - [`confignode`]: the ConfigNode role's persistent state machine (nodes,
//!   databases, region groups, partitions, route snapshots, admin views).
//! - [`schema`]: one SchemaRegion's persistent timeseries schema.

pub mod confignode;
pub mod schema;
pub mod sql;
