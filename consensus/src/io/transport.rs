//! Sending bytes to another node.

use bytes::Bytes;
use thiserror::Error;

use super::NodeId;

/// Best-effort, unordered delivery of whole messages to a node.
///
/// A successful `send` only means the message was handed to the network: it may still be
/// lost, delayed, duplicated or reordered (the simulator does all four), so protocols on
/// top correlate responses by id and time out (`rpc`). Receiving is the driver's job: it
/// calls `Node::on_message` for each arrival.
pub trait Transport {
    /// Hands `payload` to the network for `to`.
    fn send(&mut self, to: NodeId, payload: Bytes) -> Result<(), TransportError>;
}

/// Why a message was not even handed to the network.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    #[error("message of {bytes} bytes exceeds the transport limit of {max}")]
    PayloadTooLarge { bytes: usize, max: usize },
    /// The queue towards the peer is full; the caller backs off and retries later.
    #[error("send queue to {0} is full")]
    Overloaded(NodeId),
    /// The node is known to be down (the real transport's connection attempts to it
    /// failed a moment ago); the message was dropped at once rather than queued.
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
}
