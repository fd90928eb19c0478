//! The internal (node-to-node) protocol: registration, heartbeats, route updates, write
//! forwarding, replication batches and snapshot chunks travel on it as opaque bodies.
//!
//! ```text
//!   state machine ──Transport::send / request──▶ InternalEndpoint (one per core)
//!        ▲                                        │ one Peer per node: bounded Outbox,
//!        │ InternalHandler::{on_message,          │ driver (connect, retry, hello),
//!        │   handle_request}                      │ pipelined writer + response reader
//!        └──────── accept loop ◀── other nodes' ──┘
//! ```
//!
//! Frames are `net`'s 24-byte header with magic `ITDN` (`iotdb_net::internal_frame`), so a
//! client frame on an internal port, garbage, or an internal frame on the client port is
//! refused with a clear error and a closed connection. The first frame each way is a
//! hello; a `cluster_name` mismatch is refused with a message naming both names. Ports are
//! IoTDB's (`cn_internal_port` 10710, `cn_consensus_port` 10720, `dn_internal_port` 10730,
//! `dn_data_region_consensus_port` 10760), bound exclusively as the client port is.
//! Everything is bounded by [`InternalLimits`]. The protocol is in `docs/protocol.md`.

mod endpoint;
mod error;
mod hello;
mod limits;
mod outbox;
mod peer;
mod server;
mod wire;

use std::net::SocketAddr;

pub use endpoint::{EndpointConfig, InternalEndpoint, InternalHandler};
pub use error::InternalError;
pub use limits::{CLUSTER_NAME_BYTES_MAX, InternalLimits};

/// The peer id under which a node dials an address whose node id it does not know yet
/// (its seed ConfigNode, at registration): such a peer may answer as any node.
pub const SEED_PEER: iotdb_consensus::io::NodeId = iotdb_consensus::io::NodeId(u32::MAX - 1);

/// Binds an internal port exclusively (no `SO_REUSEPORT`, see
/// `iotdb_runtime::net::shard_listeners`): a second process on the same port fails with
/// `PortInUse` naming the configuration `key` (`dn_internal_port`, ...).
pub fn bind_internal_port(
    address: SocketAddr,
    key: &'static str,
) -> Result<std::net::TcpListener, InternalError> {
    match iotdb_runtime::net::shard_listeners(address, 1) {
        Ok(mut listeners) => Ok(listeners.remove(0)),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            Err(InternalError::PortInUse { key, address })
        }
        Err(error) => Err(InternalError::io("binding an internal port", error)),
    }
}
