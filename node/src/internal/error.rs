//! The internal transport's one error type.

use std::net::SocketAddr;

use iotdb_consensus::io::{NodeId, TransportError};
use iotdb_net::internal_frame::InternalFrameError;
use thiserror::Error;

/// What can go wrong sending to, or serving, another node.
#[derive(Debug, Error)]
pub enum InternalError {
    /// The queue towards the peer (frames, bytes, or requests in flight) is full.
    #[error("the queue to {peer} is full ({what}); back off and retry")]
    Overloaded { peer: NodeId, what: &'static str },
    /// The peer cannot be reached (connect failed after retries, or it was found down a
    /// moment ago), or the connection broke before the response came: the request may or
    /// may not have been delivered, and it is never resent by the transport.
    #[error("{peer} is unreachable: {reason}")]
    Unreachable { peer: NodeId, reason: String },
    #[error("request to {peer} got no response within {timeout_ms} ms")]
    Timeout { peer: NodeId, timeout_ms: u64 },
    /// The peer refused us (cluster name, protocol), or answered a request with an error.
    #[error("{peer} refused: {message}")]
    Refused { peer: NodeId, message: String },
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    #[error("message of {bytes} bytes exceeds the internal frame limit of {max}")]
    PayloadTooLarge { bytes: usize, max: usize },
    #[error("cluster name of {bytes} bytes is longer than {max}")]
    ClusterNameTooLong { bytes: usize, max: usize },
    #[error("the internal port {address} ({key}) is already in use by another process")]
    PortInUse {
        key: &'static str,
        address: SocketAddr,
    },
    #[error("i/o error while {operation}: {source}")]
    Io {
        operation: &'static str,
        source: std::io::Error,
    },
    #[error("bad frame from the network: {0}")]
    Frame(#[from] InternalFrameError),
    #[error("bad {what} from the network: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("the endpoint is shut down")]
    Shutdown,
}

impl InternalError {
    pub(crate) fn io(operation: &'static str, source: std::io::Error) -> InternalError {
        InternalError::Io { operation, source }
    }
}

impl InternalError {
    /// The narrow `Transport` error a state machine sees for a failed send to `to`:
    /// anything but a full queue, an unknown node or a too-large message means the peer
    /// cannot be reached now.
    pub fn into_transport_error(self, to: NodeId) -> TransportError {
        match self {
            InternalError::Overloaded { peer, .. } => TransportError::Overloaded(peer),
            InternalError::UnknownPeer(peer) => TransportError::UnknownNode(peer),
            InternalError::PayloadTooLarge { bytes, max } => {
                TransportError::PayloadTooLarge { bytes, max }
            }
            _ => TransportError::Unreachable(to),
        }
    }
}
