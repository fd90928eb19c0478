//! iotdb-server: the ConfigNode and DataNode roles, routing and query
//! execution.
//!
//! Modules so far:
//! - [`sql`]: the IoTDB SQL (tree model) parser producing a typed AST that
//!   the query layer maps onto the engine.

pub mod sql;
