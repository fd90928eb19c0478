//! Client RPC front ends other than the native protocol (which `datanode::handler` serves).
//!
//! [`thrift`] serves Apache IoTDB's own client RPC (`IClientRPCService`) on the same port as
//! the native protocol; `datanode::handler` looks at a connection's first bytes and hands
//! Thrift connections here.

pub mod thrift;
