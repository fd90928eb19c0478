//! IoTConsensus-style replication of one region group, as a pure state machine.
//!
//! One [`Replica`] value per replica of a region group (a DataNode id is its [`PeerId`]).
//! It never does I/O: the driver (a DataNode shard in production, the simulator in tests)
//! feeds it [`Event`]s and executes the [`Command`]s it returns, in order. There is no
//! election: the leader is the ConfigNode's routing choice, delivered as a [`GroupView`]
//! with an [`Epoch`] that bumps on every leader change. A view with a lower epoch than one
//! already seen is ignored.
//!
//! ```text
//!  client write ──► driver: region.write(index = last+1) ──► Event::Written
//!                                                              │
//!                           Replica (leader) ──────────────────┘
//!                            │  in-memory queue (≤ queue_bytes_max) ◄─ ReadLog/LogRead
//!                            │                                       (older entries)
//!           ┌────────────────┼─────────────────┐   one dispatcher per peer:
//!           ▼                ▼                 ▼   Probe → State (find the common
//!     peer 2 dispatcher  peer 3 dispatcher         prefix), then Append batches
//!      ≤ max_pending_batches in flight             (≤ max_batch_entries/bytes),
//!           │  Append{prev, labels, entries}       resend from the reported
//!           ▼                                      position on timeout
//!     Replica (follower): check label(prev), skip duplicates, Apply in index order,
//!       reorder buffer (≤ max_pending_batches), Durable ──► Appended{through, durable}
//!           │
//!           └──► leader: durable per peer ──► Acknowledge{through}, SetRetentionFloor
//! ```
//!
//! **The epoch rule.** Every entry's epoch is implied by the [`Epochs`] table (epoch →
//! first index), persisted (`PersistEpochs`) before any entry it labels. Within an epoch
//! only its leader originates entries, and a follower accepts an entry only when its label
//! at the index before agrees with the leader's, so equal labels at an index mean equal
//! logs up to it. A leader compares a follower's table with its own
//! ([`Epochs::common_prefix`]): a follower whose log is a prefix continues; one with
//! entries past the common prefix has a divergent suffix, which storage cannot undo, so
//! it is rebuilt from the leader's snapshot (`Rebuild` → follower `NeedSnapshot`, leader
//! `SendSnapshot`), as is one behind what the leader's WAL still holds (`LogGone`).
//! A replica never leads an epoch twice: it persists a fence before leading, and after a
//! restart asks for a new epoch (`RequestNewEpoch`) instead of reusing one whose shipped
//! entries it may have lost. A replica wiped for a snapshot that is named leader asks the
//! same way with `step_down`: it holds nothing, and no leader would send it a snapshot.
//!
//! **A new leader catches up** before accepting writes: it probes the `running` replicas,
//! and if one holds a longer log of which its own is a prefix, fetches the missing entries
//! from it (applied like a follower's), within `catch_up_timeout_ms`. Then it starts its
//! epoch at `last + 1`.
//!
//! **Ack modes.** [`AckMode::Leader`] (IoTDB's): a write is acknowledged once the leader's
//! own WAL is durable; replication is asynchronous, and a failover can lose acknowledged
//! writes the old leader had not shipped. [`AckMode::InSync`] (PacificA, Kafka's ISR): a
//! write is acknowledged once every member of the in-sync set has it durable. A member
//! that stops making progress while behind is dropped by asking the ConfigNode
//! (`RequestInSync`); the leader keeps waiting for it until a view without it arrives. A
//! member being added counts from the moment it is requested, so the ConfigNode (which
//! picks a new leader only from the in-sync set) can never pick a replica that misses an
//! acknowledged write. An in-sync member is never asked to wipe itself: it is dropped
//! first.
//!
//! Every buffer is bounded: the shipping queue (`queue_bytes_max`, and it keeps only what
//! some follower does not yet hold durably), the epoch table (`epochs_max`), the reorder
//! buffer (`max_pending_batches` batches), batches in flight, and message sizes on decode
//! ([`message`]).
//!
//! *Owner*: one `Replica` per region replica, owned by the shard that owns the region;
//! not `Send`-dependent, no clock (time comes in `Event::Tick`).

mod epochs;
mod leader;
pub mod message;
mod replica;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

/// Deliberate bugs the simulation must catch (switched on per thread, tests only).
pub(crate) mod mutant {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Mutant {
        /// InSync: acknowledge at the leader's own durable index, ignoring the set.
        AckWithoutInSync,
        /// Treat every follower as a prefix of the leader's log (no divergence check).
        TrustEveryFollower,
        /// Lead an epoch again after a restart (no leader fence).
        IgnoreLeaderFence,
    }

    crate::mutant_switch!(Mutant);
}

use bytes::Bytes;

pub use epochs::Epochs;
pub use message::{DecodeError, Message};
pub use replica::Replica;

/// A replica's id: its DataNode id.
pub type PeerId = u64;
/// A search index: dense, from 1; 0 means "nothing".
pub type Index = u64;
/// A leader epoch, chosen by the ConfigNode; bumps on every leader change.
pub type Epoch = u64;

/// When a client write may be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Once the leader's own WAL is durable (IoTDB's IoTConsensus).
    Leader,
    /// Once every member of the in-sync set has it durable.
    InSync,
}

/// Bounds and timeouts of one replica, with IoTDB's defaults where it has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IotConfig {
    /// Entries per `Append` (IoTDB `data_region_iot_max_log_entries_num_per_batch`).
    pub max_batch_entries: usize,
    /// Payload bytes per `Append` (IoTDB `data_region_iot_max_size_per_batch`).
    pub max_batch_bytes: usize,
    /// Batches in flight per peer (IoTDB `data_region_iot_max_pending_batches_num`); also
    /// the follower's reorder buffer, in batches.
    pub max_pending_batches: usize,
    /// Payload bytes of recent entries kept in memory for shipping; older ones are read
    /// back from the WAL (`ReadLog`).
    pub queue_bytes_max: usize,
    /// A batch, probe, rebuild or fetch not answered within this is sent again.
    pub resend_after_ms: u64,
    /// How long a new leader waits for the other replicas before it accepts writes.
    pub catch_up_timeout_ms: u64,
    /// InSync: an in-sync follower that is behind and made no progress for this long is
    /// dropped from the set (by asking the ConfigNode).
    pub unresponsive_after_ms: u64,
    /// A snapshot not reported (`SnapshotSent`) within this is given up and retried.
    pub snapshot_timeout_ms: u64,
    /// Pairs kept in the epoch table.
    pub epochs_max: usize,
}

impl Default for IotConfig {
    fn default() -> IotConfig {
        IotConfig {
            max_batch_entries: 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            max_pending_batches: 5,
            queue_bytes_max: 64 * 1024 * 1024,
            resend_after_ms: 1_000,
            catch_up_timeout_ms: 5_000,
            unresponsive_after_ms: 10_000,
            snapshot_timeout_ms: 600_000,
            epochs_max: 64,
        }
    }
}

/// One WAL record of the region, as bytes that are never re-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: Index,
    /// The record kind (insert, delete, ...): opaque here.
    pub kind: u8,
    pub payload: Bytes,
}

/// What the ConfigNode decided for the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub epoch: Epoch,
    pub leader: PeerId,
    pub replicas: Vec<PeerId>,
    pub in_sync: Vec<PeerId>,
    /// Bumps on every change of the view within an epoch; `RequestInSync` names the
    /// version it was based on, and the ConfigNode refuses stale ones.
    pub in_sync_version: u64,
    /// Replicas the ConfigNode sees running (a new leader catches up from these).
    pub running: Vec<PeerId>,
    pub ack: AckMode,
}

/// What the driver recovered from the local WAL and files at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub last_index: Index,
    pub durable_index: Index,
    pub epochs: Epochs,
    /// The replica was wiped for a snapshot (`NeedSnapshot`) that was not installed yet.
    /// Such a replica holds nothing and must not lead; the driver persists this flag
    /// with the wipe and clears it with the install.
    pub awaiting_snapshot: bool,
}

/// An input to [`Replica::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time passes (the driver ticks every few ms).
    Tick { now_ms: u64 },
    /// The ConfigNode's latest decision.
    View(GroupView),
    /// Leader: the driver logged a client write at `entry.index` (= last + 1).
    Written { entry: Entry },
    /// The local WAL is durable through `through`.
    Durable { through: Index },
    /// A message from another replica.
    Received { from: PeerId, message: Message },
    /// Answer to `ReadLog`: entries from the requested index (empty if none).
    LogRead { peer: PeerId, entries: Vec<Entry> },
    /// Answer to `ReadLog`: the WAL was deleted below `first_kept`.
    LogGone { peer: PeerId, first_kept: Index },
    /// Leader: the snapshot streamed to `peer` through `through` was installed (`ok`) or not.
    SnapshotSent {
        peer: PeerId,
        through: Index,
        ok: bool,
    },
    /// Follower: the leader's snapshot through `through` replaced the local replica.
    SnapshotInstalled { through: Index, epochs: Epochs },
}

/// An output of [`Replica::step`], for the driver to execute in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Send {
        to: PeerId,
        message: Message,
    },
    /// Write these entries to the local WAL and memtable at exactly these indexes, in order.
    Apply {
        entries: Vec<Entry>,
    },
    /// Make this table durable before any later `Apply` or accepted write.
    PersistEpochs(Epochs),
    /// Read entries from the local WAL for `peer`, answer `LogRead` or `LogGone`.
    ReadLog {
        peer: PeerId,
        from: Index,
        max_bytes: usize,
    },
    /// Leader: stream a snapshot of the region to `peer`, answer `SnapshotSent`.
    SendSnapshot {
        peer: PeerId,
    },
    /// Follower: the local log diverged or is too far behind; wipe the replica and install
    /// the snapshot `from` sends, then answer `SnapshotInstalled`.
    NeedSnapshot {
        from: PeerId,
    },
    /// Client writes up to here may be acknowledged.
    Acknowledge {
        through: Index,
    },
    /// Ask the ConfigNode to set the in-sync set (based on view `epoch`/`version`).
    RequestInSync {
        epoch: Epoch,
        in_sync: Vec<PeerId>,
        version: u64,
    },
    /// Ask the ConfigNode for a new epoch: the view names this replica leader of `epoch`,
    /// which it already led before a restart and must not lead again.
    RequestNewEpoch {
        epoch: Epoch,
        /// This replica cannot lead at all (it was wiped and waits for a leader's
        /// snapshot): the new epoch must name another replica, and none is named while no
        /// other one runs. A replica that is only stale may lead the new epoch itself.
        step_down: bool,
    },
    /// WAL at or above this index must be kept for followers.
    SetRetentionFloor(Index),
}

/// Why a client write is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another replica (if known) leads.
    NotLeader { leader: Option<PeerId> },
    /// This replica was just named leader and is catching up with the others.
    CatchingUp,
    /// The view naming this replica leader is stale: a higher epoch exists, or it led this
    /// epoch before a restart and waits for a new one.
    Stale,
}

/// A replica's role in its latest view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Follower waiting for the leader's snapshot after `NeedSnapshot`.
    Installing,
    CatchingUp,
    Leader,
    /// Named leader of an epoch it may not lead (see [`Refusal::Stale`]).
    Stale,
}

/// The leader's dispatcher state for one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerPhase {
    /// Waiting for the peer's `State`.
    Probing,
    /// Sending batches.
    Shipping,
    /// The peer must be rebuilt; waiting for it to wipe (or, InSync, to leave the set).
    Rebuilding,
    /// A snapshot is being streamed.
    Snapshotting,
}

/// What the leader knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub peer: PeerId,
    pub phase: PeerPhase,
    /// Durable on the peer and known to agree with the leader's log.
    pub durable_index: Index,
    /// The peer's log agrees with the leader's through here.
    pub matched_index: Index,
    pub in_flight_batches: usize,
    pub lag_entries: u64,
    /// Bytes of the lag still in the memory queue (a lower bound when older ones are only
    /// in the WAL).
    pub lag_bytes: u64,
}

/// A snapshot of a replica's state, for metrics and `SHOW REGIONS`-style views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub role: Role,
    pub epoch: Epoch,
    pub leader: Option<PeerId>,
    pub last_index: Index,
    pub durable_index: Index,
    /// Leader: acknowledged through here.
    pub acknowledged_index: Index,
    /// Leader: one per other replica of the view.
    pub peers: Vec<PeerProgress>,
}
