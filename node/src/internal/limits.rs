//! Every bound of the internal transport, with its why. One [`InternalLimits`] per
//! endpoint; tests shrink them to reach the edges quickly.

use std::time::Duration;

use iotdb_consensus::limits::{RPC_IN_FLIGHT_MAX, TRANSPORT_PAYLOAD_BYTES_MAX};

/// Bounds of one internal endpoint (its listener, and its connections to peers).
#[derive(Clone, Debug)]
pub struct InternalLimits {
    /// Largest frame body after the hello.
    ///
    /// Why: the consensus crate's `TRANSPORT_PAYLOAD_BYTES_MAX` (16 MiB), so a message the
    /// simulator accepted is never refused here; replication batches and snapshot chunks are
    /// cut below it. It is also below `net`'s client limit (64 MiB): a forwarded write is
    /// split by region before it travels.
    pub frame_body_bytes_max: u32,
    /// Largest body of the first frame (the hello), before the peer is authenticated.
    ///
    /// Why 4 KiB: a hello is a node id and a cluster name; an unauthenticated socket must
    /// not make us allocate more than that.
    pub hello_body_bytes_max: u32,
    /// Frames queued towards one peer and not yet written.
    ///
    /// Why 4096: IoTDB's LogDispatcher queue per peer holds 4096 entries; a fuller queue
    /// means the peer or the link is slower than we produce, and the caller gets
    /// `Overloaded` to back off (replication re-reads from its WAL, as IoTDB does).
    pub peer_queue_frames_max: usize,
    /// Bytes queued towards one peer and not yet written.
    ///
    /// Why 64 MiB: four of the largest frames; bounds memory per peer whatever the mix.
    pub peer_queue_bytes_max: usize,
    /// Requests to one peer awaiting their response.
    ///
    /// Why: the same 1024 as `rpc::Rpc` (`RPC_IN_FLIGHT_MAX`): more means the peer stopped
    /// answering; `Overloaded` instead of a table that grows without end.
    pub peer_in_flight_max: usize,
    /// Requests one inbound connection has being handled at once; past it the connection
    /// stops reading, so TCP pushes back and the sender's queue fills.
    ///
    /// Why 256: enough to keep every shard of a large node busy from one peer, small enough
    /// that a flood from one peer cannot take all memory.
    pub inbound_in_flight_max: usize,
    /// Inbound connections one endpoint serves at once; more are closed at accept.
    ///
    /// Why 1024: a cluster has at most a few hundred nodes, each with one connection per
    /// core pair at most; beyond that it is a leak or an attack.
    pub inbound_connections_max: usize,
    /// Time for one TCP connect.
    ///
    /// Why 1 s: peers are on one LAN; a connect that takes longer is to a dead host.
    pub connect_timeout: Duration,
    /// Connect attempts (with backoff) before the peer is declared unreachable.
    ///
    /// Why 3: rides out a peer's restart window of a few hundred ms without hiding a dead
    /// peer from the caller for long.
    pub connect_attempts_max: u32,
    /// Pause after the first failed attempt; doubled after each, up to `connect_backoff_max`.
    pub connect_backoff_initial: Duration,
    /// Why 1 s: beyond that the caller's own timeout is the better judge.
    pub connect_backoff_max: Duration,
    /// After a peer was found unreachable, sends to it fail at once with `Unreachable` for
    /// this long; the next send after it tries to connect again.
    ///
    /// Why 500 ms: half a heartbeat interval, so a restarted peer is reached by the next
    /// heartbeat, while a dead peer does not cost a connect per message.
    pub unreachable_hold: Duration,
    /// Time from connect (or accept) to a completed hello.
    ///
    /// Why 5 s: a hello is one small frame each way; a peer that takes longer is stuck.
    pub hello_timeout: Duration,
    /// Bytes gathered from the queue into one socket write (pipelining); a larger frame is
    /// written alone.
    ///
    /// Why 1 MiB: amortises the syscall over many small messages (heartbeats, acks) without
    /// holding a large copy.
    pub write_batch_bytes_max: usize,
    /// A request that waited at least this long and timed out with no frame at all received
    /// on its connection meanwhile marks the connection half-open (the peer's host died
    /// without a FIN or RST, or its process hangs): the connection is dropped and the next
    /// send connects again.
    ///
    /// Why 1 s: far above a LAN round trip and a handler's usual time, so a slow but live
    /// peer (which answers something else within it) is not cut off; requests with shorter
    /// timeouts never trigger it.
    pub dead_connection_silence: Duration,
}

impl Default for InternalLimits {
    fn default() -> Self {
        InternalLimits {
            frame_body_bytes_max: u32::try_from(TRANSPORT_PAYLOAD_BYTES_MAX)
                .expect("the transport payload limit fits a frame length"),
            hello_body_bytes_max: 4 * 1024,
            peer_queue_frames_max: 4096,
            peer_queue_bytes_max: 64 * 1024 * 1024,
            peer_in_flight_max: RPC_IN_FLIGHT_MAX,
            inbound_in_flight_max: 256,
            inbound_connections_max: 1024,
            connect_timeout: Duration::from_secs(1),
            connect_attempts_max: 3,
            connect_backoff_initial: Duration::from_millis(50),
            connect_backoff_max: Duration::from_secs(1),
            unreachable_hold: Duration::from_millis(500),
            hello_timeout: Duration::from_secs(5),
            write_batch_bytes_max: 1024 * 1024,
            dead_connection_silence: Duration::from_secs(1),
        }
    }
}

/// Longest cluster name a hello carries, in bytes.
///
/// Why 255: IoTDB cluster names are short identifiers; the bound keeps the hello small.
pub const CLUSTER_NAME_BYTES_MAX: usize = 255;

/// Bytes asked of the kernel per socket read when the buffer has no room.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;
