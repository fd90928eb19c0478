//! The runtime's typed errors.

use std::fmt;
use std::io;

use crate::shard::ShardId;

/// Everything that can go wrong when starting, running or joining shards, or when waiting
/// for a reply over the mesh.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The requested number of shards is zero or above [`crate::limits::SHARD_COUNT_MAX`].
    #[error("shard count {requested} is outside 1..={max}")]
    ShardCount { requested: usize, max: usize },

    /// The requested mesh queue capacity is zero or above
    /// [`crate::limits::MESH_QUEUE_CAPACITY_MAX`].
    #[error("mesh queue capacity {requested} is outside 1..={max}")]
    QueueCapacity { requested: usize, max: usize },

    /// The mesh rings would reserve more than [`crate::limits::MESH_BYTES_MAX`].
    #[error(
        "mesh of {shards} shards with {capacity} slots per queue needs {bytes} bytes, more than {max}"
    )]
    MeshTooLarge {
        shards: usize,
        capacity: usize,
        bytes: usize,
        max: usize,
    },

    /// A thread name is empty, too long for Linux, or contains a NUL byte.
    #[error("thread name {name:?} is not 1..={max} bytes without NUL")]
    ThreadName { name: String, max: usize },

    /// Setting the name of the calling thread failed.
    #[error("setting the thread name to {name:?}: {source}")]
    SetThreadName { name: String, source: io::Error },

    /// The operating system refused to start a shard's thread.
    #[error("spawning the thread of shard {shard}: {source}")]
    Spawn { shard: ShardId, source: io::Error },

    /// The monoio runtime of a shard could not be built (io_uring and epoll both failed).
    #[error("building the runtime of shard {shard}: {source}")]
    RuntimeBuild { shard: ShardId, source: io::Error },

    /// A shard's future panicked; the payload's message is kept when it was a string.
    #[error("shard {shard} panicked: {message}")]
    ShardPanicked { shard: ShardId, message: String },

    /// The shard that was asked a request dropped the reply handle without answering.
    #[error("shard {shard} dropped the reply to a request without answering")]
    ReplyDropped { shard: ShardId },
}

/// A message that [`crate::mesh::MeshEndpoint::try_send`] could not enqueue because the
/// queue to its destination is full; the message is handed back unchanged.
pub struct Full<M>(pub M);

impl<M> Full<M> {
    /// Takes the message back.
    pub fn into_inner(self) -> M {
        self.0
    }
}

impl<M> fmt::Debug for Full<M> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message itself need not be Debug; what matters is that the queue was full.
        formatter.write_str("Full(..)")
    }
}

impl<M> fmt::Display for Full<M> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("mesh queue is full")
    }
}

impl<M> std::error::Error for Full<M> {}
